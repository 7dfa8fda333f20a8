// The attention library's C face (libldqa_attention_capi.so), for callers that cannot
// link C++: the training recipe's PyTorch op (train/ldqa_attention.py) and the PyTorch
// benchmark (bench/attention_torch.py), both through ctypes, on their own tensors and
// stream. Forward and backward, window + global pattern, on the CPU (float32) or CUDA
// (fp16/bf16). Every entry point returns 0, or 1 with the library's message in `err`:
// no exception crosses it.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "attention/attention.hpp"

using ldqa::attention::AttentionGradients;
using ldqa::attention::AttentionInputs;
using ldqa::attention::DType;
using ldqa::attention::Pattern;
using ldqa::attention::SparseAttention;

namespace {

// The plans of the shapes called lately, built on first use. A training run has a
// handful of shapes, but a caller with a length per batch (evaluation, inference over
// documents) would otherwise keep a plan, with its copy on each device, for every length
// it ever saw: the least recently used goes beyond kMaxPlans. A call holds its plan by
// shared_ptr, so that a plan evicted by another thread's call outlives the call using it
// (its device copy's cudaFree then waits for the kernels that read it).
constexpr std::size_t kMaxPlans = 64;

struct PlanCache {
  using Key = std::tuple<int, int, int, int, int>;  // n, heads, head_dim, window, top_k
  struct Entry {
    std::shared_ptr<const SparseAttention> plan;
    uint64_t last_use = 0;
  };
  std::mutex mutex;
  std::map<Key, Entry> plans;
  uint64_t uses = 0;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

std::shared_ptr<const SparseAttention> cached(int n, int heads, int head_dim, int window, int top_k) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  const PlanCache::Key key{n, heads, head_dim, window, top_k};
  auto it = cache.plans.find(key);
  if (it == cache.plans.end()) {
    // Built before anything is evicted: a shape the library refuses throws here and
    // leaves the cache as it was.
    auto plan = std::make_shared<const SparseAttention>(n, heads, head_dim, Pattern{window, nullptr, top_k});
    if (cache.plans.size() >= kMaxPlans) {
      auto oldest = cache.plans.begin();
      for (auto e = cache.plans.begin(); e != cache.plans.end(); ++e)
        if (e->second.last_use < oldest->second.last_use) oldest = e;
      cache.plans.erase(oldest);
    }
    it = cache.plans.emplace(key, PlanCache::Entry{std::move(plan), 0}).first;
  }
  it->second.last_use = ++cache.uses;
  return it->second.plan;
}

DType dtype_of(int code) {
  switch (code) {
    case 0:
      return DType::f32;
    case 1:
      return DType::f16;
    case 2:
      return DType::bf16;
    default:
      throw std::invalid_argument("dtype code " + std::to_string(code) + " (0 f32, 1 f16, 2 bf16)");
  }
}

template <typename F>
int guarded(char* err, int err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    if (err != nullptr && err_len > 0) std::snprintf(err, static_cast<std::size_t>(err_len), "%s", e.what());
    return 1;
  }
}

}  // namespace

extern "C" {

// The shape of every call: [batch, heads, n, head_dim] tensors; `cuda` 0 runs
// on the CPU (dtype 0, host pointers), 1 on the current CUDA device (dtype 1 = f16 or
// 2 = bf16, device pointers, `stream` a cudaStream_t or null). Optional pointers may be
// null: the global projections, global_mask/valid_lengths/key_mask, lse (forward).
// scale 0 means 1/sqrt(head_dim). `workspace` (CUDA) may be null: the library takes one
// from the CUDA pool; else it holds ldqa_attention_workspace_bytes. `strides` (elements,
// may be null: all contiguous) holds three per tensor, (batch, head, row), in the order
// the tensors are passed (forward: q, k, v, qg, kg, vg, out; the backward adds d_out,
// d_q, d_k, d_v, d_qg, d_kg, d_vg); three zeros mean that tensor is contiguous.
// q_global_rows: the rows qg and d_qg hold, 0 = n (AttentionInputs::q_global_rows).
struct LdqaAttentionShape {
  int cuda, batch, heads, n, head_dim, dtype, window, top_k, max_global;
  float scale;
  int q_global_rows;
};

}  // extern "C"

