// Internal: what the validation front (attention.cpp) hands to the backends
// (attention_cpu.cpp, attention_gpu.cu).
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "attention/attention.hpp"
#include "attention/tile_plan.hpp"

namespace ldqa::attention {

struct SparseAttention::Impl {
  int seq_len = 0;
  int num_heads = 0;
  int head_dim = 0;
  Pattern pattern;
  detail::TilePlan plan;
  // Device copies of `plan`, one per CUDA device, made on the first run_cuda there and
  // kept (owned by the CUDA backend): a call on another device never frees one in use.
  mutable std::mutex device_plan_mutex;
  mutable std::map<int, std::shared_ptr<void>> device_plans;
};

namespace detail {

float effective_scale(const SparseAttention::Impl& impl, const AttentionInputs& in);

// The strides a tensor of this call has: the given ones, or contiguous when all zero,
// for a tensor of `rows` rows (0: seq_len; q_global and d_q_global may hold fewer).
inline Strides resolved(const Strides& s, const SparseAttention::Impl& impl, int rows = 0) {
  if (!s.is_default()) return s;
  const int64_t head = static_cast<int64_t>(rows > 0 ? rows : impl.seq_len) * impl.head_dim;
  return Strides{head * impl.num_heads, head, impl.head_dim};
}
void run_cpu(const SparseAttention::Impl& impl, const AttentionInputs& in);
void backward_cpu(const SparseAttention::Impl& impl, const AttentionInputs& in, const AttentionGradients& grad);
void run_cuda(const SparseAttention::Impl& impl, const AttentionInputs& in, void* stream, void* workspace,
              std::size_t workspace_bytes);
std::size_t cuda_workspace_bytes(const SparseAttention::Impl& impl, int batch, int max_global);
void backward_cuda(const SparseAttention::Impl& impl, const AttentionInputs& in, const AttentionGradients& grad,
                   void* stream, void* workspace, std::size_t workspace_bytes);
std::size_t cuda_backward_workspace_bytes(const SparseAttention::Impl& impl, int batch, int max_global);
bool cuda_available();
const char* cuda_kernel_path(int head_dim, AttentionPass pass);

}  // namespace detail
}  // namespace ldqa::attention
