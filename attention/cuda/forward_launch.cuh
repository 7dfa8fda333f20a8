// The forward's launch sequence for one dtype and head dim (after launch_prepare): the
// attention kernel (local rows, and with globals the global rows over key splits, in one
// launch), then with globals the merge of the splits; or the top-k kernel alone. Each
// forward_<dtype>_hd<D>.cu instantiates it once; forward_wgmma_<dtype>_hd64.cu (sm_90a)
// instantiates launch_attend's wgmma path, which launch_forward takes where kernel_path
// says so.
#pragma once

#include <type_traits>

#include "attention/cuda/forward_kernel.cuh"
#include "device/cuda_check.hpp"

namespace ldqa::attention::detail::gpu {

// The attention kernel of one path, mma.sync (every GPU) or wgmma (kWgmma: the sm_90a
// units, forward_wgmma_*.cu, only): the local rows alone, or with globals local and
// global rows in one launch (attend_all_kernel).
template <typename T, int D, bool kWgmma>
void launch_attend(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, cudaStream_t stream) {
  constexpr int smem = static_cast<int>(ForwardTraits<D, kWgmma>::kBytes);
  if (p.global_mask == nullptr) {
    const auto local_kernel = &attend_kernel<T, D, kWgmma>;
    allow_dynamic_smem_once(reinterpret_cast<const void*>(local_kernel), smem);
    local_kernel<<<dim3(num_tiles, heads, batch), kThreads, smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const auto all_kernel = &attend_all_kernel<T, D, kWgmma>;
  allow_dynamic_smem_once(reinterpret_cast<const void*>(all_kernel), smem);
  const RowsGrid grid = rows_grid(p, g);
  all_kernel<<<grid.ctas, kThreads, smem, stream>>>(p, grid.global_ctas);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

template <typename T, int D>
void launch_forward(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, bool top_k,
                    cudaStream_t stream) {
  if (top_k) {
    topk_kernel<T, D><<<dim3(p.n, heads, batch), kThreads, 0, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    return;
  }
#ifdef LDQA_HAVE_SM90A
  if (D == 64 && g.path == KernelPath::wgmma) {
    if constexpr (std::is_same_v<T, __half>) {
      launch_attend_wgmma_fp16(p, g, batch, heads, num_tiles, stream);
    } else {
      launch_attend_wgmma_bf16(p, g, batch, heads, num_tiles, stream);
    }
  } else {
    launch_attend<T, D, false>(p, g, batch, heads, num_tiles, stream);
  }
#else
  launch_attend<T, D, false>(p, g, batch, heads, num_tiles, stream);
#endif
  if (p.global_mask == nullptr) return;
  constexpr int kRowsPerCta = 4;
  combine_kernel<T, D>
      <<<dim3((g.max_global + kRowsPerCta - 1) / kRowsPerCta, heads, batch), 32 * kRowsPerCta, 0, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ldqa::attention::detail::gpu
