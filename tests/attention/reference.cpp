#include "attention/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

namespace ldqa::test {

std::string AttentionCase::describe() const {
  std::ostringstream s;
  s << "B=" << batch << " H=" << heads << " n=" << seq_len << " D=" << head_dim << " w=" << pattern.window
    << " topk=" << pattern.top_k
    << " layout=" << (pattern.layout ? std::to_string(pattern.layout->block_size()) : "none")
    << " sepglobal=" << separate_global
    << " globals=" << std::count_if(global_mask.begin(), global_mask.end(), [](uint8_t g) { return g != 0; })
    << " lengths=" << (valid_lengths.empty() ? "no" : "yes") << " keymask=" << (key_mask.empty() ? "no" : "yes");
  return s.str();
}

namespace {

// Padding and global membership of one sequence, as attention.hpp defines them.
struct SequenceMasks {
  const AttentionCase& c;
  int b;
  bool valid(int i) const {
    if (!c.valid_lengths.empty() && i >= c.valid_lengths[b]) return false;
    if (!c.key_mask.empty() && c.key_mask[static_cast<std::size_t>(b) * c.seq_len + i] == 0) return false;
    return true;
  }
  bool global(int i) const {
    return valid(i) && !c.global_mask.empty() && c.global_mask[static_cast<std::size_t>(b) * c.seq_len + i] != 0;
  }
};

// The scaled scores of query i against every key it may attend to, as (score, key).
void row_scores(const AttentionCase& c, const SequenceMasks& m, int h, int i, double scale,
                std::vector<std::pair<double, int>>& scores) {
  const int n = c.seq_len, d = c.head_dim;
  const std::size_t base = (static_cast<std::size_t>(m.b) * c.heads + h) * n * d;
  const bool gi = m.global(i);
  const auto& qs = gi && c.separate_global ? c.qg : c.q;
  const auto& ks = gi && c.separate_global ? c.kg : c.k;
  const attention::BlockLayout* layout = c.pattern.layout.get();
  scores.clear();
  for (int j = 0; j < n; ++j) {
    if (!m.valid(j)) continue;
    bool allowed = gi || m.global(j) || (c.pattern.window >= 0 && std::abs(i - j) <= c.pattern.window);
    if (!allowed && layout != nullptr) allowed = layout->allows(h, i / layout->block_size(), j / layout->block_size());
    if (!allowed) continue;
    double dot = 0;
    for (int x = 0; x < d; ++x)
      dot += qs[base + static_cast<std::size_t>(i) * d + x] * ks[base + static_cast<std::size_t>(j) * d + x];
    scores.emplace_back(dot * scale, j);
  }
}

std::vector<float> to_float(const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); }

double scale_of(const AttentionCase& c) {
  return c.scale > 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.head_dim));
}

}  // namespace

bool is_valid(const AttentionCase& c, int b, int i) { return SequenceMasks{c, b}.valid(i); }

Float32Case::Float32Case(const AttentionCase& c_)
    : c(c_),
      q(to_float(c.q)),
      k(to_float(c.k)),
      v(to_float(c.v)),
      qg(to_float(c.qg)),
      kg(to_float(c.kg)),
      vg(to_float(c.vg)) {}

attention::AttentionInputs Float32Case::inputs(float* out, float* lse) const {
  attention::AttentionInputs in;
  in.batch = c.batch;
  in.q = q.data();
  in.k = k.data();
  in.v = v.data();
  in.q_global = c.separate_global ? qg.data() : nullptr;
  in.k_global = c.separate_global ? kg.data() : nullptr;
  in.v_global = c.separate_global ? vg.data() : nullptr;
  in.global_mask = c.global_mask.empty() ? nullptr : c.global_mask.data();
  in.valid_lengths = c.valid_lengths.empty() ? nullptr : c.valid_lengths.data();
  in.key_mask = c.key_mask.empty() ? nullptr : c.key_mask.data();
  in.out = out;
  in.lse = lse;
  in.scale = static_cast<float>(c.scale);
  return in;
}

