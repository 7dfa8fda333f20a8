// Loading (config.json + safetensors over a memory map, checked tensor by tensor) and
// the float32 CPU forward pass.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "model/model.hpp"

namespace ldqa::model {

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

// A read-only memory map of one file.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path) : path_(path.string()) {
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
  ~MappedFile() { munmap(data_, size_); }
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

struct TensorView {
  std::string dtype;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;
  std::size_t bytes = 0;
  std::string file;
};

float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
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

class Shards {
 public:
  void add(const std::filesystem::path& path) {
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
    const std::size_t data_start = 8 + header_len;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") continue;
      TensorView t;
      try {
        t.dtype = it.value().at("dtype").get<std::string>();
        t.shape = it.value().at("shape").get<std::vector<int64_t>>();
        const auto offsets = it.value().at("data_offsets").get<std::vector<std::size_t>>();
        if (offsets.size() != 2 || offsets[1] < offsets[0] || data_start + offsets[1] > f.size())
          fail(f.path(), ": tensor ", it.key(), " lies outside the file (truncated?)");
        t.data = f.bytes() + data_start + offsets[0];
        t.bytes = offsets[1] - offsets[0];
      } catch (const nlohmann::json::exception& e) {
        fail(f.path(), ": tensor ", it.key(), " has a malformed entry: ", e.what());
      }
      t.file = f.path();
      tensors_[it.key()] = t;
    }
  }

  const TensorView& get(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("model weights have no tensor ", name);
    return it->second;
  }

  // The tensor as float32, checked against the shape the config implies.
  std::vector<float> floats(const std::string& name, const std::vector<int64_t>& shape) const {
    const TensorView& t = get(name);
    if (t.shape != shape) {
      std::string want, got;
      for (auto d : shape) want += std::to_string(d) + " ";
      for (auto d : t.shape) got += std::to_string(d) + " ";
      fail(t.file, ": tensor ", name, " has shape [ ", got, "], the config needs [ ", want, "]");
    }
    std::size_t count = 1;
    for (auto d : shape) count *= static_cast<std::size_t>(d);
    const std::size_t width = t.dtype == "F32" ? 4 : (t.dtype == "BF16" || t.dtype == "F16") ? 2 : 0;
    if (width == 0) fail(t.file, ": tensor ", name, " has dtype ", t.dtype, " (need F32, BF16 or F16)");
    if (t.bytes != count * width)
      fail(t.file, ": tensor ", name, " holds ", t.bytes, " bytes, its shape needs ", count * width);
    std::vector<float> out(count);
    if (width == 4) {
      std::memcpy(out.data(), t.data, count * 4);
    } else {
      for (std::size_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = t.dtype == "BF16" ? bf16_to_float(v) : f16_to_float(v);
      }
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

struct Linear {
  Matrix weight;  // [out, in]
  Vector bias;
};

struct Norm {
  Vector weight, bias;
};

struct Layer {
  Norm attention_norm, ffn_norm;
  Linear query, key, value, out, query_global, key_global, value_global, ffn_in, ffn_out;
};

Matrix to_matrix(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return Eigen::Map<const Matrix>(v.data(), rows, cols);
}

Vector to_vector(const std::vector<float>& v) {
  return Eigen::Map<const Vector>(v.data(), static_cast<Eigen::Index>(v.size()));
}

void layer_norm(Matrix& x, const Norm& norm, double eps) {
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    auto row = x.row(r);
    const float mean = row.mean();
    const float var = (row.array() - mean).square().mean();
    row = ((row.array() - mean) / std::sqrt(var + static_cast<float>(eps))).matrix();
    row = row.cwiseProduct(norm.weight.transpose()) + norm.bias.transpose();
  }
}

Matrix apply(const Linear& l, const Matrix& x) {
  Matrix y = x * l.weight.transpose();
  y.rowwise() += l.bias.transpose();
  return y;
}

}  // namespace

struct Encoder::Impl {
  Config config;
  Matrix token_embedding, type_embedding;
  Norm embedding_norm, final_norm;
  std::vector<Layer> layers;
  Linear span;
};

Encoder::Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Encoder::Encoder(Encoder&&) noexcept = default;
Encoder& Encoder::operator=(Encoder&&) noexcept = default;
Encoder::~Encoder() = default;
const Config& Encoder::config() const { return impl_->config; }

Encoder Encoder::load(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  std::ifstream in(config_path);
  if (!in) fail("model config not found: ", config_path.string());
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail(config_path.string(), " is not valid JSON: ", e.what());
  }
  auto impl = std::make_unique<Impl>();
  Config& c = impl->config;
  try {
    if (meta.at("format_version").get<int>() != 1)
      fail(config_path.string(), ": format_version ", meta.at("format_version").dump(), " is not 1");
    const auto& m = meta.at("model");
    c.vocab_size = m.at("vocab_size");
    c.hidden = m.at("hidden");
    c.layers = m.at("layers");
    c.heads = m.at("heads");
    c.ffn = m.at("ffn");
    c.window = m.at("window");
    c.rotary_dims = m.at("rotary_dims");
    c.rotary_base = m.at("rotary_base");
    c.type_vocab = m.at("type_vocab");
    c.layer_norm_eps = m.at("layer_norm_eps");
    c.max_question_tokens = m.at("max_question_tokens");
    c.max_len = m.at("max_len");
    c.cls_id = m.at("cls_id");
    c.sep_id = m.at("sep_id");
    c.pad_id = m.at("pad_id");
  } catch (const nlohmann::json::exception& e) {
    fail(config_path.string(), ": ", e.what());
  }
  if (c.heads <= 0 || c.hidden % c.heads != 0 || c.rotary_dims % 2 != 0 || c.rotary_dims > c.head_dim())
    fail(config_path.string(), ": inconsistent sizes (hidden ", c.hidden, ", heads ", c.heads, ", rotary_dims ",
         c.rotary_dims, ")");
  Shards shards;
  for (const auto& file : meta.at("weights").at("files")) {
    const auto path = dir / file.get<std::string>();
    if (!std::filesystem::exists(path)) fail("model weights not found: ", path.string());
    shards.add(path);
  }
  const int64_t h = c.hidden, f = c.ffn;
  auto linear = [&](const std::string& name, int64_t out, int64_t in_dim) {
    return Linear{to_matrix(shards.floats(name + ".weight", {out, in_dim}), out, in_dim),
                  to_vector(shards.floats(name + ".bias", {out}))};
  };
  auto norm = [&](const std::string& name) {
    return Norm{to_vector(shards.floats(name + ".weight", {h})), to_vector(shards.floats(name + ".bias", {h}))};
  };
  impl->token_embedding = to_matrix(shards.floats("token_embedding.weight", {c.vocab_size, h}), c.vocab_size, h);
  impl->type_embedding = to_matrix(shards.floats("type_embedding.weight", {c.type_vocab, h}), c.type_vocab, h);
  impl->embedding_norm = norm("embedding_norm");
  impl->final_norm = norm("final_norm");
  impl->span = linear("span", 2, h);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Layer layer;
    layer.attention_norm = norm(p + "attention_norm");
    layer.ffn_norm = norm(p + "ffn_norm");
    layer.query = linear(p + "attention.query", h, h);
    layer.key = linear(p + "attention.key", h, h);
    layer.value = linear(p + "attention.value", h, h);
    layer.out = linear(p + "attention.out", h, h);
    layer.query_global = linear(p + "attention.query_global", h, h);
    layer.key_global = linear(p + "attention.key_global", h, h);
    layer.value_global = linear(p + "attention.value_global", h, h);
    layer.ffn_in = linear(p + "ffn_in", f, h);
    layer.ffn_out = linear(p + "ffn_out", h, f);
    impl->layers.push_back(std::move(layer));
  }
  return Encoder(std::move(impl));
}

