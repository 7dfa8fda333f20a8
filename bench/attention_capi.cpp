// A C entry point over the attention library, so that benchmark scripts (PyTorch via
// ctypes) run our kernels in their own process, on their own tensors and stream.
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "attention/attention.hpp"

using ldqa::attention::AttentionGradients;
using ldqa::attention::AttentionInputs;
using ldqa::attention::DType;
using ldqa::attention::Pattern;
using ldqa::attention::SparseAttention;

namespace {
// One plan per shape, built on first use (outside any timed region once warmed up).
const SparseAttention& cached(int n, int heads, int head_dim, int window, int top_k) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int, int, int>, std::unique_ptr<SparseAttention>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = plans[{n, heads, head_dim, window, top_k}];
  if (!slot) slot = std::make_unique<SparseAttention>(n, heads, head_dim, Pattern{window, nullptr, top_k});
  return *slot;
}
}  // namespace

extern "C" {

// dtype: 1 = f16, 2 = bf16. Optional pointers (lse among them) may be null. Returns 0,
// or 1 with the message in err.
int ldqa_attention_cuda(int batch, int heads, int n, int head_dim, int dtype, int window, int top_k, const void* q,
                        const void* k, const void* v, const void* qg, const void* kg, const void* vg,
                        const unsigned char* global_mask, int max_global, const int* valid_lengths,
                        const unsigned char* key_mask, void* out, float* lse, void* stream, void* workspace, char* err,
                        int err_len) {
  try {
    const AttentionInputs in{.batch = batch,
                             .dtype = dtype == 1 ? DType::f16 : DType::bf16,
                             .q = q,
                             .k = k,
                             .v = v,
                             .q_global = qg,
                             .k_global = kg,
                             .v_global = vg,
                             .global_mask = global_mask,
                             .max_global = max_global,
                             .valid_lengths = valid_lengths,
                             .key_mask = key_mask,
                             .out = out,
                             .lse = lse};
    const auto& attn = cached(n, heads, head_dim, window, top_k);
    // The Python side allocates cuda_workspace_bytes (ldqa_attention_workspace_bytes).
    attn.run_cuda(in, stream, workspace, workspace ? attn.cuda_workspace_bytes(batch, max_global) : 0);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, static_cast<std::size_t>(err_len), "%s", e.what());
    return 1;
  }
}

// The backward of the call above: its inputs, out and lse, then d_out and the gradients
// (the global ones null without separate global projections).
int ldqa_attention_cuda_backward(int batch, int heads, int n, int head_dim, int dtype, int window, const void* q,
                                 const void* k, const void* v, const void* qg, const void* kg, const void* vg,
                                 const unsigned char* global_mask, int max_global, const int* valid_lengths,
                                 const unsigned char* key_mask, const void* out, float* lse, const void* d_out,
                                 void* d_q, void* d_k, void* d_v, void* d_qg, void* d_kg, void* d_vg, void* stream,
                                 void* workspace, char* err, int err_len) {
  try {
    const AttentionInputs in{.batch = batch,
                             .dtype = dtype == 1 ? DType::f16 : DType::bf16,
                             .q = q,
                             .k = k,
                             .v = v,
                             .q_global = qg,
                             .k_global = kg,
                             .v_global = vg,
                             .global_mask = global_mask,
                             .max_global = max_global,
                             .valid_lengths = valid_lengths,
                             .key_mask = key_mask,
                             .out = const_cast<void*>(out),  // read only by the backward
                             .lse = lse};
    const AttentionGradients grad{
        .d_out = d_out, .d_q = d_q, .d_k = d_k, .d_v = d_v, .d_q_global = d_qg, .d_k_global = d_kg, .d_v_global = d_vg};
    const auto& attn = cached(n, heads, head_dim, window, 0);
    attn.backward_cuda(in, grad, stream, workspace,
                       workspace ? attn.cuda_backward_workspace_bytes(batch, max_global) : 0);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, static_cast<std::size_t>(err_len), "%s", e.what());
    return 1;
  }
}

long long ldqa_attention_backward_workspace_bytes(int batch, int heads, int n, int head_dim, int window,
                                                  int max_global) {
  try {
    return static_cast<long long>(
        cached(n, heads, head_dim, window, 0).cuda_backward_workspace_bytes(batch, max_global));
  } catch (const std::exception&) {
    return -1;
  }
}

long long ldqa_attention_workspace_bytes(int batch, int heads, int n, int head_dim, int window, int top_k,
                                         int max_global) {
  try {
    return static_cast<long long>(cached(n, heads, head_dim, window, top_k).cuda_workspace_bytes(batch, max_global));
  } catch (const std::exception&) {
    return -1;
  }
}
}