ReferenceResult reference_attention(const AttentionCase& c, double tie_tolerance) {
  const int n = c.seq_len, d = c.head_dim;
  const double scale = scale_of(c);
  ReferenceResult res;
  res.out.assign(static_cast<std::size_t>(c.batch) * c.heads * n * d, 0.0);
  res.ambiguous.assign(static_cast<std::size_t>(c.batch) * c.heads * n, 0);
  res.lse.assign(static_cast<std::size_t>(c.batch) * c.heads * n, -INFINITY);
  std::vector<std::pair<double, int>> scores;
  for (int b = 0; b < c.batch; ++b) {
    const SequenceMasks m{c, b};
    for (int h = 0; h < c.heads; ++h) {
      const std::size_t base = (static_cast<std::size_t>(b) * c.heads + h) * n * d;
      for (int i = 0; i < n; ++i) {
        if (!m.valid(i)) continue;
        const auto& vs = m.global(i) && c.separate_global ? c.vg : c.v;
        row_scores(c, m, h, i, scale, scores);
        if (scores.empty()) continue;
        std::size_t keep = scores.size();
        if (c.pattern.top_k > 0 && static_cast<std::size_t>(c.pattern.top_k) < scores.size()) {
          keep = static_cast<std::size_t>(c.pattern.top_k);
          std::sort(scores.begin(), scores.end(), [](auto& a, auto& b2) {
            return a.first > b2.first || (a.first == b2.first && a.second < b2.second);
          });
          if (scores[keep - 1].first - scores[keep].first <= tie_tolerance * (1 + std::abs(scores[keep].first))) {
            res.ambiguous[(static_cast<std::size_t>(b) * c.heads + h) * n + i] = 1;
            ++res.ambiguous_rows;
          }
        }
        double mx = -INFINITY;
        for (std::size_t s = 0; s < keep; ++s) mx = std::max(mx, scores[s].first);
        double sum = 0;
        double* dst = res.out.data() + base + static_cast<std::size_t>(i) * d;
        for (std::size_t s = 0; s < keep; ++s) {
          const double p = std::exp(scores[s].first - mx);
          sum += p;
          for (int x = 0; x < d; ++x) dst[x] += p * vs[base + static_cast<std::size_t>(scores[s].second) * d + x];
        }
        for (int x = 0; x < d; ++x) dst[x] /= sum;
        res.lse[(static_cast<std::size_t>(b) * c.heads + h) * n + i] = mx + std::log(sum);
      }
    }
  }
  return res;
}

ReferenceGrads reference_attention_backward(const AttentionCase& c, const std::vector<double>& d_out,
                                            const std::vector<double>* stored_out) {
  if (c.pattern.top_k > 0) std::abort();  // no backward for top-k
  const int n = c.seq_len, d = c.head_dim;
  const double scale = scale_of(c);
  const std::size_t count = static_cast<std::size_t>(c.batch) * c.heads * n * d;
  ReferenceGrads g;
  for (auto* x : {&g.dq, &g.dk, &g.dv}) x->assign(count, 0.0);
  if (c.separate_global)
    for (auto* x : {&g.dqg, &g.dkg, &g.dvg}) x->assign(count, 0.0);
  std::vector<std::pair<double, int>> scores;
  std::vector<double> p, out(d);
  for (int b = 0; b < c.batch; ++b) {
    const SequenceMasks m{c, b};
    for (int h = 0; h < c.heads; ++h) {
      const std::size_t base = (static_cast<std::size_t>(b) * c.heads + h) * n * d;
      auto row = [&](const std::vector<double>& x, int i) { return x.data() + base + static_cast<std::size_t>(i) * d; };
      auto row_of = [&](std::vector<double>& x, int i) { return x.data() + base + static_cast<std::size_t>(i) * d; };
      for (int i = 0; i < n; ++i) {
        if (!m.valid(i)) continue;
        const bool sep = m.global(i) && c.separate_global;
        const auto& qs = sep ? c.qg : c.q;
        const auto& ks = sep ? c.kg : c.k;
        const auto& vs = sep ? c.vg : c.v;
        auto& dq = sep ? g.dqg : g.dq;
        auto& dk = sep ? g.dkg : g.dk;
        auto& dv = sep ? g.dvg : g.dv;
        row_scores(c, m, h, i, scale, scores);
        if (scores.empty()) continue;
        double mx = -INFINITY, sum = 0;
        for (const auto& sc : scores) mx = std::max(mx, sc.first);
        p.resize(scores.size());
        for (std::size_t s = 0; s < scores.size(); ++s) sum += p[s] = std::exp(scores[s].first - mx);
        std::fill(out.begin(), out.end(), 0.0);
        for (std::size_t s = 0; s < scores.size(); ++s) {
          p[s] /= sum;
          for (int x = 0; x < d; ++x) out[x] += p[s] * row(vs, scores[s].second)[x];
        }
        const double* d_o = row(d_out, i);
        const double* o = stored_out ? row(*stored_out, i) : out.data();
        double delta = 0;
        for (int x = 0; x < d; ++x) delta += d_o[x] * o[x];
        for (std::size_t s = 0; s < scores.size(); ++s) {
          const int j = scores[s].second;
          double dp = 0;
          for (int x = 0; x < d; ++x) dp += d_o[x] * row(vs, j)[x];
          const double ds = p[s] * (dp - delta);
          for (int x = 0; x < d; ++x) {
            row_of(dv, j)[x] += p[s] * d_o[x];
            row_of(dq, i)[x] += scale * ds * row(ks, j)[x];
            row_of(dk, j)[x] += scale * ds * row(qs, i)[x];
          }
        }
      }
    }
  }
  return g;
}

