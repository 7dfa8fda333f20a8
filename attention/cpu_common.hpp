// Internal: what the CPU forward (attention_cpu.cpp) and backward
// (attention_cpu_backward.cpp) share: row-major Eigen views, the per-position flags and
// global lists of a call, and the call's tensors as float pointers.
#pragma once

#include <Eigen/Dense>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "attention/attention_internal.hpp"

namespace ldqa::attention::detail::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRows = Eigen::Map<const RowMat>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Per-position flags and the sorted valid global positions of every sequence.
struct Positions {
  std::vector<uint8_t> flags;             // [batch * n]
  std::vector<std::vector<int>> globals;  // [batch]
};

inline Positions read_positions(const AttentionInputs& in, int n) {
  Positions pos;
  pos.flags.assign(static_cast<std::size_t>(in.batch) * n, 0);
  pos.globals.resize(in.batch);
  for (int b = 0; b < in.batch; ++b) {
    for (int i = 0; i < n; ++i) {
      const std::size_t at = static_cast<std::size_t>(b) * n + i;
      bool valid = in.valid_lengths == nullptr || i < in.valid_lengths[b];
      if (in.key_mask != nullptr && in.key_mask[at] == 0) valid = false;
      if (!valid) continue;
      pos.flags[at] = kValid;
      if (in.global_mask != nullptr && in.global_mask[at] != 0) {
        pos.flags[at] |= kGlobal;
        pos.globals[b].push_back(i);
      }
    }
  }
  return pos;
}

struct Views {
  const float* q;
  const float* k;
  const float* v;
  const float* qg;
  const float* kg;
  const float* vg;
  float* out;
  float* lse;  // optional
  int n;
  int d;
  float scale;
  // Offset of (b, h) in a [batch, heads, n, d] tensor; divided by d, in an lse [batch, heads, n].
  std::size_t head_offset(int b, int h, int heads) const {
    return (static_cast<std::size_t>(b) * heads + h) * static_cast<std::size_t>(n) * d;
  }
};

// The call's tensors as float pointers; a missing global projection reads the local one.
inline Views views_of(const SparseAttention::Impl& impl, const AttentionInputs& in) {
  const auto* q = static_cast<const float*>(in.q);
  const auto* k = static_cast<const float*>(in.k);
  const auto* v = static_cast<const float*>(in.v);
  return Views{q,
               k,
               v,
               in.q_global ? static_cast<const float*>(in.q_global) : q,
               in.k_global ? static_cast<const float*>(in.k_global) : k,
               in.v_global ? static_cast<const float*>(in.v_global) : v,
               static_cast<float*>(in.out),
               in.lse,
               impl.seq_len,
               impl.head_dim,
               effective_scale(impl, in)};
}

}  // namespace ldqa::attention::detail::cpu
