// The forward's launch sequence for one dtype and head dim (after launch_prepare): the
// attention kernel (local rows, and with globals the global rows over key splits, in one
// launch), then with globals the merge of the splits; or the top-k kernel alone. Each
// forward_<dtype>_hd<D>.cu instantiates it once; forward_wgmma_<dtype>_hd64.cu (sm_90a)
// instantiates launch_attend_wgmma, which launch_forward takes where kernel_path says so.
#pragma once

#include <type_traits>

#include "attention/cuda/forward_kernel.cuh"
#include "device/cuda_check.hpp"

namespace ldqa::attention::detail::gpu {

// The mma.sync attention kernel (every GPU): the local rows alone, or with globals local
// and global rows in one launch (attend_all_kernel).
template <typename T, int D>
void launch_attend(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, cudaStream_t stream) {
  constexpr int smem = static_cast<int>(ForwardTraits<D>::kBytes);
  if (p.global_mask == nullptr) {
    const auto local_kernel = &attend_kernel<T, D>;
    allow_dynamic_smem_once(reinterpret_cast<const void*>(local_kernel), smem);
    local_kernel<<<dim3(num_tiles, heads, batch), kThreads, smem, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const auto all_kernel = &attend_all_kernel<T, D>;
  allow_dynamic_smem_once(reinterpret_cast<const void*>(all_kernel), smem);
  const RowsGrid grid = rows_grid(p, g);
  all_kernel<<<grid.ctas, kThreads, smem, stream>>>(p, grid.global_ctas);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

// The wgmma attention kernel (head dim 64; the sm_90a units, forward_wgmma_*.cu, only),
// likewise, its tiles by TMA. False, with nothing launched, where a tensor cannot be
// described to the TMA (encode_row_map); the caller then takes the mma.sync kernel.
template <typename T>
bool launch_attend_wgmma(const Params& p, const Geometry& g, int num_tiles, cudaStream_t stream) {
  RowMaps maps;
  const bool described = encode_row_map(maps.q, p.q, p.st_q, p.n, p.heads, p.batch) &&
                         encode_row_map(maps.k, p.k, p.st_k, p.n, p.heads, p.batch) &&
                         encode_row_map(maps.v, p.v, p.st_v, p.n, p.heads, p.batch) &&
                         encode_row_map(maps.kg, p.kg, p.st_kg, p.n, p.heads, p.batch) &&
                         encode_row_map(maps.vg, p.vg, p.st_vg, p.n, p.heads, p.batch);
  if (!described) return false;
  constexpr int smem = static_cast<int>(ForwardTraits<64, true>::kBytes);
  if (p.global_mask == nullptr) {
    const auto local_kernel = &attend_wgmma_kernel<T>;
    allow_dynamic_smem_once(reinterpret_cast<const void*>(local_kernel), smem);
    local_kernel<<<dim3(num_tiles, p.heads, p.batch), kThreads, smem, stream>>>(p, maps);
  } else {
    const auto all_kernel = &attend_all_wgmma_kernel<T>;
    allow_dynamic_smem_once(reinterpret_cast<const void*>(all_kernel), smem);
    const RowsGrid grid = rows_grid(p, g);
    all_kernel<<<grid.ctas, kThreads, smem, stream>>>(p, grid.global_ctas, maps);
  }
  LDQA_CUDA_CHECK(cudaGetLastError());
  return true;
}

template <typename T, int D>
void launch_forward(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, bool top_k,
                    cudaStream_t stream) {
  if (top_k) {
    topk_kernel<T, D><<<dim3(p.n, heads, batch), kThreads, 0, stream>>>(p);
    LDQA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  bool launched = false;
#ifdef LDQA_HAVE_SM90A
  if (D == 64 && g.path == KernelPath::wgmma) {
    launched = std::is_same_v<T, __half> ? launch_attend_wgmma_fp16(p, g, num_tiles, stream)
                                         : launch_attend_wgmma_bf16(p, g, num_tiles, stream);
  }
#endif
  if (!launched) launch_attend<T, D>(p, g, batch, heads, num_tiles, stream);
  if (p.global_mask == nullptr) return;
  constexpr int kRowsPerCta = 4;
  combine_kernel<T, D>
      <<<dim3((g.max_global + kRowsPerCta - 1) / kRowsPerCta, heads, batch), 32 * kRowsPerCta, 0, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ldqa::attention::detail::gpu
