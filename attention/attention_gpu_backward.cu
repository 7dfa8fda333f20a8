// CUDA backward of the sparse attention: FlashAttention-2-style recomputation of the
// attention weights from the forward's row log-sum-exp, over exactly the forward's
// (query, key) pairs, on tensor cores (mma.sync m16n8k16, fp32 accumulation). No
// atomics: every gradient element is summed by one CTA in a fixed order, so reruns are
// bit-identical. Launch sequence, all on one stream, no host synchronisation:
//   1. prepare:  flags, the ordered global list and each global position's slot;
//   2. dQ, query-major (the forward's walk): local rows over their listed key tiles and
//      the global keys outside them; global rows against every key, split over key
//      ranges into fp32 partials that dq_combine sums in split order. Each CTA first
//      works out its rows' D_i = rowsum(dO_i * O_i) (fp32), and the local rows' CTAs
//      store them for steps 3 and 4;
//   3. gathered: what the global keys get from local rows whose tiles do not list the
//      key's tile (they saw it through the gathered list), split over query tiles into
//      fp32 partials;
//   4. dK/dV, key-major over the transposed plan: a key tile from the query tiles that
//      list it (local rows), plus the gathered partials of its global keys, then from
//      every global row (into dK_g/dV_g with separate global projections).
// Row i's weight is P_ij = exp(scale q_i.k_j - lse_i); dS_ij = P_ij (dO_i.v_j - D_i);
// dQ_i = scale sum_j dS_ij k_j, dK_j = scale sum_i dS_ij q_i, dV_j = sum_i P_ij dO_i.
// This file is the host side (workspace, parameters, dispatch over dtype x head dim);
// the kernels are in cuda/backward_kernel.cuh, the launch sequence in
// cuda/backward_launch.cuh.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/attention_internal.hpp"
#include "attention/cuda/common.cuh"
#include "device/cuda_check.hpp"
#include "ldqa/error.hpp"

namespace ldqa::attention::detail {

namespace {

using namespace gpu;

template <typename T>
void launch_backward_dtype(const Params& p, const Geometry& g, bool has_globals, int head_dim, cudaStream_t stream) {
  switch (head_dim) {
    case 32:
      return launch_backward<T, 32>(p, g, has_globals, stream);
    case 64:
      return launch_backward<T, 64>(p, g, has_globals, stream);
    case 128:
      return launch_backward<T, 128>(p, g, has_globals, stream);
    default:
      fail("attention: head_dim ", head_dim, " has no CUDA backward");
  }
}

// The list part (list_layout), then each global position's slot, the row
// deltas and the global rows' split partials of dQ and dK/dV.
struct BackwardLayout {
  std::size_t slot_of, delta, partial_dq, partial_dkv, total;
};

BackwardLayout backward_layout(const SparseAttention::Impl& impl, int batch, const Geometry& g) {
  BackwardLayout w{};
  const std::size_t positions = static_cast<std::size_t>(batch) * impl.seq_len;
  const std::size_t rows = static_cast<std::size_t>(batch) * impl.num_heads * g.max_global * g.splits;
  w.slot_of = list_layout(batch, impl.seq_len, g).end;
  w.delta = w.slot_of + align256(positions * sizeof(int32_t));
  w.partial_dq = w.delta + align256(positions * impl.num_heads * sizeof(float));
  w.partial_dkv = w.partial_dq + align256(rows * impl.head_dim * sizeof(float));
  w.total = w.partial_dkv + align256(rows * 2 * impl.head_dim * sizeof(float));
  return w;
}

}  // namespace

std::size_t cuda_backward_workspace_bytes(const SparseAttention::Impl& impl, int batch, int max_global) {
  return backward_layout(impl, batch, geometry(impl, batch, max_global)).total;
}

void backward_cuda(const SparseAttention::Impl& impl, const AttentionInputs& in, const AttentionGradients& grad,
                   void* stream_ptr, void* workspace, std::size_t /*checked by SparseAttention*/) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const KernelPath path = kernel_path(impl.head_dim, AttentionPass::backward);  // first: it may throw
  int device = 0;
  LDQA_CUDA_CHECK(cudaGetDevice(&device));
  const std::shared_ptr<const DevicePlan> held = device_plan(impl, device);
  const DevicePlan& plan = *held;
  const bool has_globals = in.global_mask != nullptr;
  const int max_global = has_globals ? (in.max_global < 0 ? impl.seq_len : in.max_global) : 0;
  Geometry g = geometry(impl, in.batch, max_global);
  g.path = path;
  const BackwardLayout w = backward_layout(impl, in.batch, g);
  StreamWorkspace taken(workspace, w.total, stream);
  unsigned char* ws = taken.get();
  const bool separate = in.q_global != nullptr;
  Params p = shared_params(impl, in, plan, g, max_global, ws);
  p.slot_of = reinterpret_cast<int32_t*>(ws + w.slot_of);
  p.delta = reinterpret_cast<float*>(ws + w.delta);
  p.partial_acc = reinterpret_cast<float*>(ws + w.partial_dq);
  p.partial_dkv = reinterpret_cast<float*>(ws + w.partial_dkv);
  p.d_out = grad.d_out;
  p.dq = grad.d_q;
  p.dk = grad.d_k;
  p.dv = grad.d_v;
  p.dqg = separate ? grad.d_q_global : grad.d_q;
  p.dkg = separate ? grad.d_k_global : grad.d_k;
  p.dvg = separate ? grad.d_v_global : grad.d_v;
  p.separate = separate ? 1 : 0;
  p.st_do = tensor_strides(impl, grad.d_out_strides);
  p.st_dq = tensor_strides(impl, grad.d_q_strides);
  p.st_dk = tensor_strides(impl, grad.d_k_strides);
  p.st_dv = tensor_strides(impl, grad.d_v_strides);
  p.st_dqg = separate ? tensor_strides(impl, grad.d_q_global_strides, in.q_global_rows) : p.st_dq;
  p.st_dkg = separate ? tensor_strides(impl, grad.d_k_global_strides) : p.st_dk;
  p.st_dvg = separate ? tensor_strides(impl, grad.d_v_global_strides) : p.st_dv;
  launch_prepare(p, stream);
  if (in.dtype == DType::f16) {
    launch_backward_dtype<__half>(p, g, has_globals, impl.head_dim, stream);
  } else {
    launch_backward_dtype<__nv_bfloat16>(p, g, has_globals, impl.head_dim, stream);
  }
  taken.release();
}

}  // namespace ldqa::attention::detail
