// The float32 CPU forward pass (Eigen, the attention library's CPU backend) and span
// decoding.
#include <omp.h>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <unsupported/Eigen/SpecialFunctions>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "model/encoder_internal.hpp"

namespace ldqa::model {

void set_cpu_threads(int threads) {
  if (threads > 0) {
    omp_set_num_threads(threads);
    Eigen::setNbThreads(threads);
  }
}

namespace detail {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;

struct Linear {
  Matrix weight;  // [out, in]
  Vector bias;
};

struct Norm {
  Vector weight, bias;
};

struct Layer {
  Norm attention_norm, ffn_norm;
  Linear qkv6;  // query, key, value, query_global, key_global, value_global stacked: one GEMM
  Linear out, ffn_in, ffn_out;
};

Matrix to_matrix(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return Eigen::Map<const Matrix>(v.data(), rows, cols);
}

Vector to_vector(const std::vector<float>& v) {
  return Eigen::Map<const Vector>(v.data(), static_cast<Eigen::Index>(v.size()));
}

void layer_norm(Matrix& x, const Norm& norm, double eps) {
#pragma omp parallel for schedule(static)
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

// y = x W^T + b into an existing buffer (large buffers are reused across layers: fresh
// ones cost page faults that outweighed the GEMMs).
void apply_into(Matrix& y, const Linear& l, const Matrix& x) {
  y.resize(x.rows(), l.weight.rows());
  y.noalias() = x * l.weight.transpose();
  y.rowwise() += l.bias.transpose();
}

void add_apply(Matrix& y, const Linear& l, const Matrix& x) {
  y.noalias() += x * l.weight.transpose();
  y.rowwise() += l.bias.transpose();
}

struct CpuWeights {
  Matrix token_embedding, type_embedding;
  Norm embedding_norm, final_norm;
  std::vector<Layer> layers;
  Linear span;
};

std::shared_ptr<const CpuWeights> load_cpu_weights(const Config& c, const Shards& shards) {
  auto w = std::make_shared<CpuWeights>();
  const int64_t h = c.hidden, f = c.ffn;
  auto linear = [&](const std::string& name, int64_t out, int64_t in_dim) {
    return Linear{to_matrix(shards.floats(name + ".weight", {out, in_dim}), out, in_dim),
                  to_vector(shards.floats(name + ".bias", {out}))};
  };
  auto norm = [&](const std::string& name) {
    return Norm{to_vector(shards.floats(name + ".weight", {h})), to_vector(shards.floats(name + ".bias", {h}))};
  };
  w->token_embedding = to_matrix(shards.floats("token_embedding.weight", {c.vocab_size, h}), c.vocab_size, h);
  w->type_embedding = to_matrix(shards.floats("type_embedding.weight", {c.type_vocab, h}), c.type_vocab, h);
  w->embedding_norm = norm("embedding_norm");
  w->final_norm = norm("final_norm");
  w->span = linear("span", 2, h);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    Layer layer;
    layer.attention_norm = norm(p + "attention_norm");
    layer.ffn_norm = norm(p + "ffn_norm");
    layer.qkv6.weight.resize(6 * h, h);
    layer.qkv6.bias.resize(6 * h);
    int64_t row = 0;
    for (const char* proj : {"query", "key", "value", "query_global", "key_global", "value_global"}) {
      const Linear part = linear(p + "attention." + proj, h, h);
      layer.qkv6.weight.middleRows(row, h) = part.weight;
      layer.qkv6.bias.segment(row, h) = part.bias;
      row += h;
    }
    layer.out = linear(p + "attention.out", h, h);
    layer.ffn_in = linear(p + "ffn_in", f, h);
    layer.ffn_out = linear(p + "ffn_out", h, f);
    w->layers.push_back(std::move(layer));
  }
  return w;
}

}  // namespace detail

using detail::apply;
using detail::layer_norm;
using detail::Matrix;

Outputs Encoder::forward_cpu(const Batch& in, bool keep_states) const {
  const Config& c = impl_->config;
  detail::check_batch(c, in);
  std::call_once(impl_->cpu_once, [&] { impl_->cpu = detail::load_cpu_weights(c, impl_->shards); });
  const detail::CpuWeights& w = *impl_->cpu;
  const int B = in.batch, n = in.n, h = c.hidden, H = c.heads, D = c.head_dim(), half = c.rotary_dims / 2;
  const std::size_t cells = static_cast<std::size_t>(B) * static_cast<std::size_t>(n);
  Matrix x(static_cast<Eigen::Index>(cells), h);
  for (std::size_t r = 0; r < cells; ++r)
    x.row(static_cast<Eigen::Index>(r)) = w.token_embedding.row(in.ids[r]) + w.type_embedding.row(in.types[r]);
  layer_norm(x, w.embedding_norm, c.layer_norm_eps);
  Outputs out;
  auto keep = [&](const Matrix& m) {
    if (keep_states) out.states.emplace_back(m.data(), m.data() + m.size());
  };
  keep(x);
  // Rotary tables, computed in double as in training.
  std::vector<float> cos_t, sin_t;
  detail::rotary_table(c, n, cos_t, sin_t);
  // [B*n, h] rows -> [B, H, n, D] heads, rotating the first rotary_dims of each head.
  std::vector<float> heads6(6 * cells * static_cast<std::size_t>(h));
  auto to_heads = [&](const Matrix& m, int part, bool rotate) {
    float* heads = heads6.data() + static_cast<std::size_t>(part) * cells * static_cast<std::size_t>(h);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int p = 0; p < n; ++p) {
        const float* src = m.data() + (static_cast<std::size_t>(b) * n + p) * m.cols() + part * h;
        for (int hh = 0; hh < H; ++hh) {
          float* dst = heads + ((static_cast<std::size_t>(b) * H + hh) * n + p) * D;
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
  Matrix a, qkv6, hidden;
  for (const detail::Layer& layer : w.layers) {
    a = x;
    layer_norm(a, layer.attention_norm, c.layer_norm_eps);
    apply_into(qkv6, layer.qkv6, a);
    const auto q = to_heads(qkv6, 0, true), k = to_heads(qkv6, 1, true), v = to_heads(qkv6, 2, false);
    const auto qg = to_heads(qkv6, 3, true), kg = to_heads(qkv6, 4, true), vg = to_heads(qkv6, 5, false);
    attn.run_cpu({.batch = B,
                  .q = q,
                  .k = k,
                  .v = v,
                  .q_global = qg,
                  .k_global = kg,
                  .v_global = vg,
                  .global_mask = global_mask.data(),
                  .valid_lengths = valid.data(),
                  .out = ctx_heads.data()});
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int hh = 0; hh < H; ++hh)
        for (int p = 0; p < n; ++p)
          std::memcpy(ctx.data() + (static_cast<std::size_t>(b) * n + p) * h + hh * D,
                      ctx_heads.data() + ((static_cast<std::size_t>(b) * H + hh) * n + p) * D,
                      sizeof(float) * static_cast<std::size_t>(D));
    add_apply(x, layer.out, ctx);
    a = x;
    layer_norm(a, layer.ffn_norm, c.layer_norm_eps);
    apply_into(hidden, layer.ffn_in, a);
    // Eigen's vectorised erf, by row blocks over the threads.
    const Eigen::Index rows = hidden.rows(), chunk = 64;
#pragma omp parallel for schedule(static)
    for (Eigen::Index r0 = 0; r0 < rows; r0 += chunk) {
      auto block = hidden.middleRows(r0, std::min(chunk, rows - r0)).array();
      block = 0.5f * block * (1.0f + (block * 0.70710678118654752f).erf());
    }
    add_apply(x, layer.ffn_out, hidden);
    keep(x);
  }
  layer_norm(x, w.final_norm, c.layer_norm_eps);
  keep(x);
  const Matrix logits = apply(w.span, x);  // [B*n, 2]
  out.start_logits.resize(cells);
  out.end_logits.resize(cells);
  for (std::size_t r = 0; r < cells; ++r) {
    out.start_logits[r] = logits(static_cast<Eigen::Index>(r), 0);
    out.end_logits[r] = logits(static_cast<Eigen::Index>(r), 1);
  }
  return out;
}

std::vector<Span> top_spans(const float* start, const float* end, int context_first, int context_count, int n_best,
                            int max_tokens, int count) {
  std::vector<Span> spans;
  if (context_count <= 0 || count <= 0 || n_best <= 0 || max_tokens <= 0) return spans;
  std::vector<int> starts(static_cast<std::size_t>(context_count)), ends;
  for (int i = 0; i < context_count; ++i) starts[static_cast<std::size_t>(i)] = context_first + i;
  ends = starts;
  const auto top = [&](std::vector<int>& idx, const float* logits) {
    const auto k = static_cast<std::ptrdiff_t>(std::min<std::size_t>(idx.size(), static_cast<std::size_t>(n_best)));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    idx.resize(static_cast<std::size_t>(k));
  };
  top(starts, start);
  top(ends, end);
  for (int i : starts)
    for (int j : ends)
      if (j >= i && j - i + 1 <= max_tokens) spans.push_back(Span{i, j, start[i] + end[j]});
  std::stable_sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.score > b.score; });
  if (spans.size() > static_cast<std::size_t>(count)) spans.resize(static_cast<std::size_t>(count));
  return spans;
}

std::optional<Span> best_span(const float* start, const float* end, int context_first, int context_count, int n_best,
                              int max_tokens) {
  const auto spans = top_spans(start, end, context_first, context_count, n_best, max_tokens, 1);
  if (spans.empty()) return std::nullopt;
  return spans.front();
}

}  // namespace ldqa::model