namespace {

// Tensor `index`'s strides in the caller's array (contiguous when there is none).
ldqa::attention::Strides strides_at(const long long* strides, int index) {
  if (strides == nullptr) return {};
  const long long* x = strides + 3 * index;
  return {x[0], x[1], x[2]};
}

// The forward's and the backward's inputs are the same tensors: one translation.
AttentionInputs inputs_of(const LdqaAttentionShape* s, const void* q, const void* k, const void* v, const void* qg,
                          const void* kg, const void* vg, const unsigned char* global_mask, const int* valid_lengths,
                          const unsigned char* key_mask, void* out, float* lse, const long long* strides) {
  return AttentionInputs{.batch = s->batch,
                         .dtype = dtype_of(s->dtype),
                         .q = q,
                         .k = k,
                         .v = v,
                         .q_global = qg,
                         .k_global = kg,
                         .v_global = vg,
                         .q_global_rows = s->q_global_rows,
                         .global_mask = global_mask,
                         .max_global = s->max_global,
                         .valid_lengths = valid_lengths,
                         .key_mask = key_mask,
                         .out = out,
                         .lse = lse,
                         .scale = s->scale,
                         .q_strides = strides_at(strides, 0),
                         .k_strides = strides_at(strides, 1),
                         .v_strides = strides_at(strides, 2),
                         .q_global_strides = strides_at(strides, 3),
                         .k_global_strides = strides_at(strides, 4),
                         .v_global_strides = strides_at(strides, 5),
                         .out_strides = strides_at(strides, 6)};
}

}  // namespace

extern "C" {

int ldqa_attention_forward(const LdqaAttentionShape* s, const void* q, const void* k, const void* v, const void* qg,
                           const void* kg, const void* vg, const unsigned char* global_mask, const int* valid_lengths,
                           const unsigned char* key_mask, void* out, float* lse, const long long* strides, void* stream,
                           void* workspace, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    const AttentionInputs in =
        inputs_of(s, q, k, v, qg, kg, vg, global_mask, valid_lengths, key_mask, out, lse, strides);
    const auto attn = cached(s->n, s->heads, s->head_dim, s->window, s->top_k);
    if (s->cuda != 0) {
      const std::size_t bytes = workspace ? attn->cuda_workspace_bytes(s->batch, s->max_global) : 0;
      attn->run_cuda(in, stream, workspace, bytes);
    } else {
      attn->run_cpu(in);
    }
  });
}

// The backward of the forward above: its inputs, out and lse, then d_out and the
// gradients (the global ones null without separate global projections). top_k must be 0.
int ldqa_attention_backward(const LdqaAttentionShape* s, const void* q, const void* k, const void* v, const void* qg,
                            const void* kg, const void* vg, const unsigned char* global_mask, const int* valid_lengths,
                            const unsigned char* key_mask, const void* out, float* lse, const void* d_out, void* d_q,
                            void* d_k, void* d_v, void* d_qg, void* d_kg, void* d_vg, const long long* strides,
                            void* stream, void* workspace, char* err, int err_len) {
  return guarded(err, err_len, [&] {
    // out is only read by the backward
    const AttentionInputs in =
        inputs_of(s, q, k, v, qg, kg, vg, global_mask, valid_lengths, key_mask, const_cast<void*>(out), lse, strides);
    const AttentionGradients grad{.d_out = d_out,
                                  .d_q = d_q,
                                  .d_k = d_k,
                                  .d_v = d_v,
                                  .d_q_global = d_qg,
                                  .d_k_global = d_kg,
                                  .d_v_global = d_vg,
                                  .d_out_strides = strides_at(strides, 7),
                                  .d_q_strides = strides_at(strides, 8),
                                  .d_k_strides = strides_at(strides, 9),
                                  .d_v_strides = strides_at(strides, 10),
                                  .d_q_global_strides = strides_at(strides, 11),
                                  .d_k_global_strides = strides_at(strides, 12),
                                  .d_v_global_strides = strides_at(strides, 13)};
    const auto attn = cached(s->n, s->heads, s->head_dim, s->window, s->top_k);
    if (s->cuda != 0) {
      const std::size_t bytes = workspace ? attn->cuda_backward_workspace_bytes(s->batch, s->max_global) : 0;
      attn->backward_cuda(in, grad, stream, workspace, bytes);
    } else {
      attn->backward_cpu(in, grad);
    }
  });
}

// Bytes of CUDA workspace a call needs: pass 0 the forward, 1 the backward. -1 on error.
long long ldqa_attention_workspace_bytes(const LdqaAttentionShape* s, int pass) {
  long long bytes = -1;
  guarded(nullptr, 0, [&] {
    const auto attn = cached(s->n, s->heads, s->head_dim, s->window, s->top_k);
    bytes = static_cast<long long>(pass == 0 ? attn->cuda_workspace_bytes(s->batch, s->max_global)
                                             : attn->cuda_backward_workspace_bytes(s->batch, s->max_global));
  });
  return bytes;
}

// How many shapes' plans the library holds now (at most 64): what the tests ask.
int ldqa_attention_cached_plans() {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  return static_cast<int>(cache.plans.size());
}

// 1 when this library has CUDA kernels and a CUDA device is usable, else 0: what
// train.py's --attention auto asks before it trains through this library on the GPU.
int ldqa_attention_cuda_available() { return SparseAttention::cuda_available() ? 1 : 0; }

}  // extern "C"
