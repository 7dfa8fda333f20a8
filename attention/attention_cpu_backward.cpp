// CPU backward: float32, Eigen GEMMs on the forward's 64x64 tiles. The attention weights
// are recomputed from the forward's row log-sum-exp (P = exp(scale q.k - lse)) over
// exactly the pairs the forward visited (listed key tiles under the window/layout mask,
// then the global keys outside them; global rows against every valid key), then, per
// FlashAttention's backward:
//   dV += P^T dO,   dS = P * (dO V^T - rowsum(dO * O)),   dQ += scale dS K,   dK += scale dS^T Q.
// One OpenMP task per (sequence, head): every gradient it writes lies in that head's
// slice, so no two threads ever add to the same row.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention/cpu_common.hpp"

namespace ldqa::attention::detail {

namespace {

using namespace cpu;

// The gradients of one (sequence, head); dqg, dkg, dvg are dq, dk, dv without separate
// global projections.
struct HeadGrads {
  HeadRows<const float> d_out;
  HeadRows<float> dq, dk, dv, dqg, dkg, dvg;
};

// Scratch of one thread.
struct Scratch {
  RowMat q_tile, d_out_tile, dq_tile, scores, d_scores, keys, values, d_keys, d_values;
  Eigen::VectorXf row_lse, row_delta;
};

// Turns scores (rows x cols, -inf where not allowed) into the weights P and the score
// gradients dS for one key block, and adds the block's contributions: dq_tile += dS K,
// d_keys += dS^T q_tile (q_tile already scaled), d_values += P^T dO.
template <typename Keys, typename Values, typename DKeys, typename DValues>
void block_backward(Scratch& s, const Keys& keys, const Values& values, DKeys&& d_keys, DValues&& d_values) {
  for (Eigen::Index r = 0; r < s.scores.rows(); ++r)
    for (Eigen::Index c = 0; c < s.scores.cols(); ++c)
      s.scores(r, c) = s.scores(r, c) == kNegInf ? 0.0f : std::exp(s.scores(r, c) - s.row_lse[r]);
  d_values.noalias() += s.scores.transpose() * s.d_out_tile;
  s.d_scores.noalias() = s.d_out_tile * values.transpose();
  s.d_scores = (s.scores.array() * (s.d_scores.colwise() - s.row_delta).array()).matrix();
  s.dq_tile.noalias() += s.d_scores * keys;
  d_keys.noalias() += s.d_scores.transpose() * s.q_tile;
}

// Loads rows `first..first+rows` (or the listed positions) of a query tile: the scaled
// queries, dO, lse and delta = rowsum(dO * O). A row that takes no part (padding, no
// allowed key, or `skip`) gets lse = +inf, so that every weight of it is exactly zero.
template <typename RowOf, typename Skip>
void load_rows(Scratch& s, const Views& io, const HeadView& hv, const HeadGrads& hg,
               const HeadRows<const float>& queries, int rows, RowOf&& row_of, Skip&& skip) {
  s.q_tile.resize(rows, io.d);
  s.d_out_tile.resize(rows, io.d);
  s.row_lse.resize(rows);
  s.row_delta.resize(rows);
  for (int r = 0; r < rows; ++r) {
    const int i = row_of(r);
    s.q_tile.row(r) = queries.vec(i) * io.scale;
    const auto d_out = hg.d_out.vec(i);
    const float lse = hv.lse[i];
    const bool takes_part = !skip(i) && lse != kNegInf;
    s.d_out_tile.row(r) = takes_part ? Eigen::RowVectorXf(d_out) : Eigen::RowVectorXf::Zero(io.d);
    s.row_lse[r] = takes_part ? lse : std::numeric_limits<float>::infinity();
    s.row_delta[r] = takes_part ? d_out.dot(hv.out.vec(i)) : 0.0f;
  }
  s.dq_tile.setZero(rows, io.d);
}

void local_tile_backward(const TilePlan& plan, const Views& io, const HeadView& hv, const HeadGrads& hg, int b, int h,
                         int t, const Positions& pos, Scratch& s) {
  const int n = io.n;
  const int first = t * kTile;
  const int rows = std::min(kTile, n - first);
  const uint8_t* flags = pos.flags.data() + static_cast<std::size_t>(b) * n;
  // Global rows took their output from the global path; padded rows from nothing.
  load_rows(
      s, io, hv, hg, hv.q, rows, [&](int r) { return first + r; },
      [&](int i) { return (flags[i] & kValid) == 0 || (flags[i] & kGlobal) != 0; });
  const int row = (h % plan.plan_heads) * plan.num_tiles + t;
  const int32_t* listed_begin = plan.key_tile.data() + plan.row_ptr[row];
  const int32_t* listed_end = plan.key_tile.data() + plan.row_ptr[row + 1];
  for (int e = plan.row_ptr[row]; e < plan.row_ptr[row + 1]; ++e) {
    const int key_first = plan.key_tile[e] * kTile;
    const int cols = std::min(kTile, n - key_first);
    const auto keys = hv.k.block(key_first, cols);
    const auto values = hv.v.block(key_first, cols);
    s.scores.noalias() = s.q_tile * keys.transpose();
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const int j = key_first + c;
        if ((flags[j] & kValid) == 0 ||
            !local_allows(first + r, j, flags[j], plan.window, plan.layout_bits[e], plan.layout_block))
          s.scores(r, c) = kNegInf;
      }
    block_backward(s, keys, values, hg.dk.block(key_first, cols), hg.dv.block(key_first, cols));
  }
  std::vector<int> outside;
  for (int gpos : pos.globals[b])
    if (!tile_listed(listed_begin, listed_end, gpos / kTile)) outside.push_back(gpos);
  for (std::size_t at = 0; at < outside.size(); at += kTile) {
    const int cols = static_cast<int>(std::min<std::size_t>(kTile, outside.size() - at));
    s.keys.resize(cols, io.d);
    s.values.resize(cols, io.d);
    for (int c = 0; c < cols; ++c) {
      s.keys.row(c) = hv.k.vec(outside[at + c]);
      s.values.row(c) = hv.v.vec(outside[at + c]);
    }
    s.d_keys.setZero(cols, io.d);
    s.d_values.setZero(cols, io.d);
    s.scores.noalias() = s.q_tile * s.keys.transpose();
    block_backward(s, s.keys, s.values, s.d_keys, s.d_values);
    for (int c = 0; c < cols; ++c) {
      hg.dk.vec(outside[at + c]) += s.d_keys.row(c);
      hg.dv.vec(outside[at + c]) += s.d_values.row(c);
    }
  }
  hg.dq.block(first, rows) += s.dq_tile * io.scale;
}

// Up to kTile global rows (positions globals[first..]) against every valid key.
void global_chunk_backward(const Views& io, const HeadView& hv, const HeadGrads& hg, int b, int first,
                           const Positions& pos, Scratch& s) {
  const int n = io.n;
  const std::vector<int>& globals = pos.globals[b];
  const uint8_t* flags = pos.flags.data() + static_cast<std::size_t>(b) * n;
  const int rows = std::min<int>(kTile, static_cast<int>(globals.size()) - first);
  load_rows(
      s, io, hv, hg, hv.qg, rows, [&](int r) { return globals[first + r]; }, [](int) { return false; });
  for (int key_first = 0; key_first < n; key_first += kTile) {
    const int cols = std::min(kTile, n - key_first);
    const auto keys = hv.kg.block(key_first, cols);
    const auto values = hv.vg.block(key_first, cols);
    s.scores.noalias() = s.q_tile * keys.transpose();
    for (int c = 0; c < cols; ++c)
      if ((flags[key_first + c] & kValid) == 0) s.scores.col(c).setConstant(kNegInf);
    block_backward(s, keys, values, hg.dkg.block(key_first, cols), hg.dvg.block(key_first, cols));
  }
  for (int r = 0; r < rows; ++r) hg.dqg.vec(globals[first + r]) += s.dq_tile.row(r) * io.scale;
}

}  // namespace

