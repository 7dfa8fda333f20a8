// Internal: what the CPU forward (attention_cpu.cpp) and backward
// (attention_cpu_backward.cpp) share: row-major Eigen views, the per-position flags and
// global lists of a call, and the call's strided tensors as per-head row views.
#pragma once

#include <Eigen/Dense>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "attention/attention_internal.hpp"

namespace ldqa::attention::detail::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRows = Eigen::Map<const RowMat>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Denormal floats flushed to zero on this thread while the guard lives (x86: MXCSR's
// flush-to-zero and denormals-are-zero bits), the caller's mode restored after: each
// OpenMP thread of the forward holds one. Without it the forward ran ~10x slower: Eigen's
// vectorised exp clamps its argument at about -88.7, so every masked score (-inf) gives
// a denormal ~1e-38 instead of 0 (and a sharp softmax gives more of them), and the
// probabilities-times-values GEMM then runs on microcode assists (perf: 88 % of the
// forward in Eigen's GEMM kernel at ~6 GFLOP/s on a core that does 80). Flushed, a
// masked key's weight is exactly 0; a kept weight below 2^-126 of the row's largest is
// lost, as on the GPU (ex2.approx.ftz).
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;
  unsigned saved_;
#else
  FlushDenormals() = default;  // other architectures: the default mode (slower, not wrong)
#endif
 public:
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;
};

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

// The rows of one (sequence, head) of a strided tensor: row i at first + i * stride.
template <typename F>
struct HeadRows {
  using Matrix = std::conditional_t<std::is_const_v<F>, const RowMat, RowMat>;
  using Vector = std::conditional_t<std::is_const_v<F>, const Eigen::RowVectorXf, Eigen::RowVectorXf>;
  using Block = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
  F* first = nullptr;
  int64_t stride = 0;
  int d = 0;
  F* row(int i) const { return first + static_cast<int64_t>(i) * stride; }
  // Rows i .. i + count - 1 as a count x d matrix.
  Block block(int i, int count) const { return Block(row(i), count, d, Eigen::OuterStride<>(stride)); }
  Eigen::Map<Vector> vec(int i) const { return {row(i), d}; }
};

// A [batch, heads, n, d] tensor of the call with its (resolved) strides.
template <typename F>
struct Tensor {
  F* data = nullptr;
  Strides strides;
  int d = 0;
  HeadRows<F> head(int b, int h) const { return {data + b * strides.batch + h * strides.head, strides.row, d}; }
};

// One (sequence, head) of the call: every tensor's rows and the head's lse row.
struct HeadView {
  HeadRows<const float> q, k, v, qg, kg, vg;
  HeadRows<float> out;
  float* lse;  // [n], optional
};

struct Views {
  Tensor<const float> q, k, v, qg, kg, vg;
  Tensor<float> out;
  float* lse;  // optional, contiguous [batch, heads, n]
  int n;
  int d;
  int heads;
  float scale;
  HeadView head(int b, int h) const {
    float* lse_row = lse != nullptr ? lse + (static_cast<std::size_t>(b) * heads + h) * n : nullptr;
    return {q.head(b, h),  k.head(b, h),  v.head(b, h),   qg.head(b, h),
            kg.head(b, h), vg.head(b, h), out.head(b, h), lse_row};
  }
};

// `rows`: the tensor's rows when not seq_len (q_global_rows), for its default strides.
template <typename F>
Tensor<F> tensor_of(const SparseAttention::Impl& impl, const void* data, const Strides& strides, int rows = 0) {
  return {static_cast<F*>(const_cast<void*>(data)), resolved(strides, impl, rows), impl.head_dim};
}

// The call's tensors; a missing global projection reads the local one.
inline Views views_of(const SparseAttention::Impl& impl, const AttentionInputs& in) {
  const auto q = tensor_of<const float>(impl, in.q, in.q_strides);
  const auto k = tensor_of<const float>(impl, in.k, in.k_strides);
  const auto v = tensor_of<const float>(impl, in.v, in.v_strides);
  return Views{q,
               k,
               v,
               in.q_global ? tensor_of<const float>(impl, in.q_global, in.q_global_strides, in.q_global_rows) : q,
               in.k_global ? tensor_of<const float>(impl, in.k_global, in.k_global_strides) : k,
               in.v_global ? tensor_of<const float>(impl, in.v_global, in.v_global_strides) : v,
               tensor_of<float>(impl, in.out, in.out_strides),
               in.lse,
               impl.seq_len,
               impl.head_dim,
               impl.num_heads,
               effective_scale(impl, in)};
}

}  // namespace ldqa::attention::detail::cpu
