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
  // query, key, value, key_global, value_global, query_global stacked: one GEMM for the
  // first five (every row), Q_g last so that it is projected for the global prefixes only.
  Linear qkv6;
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
    for (const char* proj : {"query", "key", "value", "key_global", "value_global", "query_global"}) {
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
  // Rotates the first rotary_dims of every head of q, k, k_g and (in the first qg_rows
  // rows of each sequence) q_g in place in the fused projection's rows; the attention
  // then reads the six [B, H, n, D] views through their strides, no copy into a
  // head-major layout.
  auto rotate_in_place = [&](Matrix& m, int qg_rows) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int p = 0; p < n; ++p) {
        float* row = m.data() + (static_cast<std::size_t>(b) * n + p) * m.cols();
        for (const int part : {0, 1, 3, 5}) {
          if (part == 5 && p >= qg_rows) continue;
          for (int hh = 0; hh < H; ++hh) {
            float* s = row + part * h + hh * D;
            for (int i = 0; i < half; ++i) {
              const float co = cos_t[static_cast<std::size_t>(p) * half + i],
                          si = sin_t[static_cast<std::size_t>(p) * half + i];
              const float lo = s[i], hi = s[i + half];
              s[i] = lo * co - hi * si;
              s[i + half] = lo * si + hi * co;
            }
          }
        }
      }
  };
  std::vector<uint8_t> global_mask(cells, 0);
  int max_global = 0;  // the longest global prefix: the rows that need Q_g
  for (int b = 0; b < B; ++b) {
    const int g = std::clamp(in.global_len[static_cast<std::size_t>(b)], 0, n);
    max_global = std::max(max_global, g);
    std::fill(global_mask.begin() + static_cast<std::ptrdiff_t>(b) * n,
              global_mask.begin() + static_cast<std::ptrdiff_t>(b) * n + g, uint8_t{1});
  }
  std::vector<int32_t> valid(in.valid_len);
  for (auto& v : valid) v = std::clamp(v, 0, n);
  const attention::SparseAttention attn(n, H, D, attention::Pattern{c.window, nullptr, 0});
  Matrix ctx(static_cast<Eigen::Index>(cells), h);
  Matrix a, qkv6, hidden;
  // [B, H, n, D] views of the fused projection's rows (q k v kg vg qg blocks) and of ctx.
  const attention::Strides fused{static_cast<int64_t>(n) * 6 * h, D, 6 * h};
  const attention::Strides rows_of_ctx{static_cast<int64_t>(n) * h, D, h};
  for (const detail::Layer& layer : w.layers) {
    a = x;
    layer_norm(a, layer.attention_norm, c.layer_norm_eps);
    // q k v kg vg for every row; q_g for each sequence's global prefix (read there only).
    qkv6.resize(static_cast<Eigen::Index>(cells), 6 * h);
    qkv6.leftCols(5 * h).noalias() = a * layer.qkv6.weight.topRows(5 * h).transpose();
    qkv6.leftCols(5 * h).rowwise() += layer.qkv6.bias.head(5 * h).transpose();
    for (int b = 0; b < B && max_global > 0; ++b) {
      auto qg = qkv6.block(static_cast<Eigen::Index>(b) * n, 5 * h, max_global, h);
      qg.noalias() =
          a.middleRows(static_cast<Eigen::Index>(b) * n, max_global) * layer.qkv6.weight.bottomRows(h).transpose();
      qg.rowwise() += layer.qkv6.bias.tail(h).transpose();
    }
    rotate_in_place(qkv6, max_global);
    attention::AttentionInputs ai;
    ai.batch = B;
    ai.q = qkv6.data();
    ai.k = qkv6.data() + h;
    ai.v = qkv6.data() + 2 * h;
    ai.k_global = qkv6.data() + 3 * h;
    ai.v_global = qkv6.data() + 4 * h;
    ai.q_global = qkv6.data() + 5 * h;
    ai.q_strides = ai.k_strides = ai.v_strides = fused;
    ai.q_global_strides = ai.k_global_strides = ai.v_global_strides = fused;
    ai.global_mask = global_mask.data();
    ai.valid_lengths = valid.data();
    ai.out = ctx.data();
    ai.out_strides = rows_of_ctx;
    attn.run_cpu(ai);
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