void backward_cpu(const SparseAttention::Impl& impl, const AttentionInputs& in, const AttentionGradients& grad) {
  const int n = impl.seq_len;
  const int heads = impl.num_heads;
  const TilePlan& plan = impl.plan;
  const Positions pos = read_positions(in, n);
  const Views io = views_of(impl, in);  // validated: all three global projections or none
  const bool separate = in.q_global != nullptr;
  const auto d_out = tensor_of<const float>(impl, grad.d_out, grad.d_out_strides);
  const auto dq = tensor_of<float>(impl, grad.d_q, grad.d_q_strides);
  const auto dk = tensor_of<float>(impl, grad.d_k, grad.d_k_strides);
  const auto dv = tensor_of<float>(impl, grad.d_v, grad.d_v_strides);
  const auto dqg = separate ? tensor_of<float>(impl, grad.d_q_global, grad.d_q_global_strides, in.q_global_rows) : dq;
  const int dqg_rows = separate && in.q_global_rows > 0 ? in.q_global_rows : n;
  const auto dkg = separate ? tensor_of<float>(impl, grad.d_k_global, grad.d_k_global_strides) : dk;
  const auto dvg = separate ? tensor_of<float>(impl, grad.d_v_global, grad.d_v_global_strides) : dv;
  const int tasks = in.batch * heads;
#pragma omp parallel
  {
    Scratch s;
#pragma omp for schedule(dynamic)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / heads, h = task % heads;
      const HeadView hv = io.head(b, h);
      const HeadGrads hg{d_out.head(b, h), dq.head(b, h),  dk.head(b, h), dv.head(b, h),
                         dqg.head(b, h),   dkg.head(b, h), dvg.head(b, h)};
      for (const HeadRows<float>& x : {hg.dq, hg.dk, hg.dv, hg.dkg, hg.dvg}) x.block(0, n).setZero();
      hg.dqg.block(0, dqg_rows).setZero();
      for (int t = 0; t < plan.num_tiles; ++t) local_tile_backward(plan, io, hv, hg, b, h, t, pos, s);
      for (int first = 0; first < static_cast<int>(pos.globals[b].size()); first += kTile)
        global_chunk_backward(io, hv, hg, b, first, pos, s);
    }
  }
}

}  // namespace ldqa::attention::detail
