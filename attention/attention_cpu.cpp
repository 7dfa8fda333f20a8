// CPU backend: float32, Eigen GEMMs on 64x64 tiles with an online softmax, OpenMP
// across (batch, head, tile). Scratch is per thread and O(64 * head_dim); nothing of
// size n x n or n x (2w+1) is ever allocated.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attention/cpu_common.hpp"

namespace ldqa::attention::detail {

namespace {

using namespace cpu;

// Running softmax state for up to kTile query rows.
struct OnlineSoftmax {
  RowMat acc;               // rows x head_dim, unnormalised
  Eigen::VectorXf row_max;  // -inf until a key is allowed
  Eigen::VectorXf row_sum;
  RowMat probs;  // scratch for one key tile

  void reset(int rows, int head_dim) {
    acc.setZero(rows, head_dim);
    row_max.setConstant(rows, kNegInf);
    row_sum.setZero(rows);
  }

  // scores: rows x cols with -inf where not allowed; values: cols x head_dim.
  template <typename Values>
  void add(const RowMat& scores, const Values& values) {
    probs.resize(scores.rows(), scores.cols());
    for (Eigen::Index r = 0; r < scores.rows(); ++r) {
      const float tile_max = scores.row(r).maxCoeff();
      const float new_max = std::max(row_max[r], tile_max);
      if (new_max == kNegInf) {  // nothing allowed yet in this row
        probs.row(r).setZero();
        continue;
      }
      const float correction = std::exp(row_max[r] - new_max);
      probs.row(r) = (scores.row(r).array() - new_max).exp().matrix();
      row_sum[r] = row_sum[r] * correction + probs.row(r).sum();
      acc.row(r) *= correction;
      row_max[r] = new_max;
    }
    acc.noalias() += probs * values;
  }
};

void write_rows(const HeadView& hv, int first, int count, const OnlineSoftmax& state, const uint8_t* flags,
                bool skip_global) {
  for (int r = 0; r < count; ++r) {
    const int i = first + r;
    float* lse = hv.lse != nullptr ? hv.lse + i : nullptr;
    if ((flags[i] & kValid) == 0 || state.row_sum[r] == 0.0f) {
      hv.out.vec(i).setZero();
      if (lse != nullptr) *lse = kNegInf;
    } else if (!(skip_global && (flags[i] & kGlobal))) {
      hv.out.vec(i) = state.acc.row(r) / state.row_sum[r];
      if (lse != nullptr) *lse = state.row_max[r] + std::log(state.row_sum[r]);
    }
  }
}

// Local queries of one tile: listed key tiles, then global keys outside them.
void local_tile(const TilePlan& plan, const Views& io, const HeadView& hv, int b, int h, int t, const Positions& pos,
                OnlineSoftmax& state, RowMat& q_tile, RowMat& gathered_k, RowMat& gathered_v, RowMat& scores) {
  const int n = io.n;
  const int first = t * kTile;
  const int rows = std::min(kTile, n - first);
  const uint8_t* flags = pos.flags.data() + static_cast<std::size_t>(b) * n;
  q_tile = hv.q.block(first, rows) * io.scale;
  state.reset(rows, io.d);
  const int row = (h % plan.plan_heads) * plan.num_tiles + t;
  const int32_t* listed_begin = plan.key_tile.data() + plan.row_ptr[row];
  const int32_t* listed_end = plan.key_tile.data() + plan.row_ptr[row + 1];
  for (int e = plan.row_ptr[row]; e < plan.row_ptr[row + 1]; ++e) {
    const int key_first = plan.key_tile[e] * kTile;
    const int cols = std::min(kTile, n - key_first);
    scores.noalias() = q_tile * hv.k.block(key_first, cols).transpose();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const int j = key_first + c;
        if ((flags[j] & kValid) == 0 ||
            !local_allows(first + r, j, flags[j], plan.window, plan.layout_bits[e], plan.layout_block))
          scores(r, c) = kNegInf;
      }
    state.add(scores, hv.v.block(key_first, cols));
  }
  std::vector<int> outside;
  for (int g : pos.globals[b])
    if (!tile_listed(listed_begin, listed_end, g / kTile)) outside.push_back(g);
  for (std::size_t at = 0; at < outside.size(); at += kTile) {
    const int cols = static_cast<int>(std::min<std::size_t>(kTile, outside.size() - at));
    gathered_k.resize(cols, io.d);
    gathered_v.resize(cols, io.d);
    for (int c = 0; c < cols; ++c) {
      gathered_k.row(c) = hv.k.vec(outside[at + c]);
      gathered_v.row(c) = hv.v.vec(outside[at + c]);
    }
    scores.noalias() = q_tile * gathered_k.transpose();
    state.add(scores, gathered_v);
  }
  write_rows(hv, first, rows, state, flags, /*skip_global=*/true);
}

// Up to kTile global queries (positions globals[first..]) against every valid key.
void global_chunk(const Views& io, const HeadView& hv, int b, int first, const Positions& pos, OnlineSoftmax& state,
                  RowMat& q_tile, RowMat& scores) {
  const int n = io.n;
  const std::vector<int>& globals = pos.globals[b];
  const uint8_t* flags = pos.flags.data() + static_cast<std::size_t>(b) * n;
  const int rows = std::min<int>(kTile, static_cast<int>(globals.size()) - first);
  q_tile.resize(rows, io.d);
  for (int r = 0; r < rows; ++r) q_tile.row(r) = hv.qg.vec(globals[first + r]) * io.scale;
  state.reset(rows, io.d);
  for (int key_first = 0; key_first < n; key_first += kTile) {
    const int cols = std::min(kTile, n - key_first);
    scores.noalias() = q_tile * hv.kg.block(key_first, cols).transpose();
    for (int c = 0; c < cols; ++c)
      if ((flags[key_first + c] & kValid) == 0) scores.col(c).setConstant(kNegInf);
    state.add(scores, hv.vg.block(key_first, cols));
  }
  for (int r = 0; r < rows; ++r) {
    hv.out.vec(globals[first + r]) = state.acc.row(r) / state.row_sum[r];
    if (hv.lse != nullptr) hv.lse[globals[first + r]] = state.row_max[r] + std::log(state.row_sum[r]);
  }
}

// Exact top-k for one query row: candidates in the same order the fused path visits
// them, selection by (score desc, key asc), softmax over the kept keys.
void topk_row(const TilePlan& plan, const Views& io, const HeadView& hv, int b, int h, int i, int top_k,
              const Positions& pos, std::vector<std::pair<float, int>>& candidates) {
  const int n = io.n;
  const uint8_t* flags = pos.flags.data() + static_cast<std::size_t>(b) * n;
  candidates.clear();
  const bool is_global = (flags[i] & kGlobal) != 0;
  const auto q_row = (is_global ? hv.qg : hv.q).vec(i);
  const HeadRows<const float>& keys = is_global ? hv.kg : hv.k;
  const HeadRows<const float>& values = is_global ? hv.vg : hv.v;
  auto score = [&](int j) { return io.scale * q_row.dot(keys.vec(j)); };
  if ((flags[i] & kValid) != 0) {
    if (is_global) {
      for (int j = 0; j < n; ++j)
        if (flags[j] & kValid) candidates.emplace_back(score(j), j);
    } else {
      const int row = (h % plan.plan_heads) * plan.num_tiles + i / kTile;
      const int32_t* listed_begin = plan.key_tile.data() + plan.row_ptr[row];
      const int32_t* listed_end = plan.key_tile.data() + plan.row_ptr[row + 1];
      for (int e = plan.row_ptr[row]; e < plan.row_ptr[row + 1]; ++e)
        for (int j = plan.key_tile[e] * kTile; j < std::min(n, (plan.key_tile[e] + 1) * kTile); ++j)
          if ((flags[j] & kValid) && local_allows(i, j, flags[j], plan.window, plan.layout_bits[e], plan.layout_block))
            candidates.emplace_back(score(j), j);
      for (int g : pos.globals[b])
        if (!tile_listed(listed_begin, listed_end, g / kTile)) candidates.emplace_back(score(g), g);
    }
  }
  float* lse = hv.lse != nullptr ? hv.lse + i : nullptr;
  auto out_row = hv.out.vec(i);
  if (candidates.empty()) {
    out_row.setZero();
    if (lse != nullptr) *lse = kNegInf;
    return;
  }
  const auto better = [](const std::pair<float, int>& x, const std::pair<float, int>& y) {
    return x.first > y.first || (x.first == y.first && x.second < y.second);
  };
  const std::size_t keep = std::min<std::size_t>(static_cast<std::size_t>(top_k), candidates.size());
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(keep - 1), candidates.end(),
                   better);
  float max_score = kNegInf;
  for (std::size_t c = 0; c < keep; ++c) max_score = std::max(max_score, candidates[c].first);
  out_row.setZero();
  float sum = 0.0f;
  for (std::size_t c = 0; c < keep; ++c) {
    const float p = std::exp(candidates[c].first - max_score);
    sum += p;
    out_row += p * values.vec(candidates[c].second);
  }
  out_row /= sum;
  if (lse != nullptr) *lse = max_score + std::log(sum);
}

}  // namespace

