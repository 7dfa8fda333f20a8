// The backward's launch sequence for one dtype and head dim (after launch_prepare):
// the dQ and dK/dV kernels of one path (launch_gradients: dQ of the local rows, which
// also store the rows' deltas, and, with globals, of the global rows (one launch on the
// wgmma path), then the gathered dK/dV partials; then dK/dV), then with globals the
// merge of the global rows' dQ splits. Each backward_<dtype>_hd<D>.cu
// instantiates launch_backward once; backward_wgmma_<dtype>_hd64.cu (sm_90a) the wgmma
// path of launch_gradients, which launch_backward takes where kernel_path says so.
#pragma once

#include <type_traits>

#include "attention/cuda/backward_kernel.cuh"
#include "device/cuda_check.hpp"

namespace ldqa::attention::detail::gpu {

template <typename T, int D, bool kWgmma>
void launch_gradients(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream) {
  constexpr std::size_t dq_smem = BackwardSmem<D, kWgmma>::kDqBytes;
  constexpr std::size_t dkv_smem = BackwardSmem<D, kWgmma>::kDkvBytes;
  const auto dq_local = &dq_kernel<T, D, false, kWgmma>;
  const auto dkdv_local = &dkdv_kernel<T, D, false, kWgmma>;
  allow_dynamic_smem_once(reinterpret_cast<const void*>(dkdv_local), static_cast<int>(dkv_smem));
  const dim3 per_tile(p.num_tiles, p.heads, p.batch);
  if (has_globals) {
    // dQ of local and global rows (wgmma: in one launch, the global rows' CTAs first),
    // then the gathered dK/dV partials of the global keys, which dkdv_local adds in.
    const auto dkdv_gathered = &dkdv_kernel<T, D, true, kWgmma>;
    allow_dynamic_smem_once(reinterpret_cast<const void*>(dkdv_gathered), static_cast<int>(dkv_smem));
    const RowsGrid grid = rows_grid(p, g);
    const dim3 per_global_tile(grid.global_ctas, p.heads, p.batch);
    if constexpr (kWgmma) {
      const auto dq_all = &dq_all_kernel<T, D, kWgmma>;
      allow_dynamic_smem_once(reinterpret_cast<const void*>(dq_all), static_cast<int>(dq_smem));
      dq_all<<<grid.ctas, kThreads, dq_smem, stream>>>(p, grid.global_ctas);
      LDQA_CUDA_CHECK(cudaGetLastError());
    } else {
      const auto dq_global = &dq_kernel<T, D, true, kWgmma>;
      allow_dynamic_smem_once(reinterpret_cast<const void*>(dq_local), static_cast<int>(dq_smem));
      allow_dynamic_smem_once(reinterpret_cast<const void*>(dq_global), static_cast<int>(dq_smem));
      dq_local<<<per_tile, kThreads, dq_smem, stream>>>(p);
      LDQA_CUDA_CHECK(cudaGetLastError());
      dq_global<<<per_global_tile, kThreads, dq_smem, stream>>>(p);
      LDQA_CUDA_CHECK(cudaGetLastError());
    }
    dkdv_gathered<<<per_global_tile, kThreads, dkv_smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
  } else {
    allow_dynamic_smem_once(reinterpret_cast<const void*>(dq_local), static_cast<int>(dq_smem));
    dq_local<<<per_tile, kThreads, dq_smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
  }
  dkdv_local<<<per_tile, kThreads, dkv_smem, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int D>
void launch_backward(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream) {
#ifdef LDQA_HAVE_SM90A
  if (D == 64 && g.path == KernelPath::wgmma) {
    if constexpr (std::is_same_v<T, __half>) {
      launch_gradients_wgmma_fp16(p, g, has_globals, stream);
    } else {
      launch_gradients_wgmma_bf16(p, g, has_globals, stream);
    }
  } else {
    launch_gradients<T, D, false>(p, g, has_globals, stream);
  }
#else
  launch_gradients<T, D, false>(p, g, has_globals, stream);
#endif
  if (has_globals) {
    // After the dK/dV kernels, which neither read nor write dQ_g: it only needs dQ's.
    constexpr int kRowsPerCta = 4;
    dq_combine_kernel<T, D>
        <<<dim3((g.max_global + kRowsPerCta - 1) / kRowsPerCta, p.heads, p.batch), 32 * kRowsPerCta, 0, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace ldqa::attention::detail::gpu