Outputs Encoder::forward_cpu(const Batch& in, bool keep_states) const {
  const Config& c = impl_->config;
  const int B = in.batch, n = in.n, h = c.hidden, H = c.heads, D = c.head_dim(), half = c.rotary_dims / 2;
  const std::size_t cells = static_cast<std::size_t>(B) * static_cast<std::size_t>(n);
  if (B < 1 || n < 1) fail("encoder: empty batch (", B, " x ", n, ")");
  if (in.ids.size() != cells || in.types.size() != cells || in.valid_len.size() != static_cast<std::size_t>(B) ||
      in.global_len.size() != static_cast<std::size_t>(B))
    fail("encoder: batch arrays do not match ", B, " x ", n);
  Matrix x(static_cast<Eigen::Index>(cells), h);
  for (std::size_t r = 0; r < cells; ++r) {
    const int id = in.ids[r], type = in.types[r];
    if (id < 0 || id >= c.vocab_size) fail("encoder: token id ", id, " outside the vocabulary (", c.vocab_size, ")");
    if (type < 0 || type >= c.type_vocab) fail("encoder: type id ", type, " outside [0, ", c.type_vocab, ")");
    x.row(static_cast<Eigen::Index>(r)) = impl_->token_embedding.row(id) + impl_->type_embedding.row(type);
  }
  layer_norm(x, impl_->embedding_norm, c.layer_norm_eps);
  Outputs out;
  auto keep = [&](const Matrix& m) {
    if (keep_states) out.states.emplace_back(m.data(), m.data() + m.size());
  };
  keep(x);
  // Rotary tables, computed in double as in training.
  std::vector<float> cos_t(static_cast<std::size_t>(n) * half), sin_t(cos_t.size());
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < half; ++i) {
      const double angle = p * std::pow(c.rotary_base, -static_cast<double>(i) / half);
      cos_t[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::cos(angle));
      sin_t[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::sin(angle));
    }
  // [B*n, h] rows -> [B, H, n, D] heads, rotating the first rotary_dims of each head.
  auto to_heads = [&](const Matrix& m, bool rotate) {
    std::vector<float> heads(cells * static_cast<std::size_t>(h));
    for (int b = 0; b < B; ++b)
      for (int p = 0; p < n; ++p) {
        const float* src = m.data() + (static_cast<std::size_t>(b) * n + p) * h;
        for (int hh = 0; hh < H; ++hh) {
          float* dst = heads.data() + ((static_cast<std::size_t>(b) * H + hh) * n + p) * D;
          const float* s = src + hh * D;
          std::memcpy(dst, s, sizeof(float) * static_cast<std::size_t>(D));
          if (!rotate) continue;
          for (int i = 0; i < half; ++i) {
            const float co = cos_t[static_cast<std::size_t>(p) * half + i],
                        si = sin_t[static_cast<std::size_t>(p) * half + i];
            dst[i] = s[i] * co - s[i + half] * si;
            dst[i + half] = s[i] * si + s[i + half] * co;
          }
        }
      }
    return heads;
  };
  std::vector<uint8_t> global_mask(cells, 0);
  for (int b = 0; b < B; ++b) {
    const int g = std::clamp(in.global_len[static_cast<std::size_t>(b)], 0, n);
    std::fill(global_mask.begin() + static_cast<std::ptrdiff_t>(b) * n,
              global_mask.begin() + static_cast<std::ptrdiff_t>(b) * n + g, uint8_t{1});
  }
  std::vector<int32_t> valid(in.valid_len);
  for (auto& v : valid) v = std::clamp(v, 0, n);
  const attention::SparseAttention attn(n, H, D, attention::Pattern{c.window, nullptr, 0});
  std::vector<float> ctx_heads(cells * static_cast<std::size_t>(h));
  Matrix ctx(static_cast<Eigen::Index>(cells), h);
  for (const Layer& layer : impl_->layers) {
    Matrix a = x;
    layer_norm(a, layer.attention_norm, c.layer_norm_eps);
    const auto q = to_heads(apply(layer.query, a), true), k = to_heads(apply(layer.key, a), true);
    const auto v = to_heads(apply(layer.value, a), false);
    const auto qg = to_heads(apply(layer.query_global, a), true), kg = to_heads(apply(layer.key_global, a), true);
    const auto vg = to_heads(apply(layer.value_global, a), false);
    attention::AttentionInputs ai;
    ai.batch = B;
    ai.q = q.data();
    ai.k = k.data();
    ai.v = v.data();
    ai.q_global = qg.data();
    ai.k_global = kg.data();
    ai.v_global = vg.data();
    ai.global_mask = global_mask.data();
    ai.valid_lengths = valid.data();
    ai.out = ctx_heads.data();
    attn.run_cpu(ai);
    for (int b = 0; b < B; ++b)
      for (int hh = 0; hh < H; ++hh)
        for (int p = 0; p < n; ++p)
          std::memcpy(ctx.data() + (static_cast<std::size_t>(b) * n + p) * h + hh * D,
                      ctx_heads.data() + ((static_cast<std::size_t>(b) * H + hh) * n + p) * D,
                      sizeof(float) * static_cast<std::size_t>(D));
    x += apply(layer.out, ctx);
    Matrix f = x;
    layer_norm(f, layer.ffn_norm, c.layer_norm_eps);
    Matrix hidden = apply(layer.ffn_in, f);
    hidden = hidden.unaryExpr([](float t) { return 0.5f * t * (1.0f + std::erf(t * 0.70710678118654752f)); });
    x += apply(layer.ffn_out, hidden);
    keep(x);
  }
  layer_norm(x, impl_->final_norm, c.layer_norm_eps);
  keep(x);
  const Matrix logits = apply(impl_->span, x);  // [B*n, 2]
  out.start_logits.resize(cells);
  out.end_logits.resize(cells);
  for (std::size_t r = 0; r < cells; ++r) {
    out.start_logits[r] = logits(static_cast<Eigen::Index>(r), 0);
    out.end_logits[r] = logits(static_cast<Eigen::Index>(r), 1);
  }
  return out;
}

std::optional<Span> best_span(const float* start, const float* end, int context_first, int context_count, int n_best,
                              int max_tokens) {
  if (context_count <= 0) return std::nullopt;
  std::vector<int> starts(static_cast<std::size_t>(context_count)), ends;
  for (int i = 0; i < context_count; ++i) starts[static_cast<std::size_t>(i)] = context_first + i;
  ends = starts;
  const auto top = [&](std::vector<int>& idx, const float* logits) {
    const auto k = static_cast<std::ptrdiff_t>(std::min<std::size_t>(idx.size(), static_cast<std::size_t>(n_best)));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    idx.resize(static_cast<std::size_t>(k));
  };
  top(starts, start);
  top(ends, end);
  std::optional<Span> best;
  for (int i : starts)
    for (int j : ends) {
      if (j < i || j - i + 1 > max_tokens) continue;
      const float score = start[i] + end[j];
      if (!best || score > best->score) best = Span{i, j, score};
    }
  return best;
}

}  // namespace ldqa::model
