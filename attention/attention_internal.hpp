// Internal: what the validation front (attention.cpp) hands to the backends
// (attention_cpu.cpp, attention_gpu.cu).
#pragma once

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
  // Device copy of `plan`, made on the first run_cuda (owned by the CUDA backend).
  mutable std::mutex device_plan_mutex;
  mutable std::shared_ptr<void> device_plan;
};

namespace detail {

float effective_scale(const SparseAttention::Impl& impl, const AttentionInputs& in);
void run_cpu(const SparseAttention::Impl& impl, const AttentionInputs& in);
void run_cuda(const SparseAttention::Impl& impl, const AttentionInputs& in, void* stream, void* workspace);
std::size_t cuda_workspace_bytes(const SparseAttention::Impl& impl, int batch, int max_global);
bool cuda_available();

}  // namespace detail
}  // namespace ldqa::attention
