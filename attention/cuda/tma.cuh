// Hopper's tensor memory accelerator (TMA) and the shared-memory barriers it completes
// (mbarrier), for the wgmma forward (sm_90a): one thread asks for a whole 64-row tile of
// a [batch, heads, n, 64] tensor, landing in the 128-byte swizzle wgmma.cuh reads, rows
// past n filled with zeros; the other threads spend no instruction on the copy.
// That is what the copies cost before: the 128 threads' cp.async of a K and a V tile
// took ~70 of a step's ~400 instructions per warp (address arithmetic for 8 rows, their
// bounds, the flags' copy in one warp), in a loop bounded by issue.
//
// The tensor maps (CUtensorMap: the tensor's address, sizes, byte strides and the box)
// are encoded on the host for each call (encode_row_map, attention_gpu.cu) and reach the
// kernel as a __grid_constant__ parameter (RowMaps), whose address the PTX takes.
// Only units compiled for sm_90a may call the device functions.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums: types only, the driver call goes through cudart

#include <cstdint>

#include "attention/cuda/common.cuh"

namespace ldqa::attention::detail::gpu {

// The maps of one forward call: queries (local rows) and the keys and values the local
// and the global rows read (k_global, v_global: the same tensors as k, v without
// separate global projections). The global rows' queries are gathered by position and
// stay on cp.async.
struct RowMaps {
  CUtensorMap q, k, v, kg, vg;
};

// Describes rows [0, rows) of every (sequence, head) of a strided bf16/fp16 tensor as
// 64 x 64 boxes in the 128-byte swizzle (head dim 64). False when the driver refuses
// (such as a stride TMA cannot take; the caller then takes the mma.sync kernels).
bool encode_row_map(CUtensorMap& map, const void* data, const TensorStrides& strides, int rows, int heads, int batch);

namespace tma {

__device__ __forceinline__ void barrier_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
// The initialisation made visible to the async proxy (the TMA's completions), before the
// CTA barrier that publishes it.
__device__ __forceinline__ void barrier_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces the bytes the phase's copies will bring.
__device__ __forceinline__ void arrive_expect_bytes(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

// Waits until the phase of parity `parity` has completed (its arrival and all its bytes).
__device__ __forceinline__ void wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_again:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_again;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// Box (0, row, head, sequence) of `map` into the shared tile at `dst` (1024-byte aligned),
// completing on barrier `bar`.
__device__ __forceinline__ void load_rows(uint32_t dst, const CUtensorMap& map, uint32_t bar, int row, int head,
                                          int sequence) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(&map)), "r"(0), "r"(row), "r"(head), "r"(sequence), "r"(bar)
      : "memory");
}

// `bytes` (a multiple of 16) from global `src` to shared `dst`, both 16-byte aligned,
// completing on barrier `bar`.
__device__ __forceinline__ void load_bytes(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

}  // namespace tma
}  // namespace ldqa::attention::detail::gpu
