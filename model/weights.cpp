#include "model/weights.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ldqa/error.hpp"

namespace ldqa::model::detail {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path.string()) {
  const int fd = ::open(path_.c_str(), O_RDONLY);
  if (fd < 0) fail("cannot open ", path_, ": ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size < 8) {
    ::close(fd);
    fail(path_, " is truncated (", st.st_size, " bytes)");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  data_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (data_ == MAP_FAILED) fail("cannot map ", path_, ": ", std::strerror(errno));
}

MappedFile::~MappedFile() { munmap(data_, size_); }

float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void Shards::add(const std::filesystem::path& path) {
  files_.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& f = *files_.back();
  uint64_t header_len = 0;
  std::memcpy(&header_len, f.bytes(), 8);
  if (header_len > f.size() - 8) fail(f.path(), ": malformed safetensors header (length ", header_len, ")");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(f.bytes() + 8, f.bytes() + 8 + header_len);
  } catch (const std::exception& e) {
    fail(f.path(), ": malformed safetensors header: ", e.what());
  }
  if (!header.is_object()) fail(f.path(), ": malformed safetensors header: not a JSON object");
  const std::size_t data_start = 8 + header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    TensorView t;
    std::size_t bytes = 0;
    try {
      const auto dtype = it.value().at("dtype").get<std::string>();
      if (dtype == "F32") {
        t.dtype = WeightType::f32;
      } else if (dtype == "BF16") {
        t.dtype = WeightType::bf16;
      } else if (dtype == "F16") {
        t.dtype = WeightType::f16;
      } else {
        fail(f.path(), ": tensor ", it.key(), " has dtype ", dtype, " (need F32, BF16 or F16)");
      }
      t.shape = it.value().at("shape").get<std::vector<int64_t>>();
      const auto offsets = it.value().at("data_offsets").get<std::vector<std::size_t>>();
      if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] > f.size() - data_start)
        fail(f.path(), ": tensor ", it.key(), " lies outside the file (truncated?)");
      t.data = f.bytes() + data_start + offsets[0];
      bytes = offsets[1] - offsets[0];
    } catch (const nlohmann::json::exception& e) {
      fail(f.path(), ": tensor ", it.key(), " has a malformed entry: ", e.what());
    }
    t.count = 1;
    for (auto d : t.shape) {
      if (d < 0 || d > (int64_t{1} << 40)) fail(f.path(), ": tensor ", it.key(), " has a bad dimension ", d);
      t.count *= static_cast<std::size_t>(d);
    }
    const std::size_t width = t.dtype == WeightType::f32 ? 4 : 2;
    if (bytes != t.count * width)
      fail(f.path(), ": tensor ", it.key(), " holds ", bytes, " bytes, its shape needs ", t.count * width);
    t.file = f.path();
    tensors_[it.key()] = t;
  }
}

const TensorView& Shards::get(const std::string& name, const std::vector<int64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string files;
    for (const auto& f : files_) files += (files.empty() ? "" : ", ") + f->path();
    fail("model weights (", files, ") have no tensor ", name);
  }
  const TensorView& t = it->second;
  if (t.shape != shape) {
    std::string want, got;
    for (auto d : shape) want += std::to_string(d) + " ";
    for (auto d : t.shape) got += std::to_string(d) + " ";
    fail(t.file, ": tensor ", name, " has shape [ ", got, "], the config needs [ ", want, "]");
  }
  return t;
}

void Shards::check_finite(const std::string& name) const {
  const TensorView& t = tensors_.at(name);
  std::size_t bad = 0;
  if (t.dtype == WeightType::f32) {
    for (std::size_t i = 0; i < t.count; ++i) {
      uint32_t v;
      std::memcpy(&v, t.data + 4 * i, 4);
      bad += (v & 0x7F800000u) == 0x7F800000u;
    }
  } else {
    const uint16_t exponent = t.dtype == WeightType::bf16 ? 0x7F80 : 0x7C00;
    for (std::size_t i = 0; i < t.count; ++i) {
      uint16_t v;
      std::memcpy(&v, t.data + 2 * i, 2);
      bad += (v & exponent) == exponent;
    }
  }
  if (bad)
    fail(t.file, ": tensor ", name, " holds ", bad, " NaN or infinite values of ", t.count, ": the weights are broken");
}

std::vector<float> Shards::floats(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorView& t = get(name, shape);
  std::vector<float> out(t.count);
  if (t.dtype == WeightType::f32) {
    std::memcpy(out.data(), t.data, t.count * 4);
  } else {
    for (std::size_t i = 0; i < t.count; ++i) {
      uint16_t v;
      std::memcpy(&v, t.data + 2 * i, 2);
      out[i] = t.dtype == WeightType::bf16 ? bf16_to_float(v) : f16_to_float(v);
    }
  }
  return out;
}

