// Shared by the CPU and GPU model tests: the fixtures' tensors, read independently of
// the engine's loader, and the error measure.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.hpp"
#include "support/support.hpp"

namespace ldqa::test {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> f32;
  std::vector<int32_t> i32;
};

inline std::map<std::string, Tensor> read_cases(const std::filesystem::path& path) {
  const std::string raw = read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  std::map<std::string, Tensor> out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    Tensor t;
    t.shape = it.value()["shape"].get<std::vector<int64_t>>();
    const auto off = it.value()["data_offsets"].get<std::vector<std::size_t>>();
    const char* p = raw.data() + 8 + n + off[0];
    const std::size_t count = (off[1] - off[0]) / 4;
    if (it.value()["dtype"] == "F32") {
      t.f32.resize(count);
      std::memcpy(t.f32.data(), p, count * 4);
    } else {
      t.i32.resize(count);
      std::memcpy(t.i32.data(), p, count * 4);
    }
    out[it.key()] = std::move(t);
  }
  return out;
}

inline model::Batch case_batch(const std::map<std::string, Tensor>& cases, const std::string& prefix) {
  const auto& ids = cases.at(prefix + "ids");
  model::Batch batch;
  batch.batch = static_cast<int>(ids.shape[0]);
  batch.n = static_cast<int>(ids.shape[1]);
  batch.ids = ids.i32;
  batch.types = cases.at(prefix + "types").i32;
  batch.valid_len = cases.at(prefix + "valid_len").i32;
  batch.global_len = cases.at(prefix + "global_len").i32;
  return batch;
}

// Relative error over the rows of valid tokens only ([B, n, width] row-major).
inline double rel_err(const std::vector<float>& got, const std::vector<float>& want, const std::vector<int32_t>& valid,
                      int n, int width) {
  double err = 0, norm = 0;
  for (std::size_t b = 0; b < valid.size(); ++b)
    for (int i = 0; i < valid[b]; ++i)
      for (int x = 0; x < width; ++x) {
        const std::size_t at =
            (b * static_cast<std::size_t>(n) + static_cast<std::size_t>(i)) * static_cast<std::size_t>(width) +
            static_cast<std::size_t>(x);
        if (!std::isfinite(got[at])) return INFINITY;
        err += (got[at] - want[at]) * static_cast<double>(got[at] - want[at]);
        norm += static_cast<double>(want[at]) * want[at];
      }
  return std::sqrt(err / norm);
}

// Code points before a byte offset.
inline int64_t code_points(const std::string& text, int64_t byte_offset) {
  int64_t count = 0;
  for (int64_t i = 0; i < byte_offset; ++i)
    if ((static_cast<unsigned char>(text[static_cast<std::size_t>(i)]) & 0xC0) != 0x80) ++count;
  return count;
}

}  // namespace ldqa::test