void run_cpu(const SparseAttention::Impl& impl, const AttentionInputs& in) {
  const int n = impl.seq_len;
  const int heads = impl.num_heads;
  const TilePlan& plan = impl.plan;
  const Positions pos = read_positions(in, n);
  const Views io = views_of(impl, in);

  // Work items: local tiles, then chunks of global rows (top-k handles both per row).
  struct Item {
    int b, h, tile, global_first;  // global_first < 0: a local tile
  };
  std::vector<Item> items;
  for (int b = 0; b < in.batch; ++b)
    for (int h = 0; h < heads; ++h) {
      for (int t = 0; t < plan.num_tiles; ++t) items.push_back({b, h, t, -1});
      if (impl.pattern.top_k == 0)
        for (int g = 0; g < static_cast<int>(pos.globals[b].size()); g += kTile) items.push_back({b, h, 0, g});
    }

  const int top_k = impl.pattern.top_k;
#pragma omp parallel
  {
    const FlushDenormals flush;  // see cpu_common.hpp: the forward ran ~10x slower without
    OnlineSoftmax state;
    RowMat q_tile, gathered_k, gathered_v, scores;
    std::vector<std::pair<float, int>> candidates;
#pragma omp for schedule(dynamic)
    for (std::size_t w = 0; w < items.size(); ++w) {
      const Item& it = items[w];
      const HeadView hv = io.head(it.b, it.h);
      if (top_k > 0) {
        for (int i = it.tile * kTile; i < std::min(n, (it.tile + 1) * kTile); ++i)
          topk_row(plan, io, hv, it.b, it.h, i, top_k, pos, candidates);
      } else if (it.global_first < 0) {
        local_tile(plan, io, hv, it.b, it.h, it.tile, pos, state, q_tile, gathered_k, gathered_v, scores);
      } else {
        global_chunk(io, hv, it.b, it.global_first, pos, state, q_tile, scores);
      }
    }
  }
}

}  // namespace ldqa::attention::detail