namespace {

int integer(const nlohmann::json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) fail(where, ": model.", key, " is missing");
  if (!it->is_number_integer() || it->get<int64_t>() < INT32_MIN || it->get<int64_t>() > INT32_MAX)
    fail(where, ": model.", key, " = ", it->dump(), " is not an integer");
  return static_cast<int>(it->get<int64_t>());
}

double real(const nlohmann::json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) fail(where, ": model.", key, " is missing");
  if (!it->is_number()) fail(where, ": model.", key, " = ", it->dump(), " is not a number");
  return it->get<double>();
}

}  // namespace

Config parse_config(std::string_view text, const std::string& where, std::vector<std::string>* weight_files) {
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(where, " is not valid JSON: ", e.what());
  }
  if (!meta.is_object() || !meta.contains("format_version") || meta["format_version"] != 1)
    fail(where, ": format_version ",
         meta.is_object() && meta.contains("format_version") ? meta["format_version"].dump() : "missing", " is not 1");
  const auto m = meta.find("model");
  if (m == meta.end() || !m->is_object()) fail(where, ": no \"model\" object");
  Config c;
  c.vocab_size = integer(*m, "vocab_size", where);
  c.hidden = integer(*m, "hidden", where);
  c.layers = integer(*m, "layers", where);
  c.heads = integer(*m, "heads", where);
  c.ffn = integer(*m, "ffn", where);
  c.window = integer(*m, "window", where);
  c.rotary_dims = integer(*m, "rotary_dims", where);
  c.rotary_base = real(*m, "rotary_base", where);
  c.type_vocab = integer(*m, "type_vocab", where);
  c.layer_norm_eps = real(*m, "layer_norm_eps", where);
  c.max_question_tokens = integer(*m, "max_question_tokens", where);
  c.max_len = integer(*m, "max_len", where);
  c.cls_id = integer(*m, "cls_id", where);
  c.sep_id = integer(*m, "sep_id", where);
  c.pad_id = integer(*m, "pad_id", where);
  if (const auto packing = meta.find("packing");
      packing != meta.end() && packing->is_object() && packing->contains("window_overlap_tokens"))
    c.window_overlap = integer(*packing, "window_overlap_tokens", where);
  validate_config(c, where);
  const auto weights = meta.find("weights");
  if (weights == meta.end() || !weights->is_object() || !weights->contains("files") ||
      !(*weights)["files"].is_array() || (*weights)["files"].empty())
    fail(where, ": weights.files must list the safetensors files");
  for (const auto& f : (*weights)["files"]) {
    // Plain file names beside config.json: a config must not point anywhere else.
    if (!f.is_string() || f.get<std::string>().empty() || f.get<std::string>().find('/') != std::string::npos ||
        f.get<std::string>() == "." || f.get<std::string>() == "..")
      fail(where, ": weights.files entry ", f.dump(), " is not a file name in the model's folder");
    if (weight_files) weight_files->push_back(f.get<std::string>());
  }
  return c;
}

void validate_config(const Config& c, const std::string& where) {
  if (c.heads <= 0 || c.hidden <= 0 || c.hidden % c.heads != 0 || c.rotary_dims % 2 != 0 || c.rotary_dims < 0 ||
      c.rotary_dims > c.head_dim() || c.layers < 1 || c.ffn < 1 || c.vocab_size < 5 || c.max_len < 8 ||
      c.type_vocab < 2)
    fail(where, ": inconsistent sizes (hidden ", c.hidden, ", heads ", c.heads, ", rotary_dims ", c.rotary_dims,
         ", layers ", c.layers, ", max_len ", c.max_len, ")");
  // Values a model cannot have been trained with: a broken or hand-edited config.
  if (!(c.layer_norm_eps > 0) || !std::isfinite(c.layer_norm_eps) || c.layer_norm_eps > 0.1)
    fail(where, ": layer_norm_eps ", c.layer_norm_eps, " is not a small positive number");
  if (c.window < 1) fail(where, ": window ", c.window, " must be at least 1 (tokens see their neighbours)");
  if (!(c.rotary_base > 1) || !std::isfinite(c.rotary_base))
    fail(where, ": rotary_base ", c.rotary_base, " must exceed 1");
  if (c.max_question_tokens < 1 || c.max_question_tokens + 8 > c.max_len)
    fail(where, ": max_question_tokens ", c.max_question_tokens, " does not fit windows of ", c.max_len, " tokens");
  for (const auto& [name, id] : {std::pair{"cls_id", c.cls_id}, {"sep_id", c.sep_id}, {"pad_id", c.pad_id}})
    if (id < 0 || id >= c.vocab_size)
      fail(where, ": ", name, " ", id, " is outside the vocabulary (", c.vocab_size, ")");
  if (c.window_overlap < 0) fail(where, ": window_overlap_tokens ", c.window_overlap, " is negative");
}

}  // namespace ldqa::model::detail