std::vector<uint8_t> make_global_set(const std::string& kind, int batch, int n, std::mt19937_64& rng) {
  std::vector<uint8_t> mask(static_cast<std::size_t>(batch) * n, 0);
  for (int b = 0; b < batch; ++b) {
    uint8_t* row = mask.data() + static_cast<std::size_t>(b) * n;
    if (kind == "none") {
      return {};
    } else if (kind == "first") {
      row[0] = 1;
    } else if (kind == "first17") {
      for (int i = 0; i < std::min(17, n); ++i) row[i] = 1;
    } else if (kind == "scattered17") {  // distinct random positions, different per sequence
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int i = 0; i < std::min(17, n); ++i) row[order[i]] = 1;
    } else if (kind == "all") {
      std::fill(row, row + n, uint8_t{1});
    } else {
      std::abort();
    }
  }
  return mask;
}

void make_padding(const std::string& kind, AttentionCase& c, std::mt19937_64& rng) {
  const int n = c.seq_len;
  if (kind == "lengths") {
    c.valid_lengths.resize(c.batch);
    for (int b = 0; b < c.batch; ++b)  // one sequence unpadded, the others 1..n
      c.valid_lengths[b] = b == 0 ? n : 1 + static_cast<int>(rng() % static_cast<uint64_t>(n));
  } else if (kind == "mask") {
    c.key_mask.assign(static_cast<std::size_t>(c.batch) * n, 1);
    for (auto& m : c.key_mask) m = (rng() % 5) != 0 ? 1 : 0;
  }
}

void fill_inputs(AttentionCase& c, std::mt19937_64& rng, double (*round)(double)) {
  const std::size_t count = static_cast<std::size_t>(c.batch) * c.heads * c.seq_len * c.head_dim;
  std::uniform_real_distribution<double> dist(-2.0, 2.0);
  auto fill = [&](std::vector<double>& x) {
    x.resize(count);
    for (auto& value : x) {
      do value = round(dist(rng));
      while (value == 0.0);
    }
  };
  fill(c.q);
  fill(c.k);
  fill(c.v);
  if (c.separate_global) {
    fill(c.qg);
    fill(c.kg);
    fill(c.vg);
  }
}

Comparison compare(const std::vector<double>& out, const ReferenceResult& ref, int head_dim) {
  Comparison cmp;
  double err = 0, norm = 0;
  for (std::size_t row = 0; row < ref.ambiguous.size(); ++row) {
    if (ref.ambiguous[row]) continue;
    ++cmp.compared_rows;
    for (int x = 0; x < head_dim; ++x) {
      const double o = out[row * head_dim + x], r = ref.out[row * head_dim + x];
      if (!std::isfinite(o)) ++cmp.nan_count;
      err += (o - r) * (o - r);
      norm += r * r;
    }
  }
  cmp.relative_error = norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
  if (cmp.nan_count > 0) cmp.relative_error = INFINITY;
  return cmp;
}

std::shared_ptr<const attention::BlockLayout> make_test_layout(int kind, int n, int block, int heads, uint64_t seed) {
  using namespace attention;
  if (kind == 0) {
    FixedLayoutConfig cfg;
    cfg.num_local_blocks = 3;
    cfg.num_global_blocks = 1;
    cfg.horizontal_global = true;
    cfg.num_different_global_patterns = 2;
    return std::make_shared<BlockLayout>(make_fixed_layout(n, block, heads, cfg));
  }
  if (kind == 1) {
    VariableLayoutConfig cfg;
    cfg.num_random_blocks = 2;
    cfg.local_window_blocks = {1, 2, 3};
    cfg.global_block_indices = {1, 5};
    cfg.global_block_end_indices = {2, 7};
    return std::make_shared<BlockLayout>(make_variable_layout(n, block, heads, cfg, seed, true));
  }
  if (kind == 2) {
    BigBirdLayoutConfig cfg;
    cfg.num_random_blocks = 2;
    return std::make_shared<BlockLayout>(make_bigbird_layout(n, block, heads, cfg, seed, true));
  }
  BSLongformerLayoutConfig cfg;
  cfg.global_block_indices = {0, 3};
  return std::make_shared<BlockLayout>(make_bslongformer_layout(n, block, heads, cfg));
}

}  // namespace ldqa::test
