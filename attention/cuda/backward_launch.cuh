// The backward's launch sequence for one dtype and head dim (after launch_prepare):
// delta, dQ (local rows; with globals the global rows, their merge and the gathered
// dK/dV partials), then dK/dV. Each backward_<dtype>_hd<D>.cu instantiates it once.
#pragma once

#include "attention/cuda/backward_kernel.cuh"
#include "device/cuda_check.hpp"

namespace ldqa::attention::detail::gpu {

template <typename T, int D>
void launch_backward(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream) {
  delta_kernel<T, D><<<dim3((p.n + 255) / 256, p.heads, p.batch), 256, 0, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
  constexpr std::size_t dq_smem = BackwardSmem<D>::kDqBytes;
  constexpr std::size_t dkv_smem = BackwardSmem<D>::kDkvBytes;
  allow_dynamic_smem_once(reinterpret_cast<const void*>(&dq_kernel<T, D, false>), static_cast<int>(dq_smem));
  allow_dynamic_smem_once(reinterpret_cast<const void*>(&dq_kernel<T, D, true>), static_cast<int>(dq_smem));
  allow_dynamic_smem_once(reinterpret_cast<const void*>(&dkdv_kernel<T, D, false>), static_cast<int>(dkv_smem));
  allow_dynamic_smem_once(reinterpret_cast<const void*>(&dkdv_kernel<T, D, true>), static_cast<int>(dkv_smem));
  const dim3 per_tile(p.num_tiles, p.heads, p.batch);
  dq_kernel<T, D, false><<<per_tile, kThreads, dq_smem, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
  if (has_globals) {
    const dim3 per_global_tile(((g.max_global + kTile - 1) / kTile) * g.splits, p.heads, p.batch);
    dq_kernel<T, D, true><<<per_global_tile, kThreads, dq_smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    constexpr int kRowsPerCta = 4;
    dq_combine_kernel<T, D>
        <<<dim3((g.max_global + kRowsPerCta - 1) / kRowsPerCta, p.heads, p.batch), 32 * kRowsPerCta, 0, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    dkdv_kernel<T, D, true><<<per_global_tile, kThreads, dkv_smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
  }
  dkdv_kernel<T, D, false><<<per_tile, kThreads, dkv_smem, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ldqa::attention::detail::gpu
