// Internal to model/: safetensors shards over read-only memory maps, checked tensor by
// tensor, and the 16-bit float conversions. Nothing here copies a tensor until a
// backend asks for it in the form it computes with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.hpp"

namespace ldqa::model::detail {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* bytes() const { return static_cast<const unsigned char*>(data_); }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

enum class WeightType { f32, bf16, f16 };

struct TensorView {
  WeightType dtype = WeightType::f32;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;  // inside a mapping; unaligned
  std::size_t count = 0;                // elements
  std::string file;
};

float bf16_to_float(uint16_t v);
float f16_to_float(uint16_t h);
uint16_t float_to_bf16(float f);  // round to nearest even

class Shards {
 public:
  void add(const std::filesystem::path& path);
  // The tensor, its dtype and byte size checked against `shape`; errors name the file.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& shape) const;
  // Throws naming the tensor and its file when any value is NaN or infinite.
  void check_finite(const std::string& name) const;
  std::vector<float> floats(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

// config.json's text to a Config, every value checked (validate_config); the weight
// files it names (plain names beside it) into *weight_files. `where` names the file.
Config parse_config(std::string_view text, const std::string& where, std::vector<std::string>* weight_files);
// Every value of a model's config checked (sizes, epsilon, window, ids).
void validate_config(const Config& config, const std::string& where);

}  // namespace ldqa::model::detail
