// Loading (config.json + every tensor checked against it), device choice, dispatch.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ldqa/error.hpp"
#include "model/encoder_internal.hpp"

namespace ldqa::model {

namespace detail {

std::vector<TensorSpec> expected_tensors(const Config& c) {
  const int64_t h = c.hidden, f = c.ffn;
  std::vector<TensorSpec> specs{{"token_embedding.weight", {c.vocab_size, h}},
                                {"type_embedding.weight", {c.type_vocab, h}},
                                {"embedding_norm.weight", {h}},
                                {"embedding_norm.bias", {h}}};
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    for (const char* norm : {"attention_norm", "ffn_norm"}) {
      specs.push_back({p + norm + ".weight", {h}});
      specs.push_back({p + norm + ".bias", {h}});
    }
    for (const char* proj : {"query", "key", "value", "out", "query_global", "key_global", "value_global"}) {
      specs.push_back({p + "attention." + proj + ".weight", {h, h}});
      specs.push_back({p + "attention." + proj + ".bias", {h}});
    }
    specs.push_back({p + "ffn_in.weight", {f, h}});
    specs.push_back({p + "ffn_in.bias", {f}});
    specs.push_back({p + "ffn_out.weight", {h, f}});
    specs.push_back({p + "ffn_out.bias", {h}});
  }
  specs.push_back({"final_norm.weight", {h}});
  specs.push_back({"final_norm.bias", {h}});
  specs.push_back({"span.weight", {2, h}});
  specs.push_back({"span.bias", {2}});
  return specs;
}

void rotary_table(const Config& c, int n, std::vector<float>& cos_table, std::vector<float>& sin_table) {
  const int half = c.rotary_dims / 2;
  cos_table.resize(static_cast<std::size_t>(n) * half);
  sin_table.resize(cos_table.size());
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < half; ++i) {
      const double angle = p * std::pow(c.rotary_base, -static_cast<double>(i) / half);
      cos_table[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::cos(angle));
      sin_table[static_cast<std::size_t>(p) * half + i] = static_cast<float>(std::sin(angle));
    }
}

void check_batch(const Config& c, const Batch& in) {
  const std::size_t cells = static_cast<std::size_t>(in.batch) * static_cast<std::size_t>(in.n);
  if (in.batch < 1 || in.n < 1) fail("encoder: empty batch (", in.batch, " x ", in.n, ")");
  if (in.ids.size() != cells || in.types.size() != cells || in.valid_len.size() != static_cast<std::size_t>(in.batch) ||
      in.global_len.size() != static_cast<std::size_t>(in.batch))
    fail("encoder: batch arrays do not match ", in.batch, " x ", in.n);
  for (std::size_t r = 0; r < cells; ++r) {
    if (in.ids[r] < 0 || in.ids[r] >= c.vocab_size)
      fail("encoder: token id ", in.ids[r], " outside the vocabulary (", c.vocab_size, ")");
    if (in.types[r] < 0 || in.types[r] >= c.type_vocab)
      fail("encoder: type id ", in.types[r], " outside [0, ", c.type_vocab, ")");
  }
}

}  // namespace detail

Encoder::Encoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Encoder::Encoder(Encoder&&) noexcept = default;
Encoder& Encoder::operator=(Encoder&&) noexcept = default;
Encoder::~Encoder() = default;
const Config& Encoder::config() const { return impl_->config; }
const std::filesystem::path& Encoder::directory() const { return impl_->dir; }

Outputs Encoder::forward(const Batch& batch, Device device, bool keep_states) const {
  if (device == Device::cuda) return forward_cuda(batch, keep_states);
  if (device == Device::cpu) return forward_cpu(batch, keep_states);
  fail("Encoder::forward needs cpu or cuda (resolve auto with resolve_device)");
}

Encoder Encoder::load(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  std::ifstream in(config_path);
  if (!in) fail("model config not found: ", config_path.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  std::vector<std::string> files;
  impl->config = detail::parse_config(text, config_path.string(), &files);
  const Config& c = impl->config;
  for (const auto& file : files) {
    const auto path = dir / file;
    if (!std::filesystem::exists(path)) fail("model weights not found: ", path.string());
    impl->shards.add(path);
  }
  for (const auto& spec : detail::expected_tensors(c)) {
    impl->shards.get(spec.name, spec.shape);
    impl->shards.check_finite(spec.name);
  }
  return Encoder(std::move(impl));
}

}  // namespace ldqa::model
