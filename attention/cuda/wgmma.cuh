// Hopper's warpgroup MMA (wgmma, sm_90a only) for the kernels' 64 x 64 GEMMs at head
// dim 64 (the forward's S = Q K^T and O += P V, the backward's S, dP, dQ, dK, dV), K in
// steps of 16. In the kernels A is P or dS from registers, in the mma.sync m16n8k16
// A-fragment layout each warp already holds (with B MN-major: O += P V, dQ += dS K,
// dV += P^T dO, dK += dS^T Q), or Q, K, V, dO from a swizzled shared tile like B
// (S = Q K^T, dP = dO V^T and their transposes); B from shared memory through a
// descriptor. (gemm_abt, register A with B K-major, is left for tests/gpu's probe.)
// The fp32 accumulators come back in the mma.sync accumulator layout, per warp 16 rows,
// per 8 columns four values: so everything around the GEMMs is shared with the mma.sync
// kernels.
//
// Shared tiles are 64 rows of 128 bytes (64 halves) in the 128-byte swizzle: the 16-byte
// chunk c of row r sits at r * 128 + ((c ^ (r % 8)) * 16), tiles 1024-byte aligned. K is
// read as B "K-major" (each key's 64 values adjacent: no transpose), a k-step advancing
// the start by 32 bytes inside the swizzled row; V as B "MN-major" (transpose bit),
// a k-step advancing 16 rows (2048 bytes). Both byte offsets of the descriptor are set to
// the 1024 bytes between groups of 8 rows: the one each layout uses, the other unused
// with 64 columns (one swizzle atom wide).
//
// A register A operand must be produced right before its GEMM, at every step of a loop:
// ptxas (nvcc 13.0) may hand an HGMMA's A registers to other values once the GEMM is
// done, so fragments loaded once and reused by the next step's GEMM read garbage (the
// forward's Q fragments shared R88-R103 with the step's P although the PTX kept them
// apart). So the kernels' only register A operands are the packs of the step's own P
// and dS, and resident tiles are read as A from shared memory; the test attention_wgmma_sass
// (scripts/check-wgmma-sass.py) holds the SASS to this: every register A of an HGMMA
// from an ldmatrix or a pack of its own step (or ptxas' register copy of one).
//
// Only units compiled for sm_90a may instantiate these (ptxas refuses wgmma elsewhere).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "attention/cuda/common.cuh"

namespace ldqa::attention::detail::gpu::wgmma {

constexpr uint32_t kRowBytes = 128;    // one tile row: 64 halves
constexpr uint32_t kTileBytes = 8192;  // 64 rows
constexpr uint32_t kAtomBytes = 1024;  // 8 rows: the swizzle pattern's period and alignment

// Where chunk `chunk` (16 bytes) of row `row` lies in a swizzled tile.
__host__ __device__ constexpr uint32_t swizzled(int row, int chunk) {
  return static_cast<uint32_t>(row) * kRowBytes + ((static_cast<uint32_t>(chunk) ^ (row & 7)) << 4);
}

// Shared-memory matrix descriptor: start address, leading and stride byte offsets (both
// 1024, see above; all three in 16-byte units), 128-byte swizzle (mode 1, bits 62-63).
__device__ __forceinline__ uint64_t descriptor(uint32_t smem_address) {
  constexpr uint64_t kOffset = kAtomBytes >> 4;
  return static_cast<uint64_t>((smem_address & 0x3FFFF) >> 4) | (kOffset << 16) | (kOffset << 32) | (1ull << 62);
}
// The descriptor of `bytes` further into the tile of `tile_descriptor`: one addition to
// the start address field (bits 0-13, 16-byte units) instead of rebuilding the
// descriptor at every k-step. The sum is the field of a shared address inside the same
// tile, below 2^18 bytes like every shared address, so it never carries out of the field.
__device__ __forceinline__ uint64_t advanced(uint64_t tile_descriptor, uint32_t bytes) {
  return tile_descriptor + (bytes >> 4);
}

__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// What cp.async (the generic proxy) wrote must be visible to wgmma (the async proxy):
// each writing thread fences before the barrier that publishes the tile.
__device__ __forceinline__ void fence_shared_for_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// clang-format off
#define LDQA_WGMMA_ACC32 \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
#define LDQA_WGMMA_ACC_OPERANDS(acc) \
  "+f"(acc[0][0]), "+f"(acc[0][1]), "+f"(acc[0][2]), "+f"(acc[0][3]), \
  "+f"(acc[1][0]), "+f"(acc[1][1]), "+f"(acc[1][2]), "+f"(acc[1][3]), \
  "+f"(acc[2][0]), "+f"(acc[2][1]), "+f"(acc[2][2]), "+f"(acc[2][3]), \
  "+f"(acc[3][0]), "+f"(acc[3][1]), "+f"(acc[3][2]), "+f"(acc[3][3]), \
  "+f"(acc[4][0]), "+f"(acc[4][1]), "+f"(acc[4][2]), "+f"(acc[4][3]), \
  "+f"(acc[5][0]), "+f"(acc[5][1]), "+f"(acc[5][2]), "+f"(acc[5][3]), \
  "+f"(acc[6][0]), "+f"(acc[6][1]), "+f"(acc[6][2]), "+f"(acc[6][3]), \
  "+f"(acc[7][0]), "+f"(acc[7][1]), "+f"(acc[7][2]), "+f"(acc[7][3])
// acc (64 x 64, this thread's 32) = or += A (registers) . B (descriptor); TRANS_B 0 or 1.
#define LDQA_WGMMA_M64N64K16_RS(TYPE, TRANS_B)                                                          \
  asm volatile(                                                                                          \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                       \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " LDQA_WGMMA_ACC32                  \
      "{%32, %33, %34, %35}, %36, p, 1, 1, " #TRANS_B ";\n}\n"                                          \
      : LDQA_WGMMA_ACC_OPERANDS(acc)                                                                     \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc), "r"(accumulate))
// acc = or += A (descriptor, K-major) . B (descriptor, K-major).
#define LDQA_WGMMA_M64N64K16_SS(TYPE)                                                                   \
  asm volatile(                                                                                          \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                       \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " LDQA_WGMMA_ACC32                  \
      "%32, %33, p, 1, 1, 0, 0;\n}\n"                                                                    \
      : LDQA_WGMMA_ACC_OPERANDS(acc)                                                                     \
      : "l"(a_desc), "l"(b_desc), "r"(accumulate))
// clang-format on

// One 64 x 64 x 16 step for T (fp16 or bf16): B K-major (kTransposeB false, S = Q K^T)
// or MN-major (true, O += P V).
template <typename T>
struct Mma {
  template <bool kTransposeB>
  static __device__ __forceinline__ void step(float (&acc)[8][4], const uint32_t (&a)[4], uint64_t b_desc,
                                              int accumulate) {
    if constexpr (std::is_same_v<T, __half> && kTransposeB) {
      LDQA_WGMMA_M64N64K16_RS("f16", 1);
    } else if constexpr (std::is_same_v<T, __half>) {
      LDQA_WGMMA_M64N64K16_RS("f16", 0);
    } else if constexpr (kTransposeB) {
      LDQA_WGMMA_M64N64K16_RS("bf16", 1);
    } else {
      LDQA_WGMMA_M64N64K16_RS("bf16", 0);
    }
  }
  // Both operands from shared memory, both K-major (S = Q K^T with Q resident).
  static __device__ __forceinline__ void step_shared(float (&acc)[8][4], uint64_t a_desc, uint64_t b_desc,
                                                     int accumulate) {
    if constexpr (std::is_same_v<T, __half>) {
      LDQA_WGMMA_M64N64K16_SS("f16");
    } else {
      LDQA_WGMMA_M64N64K16_SS("bf16");
    }
  }
};

// acc (64 x 64) = A (64 x 64, registers: this warp's 16 rows, four k-steps) . B^T, B the
// 64 rows of a swizzled tile at shared address `tile` read K-major: S = Q K^T.
template <typename T>
__device__ __forceinline__ void gemm_abt(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t tile) {
  const uint64_t b_desc = descriptor(tile);
  fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)  // a k-step is 16 halves = 32 bytes along the swizzled row
    Mma<T>::template step<false>(acc, a[kk], advanced(b_desc, kk * 32), kk > 0 ? 1 : 0);
  commit();
  wait_all();
}

// acc (64 x 64) = A . B^T, both 64-row swizzled tiles at shared addresses `a_tile` and
// `b_tile` read K-major: S = Q K^T with Q resident in shared memory, which also keeps
// the A operand out of the registers the rule above is about.
template <typename T>
__device__ __forceinline__ void gemm_abt_shared(float (&acc)[8][4], uint32_t a_tile, uint32_t b_tile) {
  const uint64_t a_desc = descriptor(a_tile), b_desc = descriptor(b_tile);
  fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    Mma<T>::step_shared(acc, advanced(a_desc, kk * 32), advanced(b_desc, kk * 32), kk > 0 ? 1 : 0);
  commit();
  wait_all();
}

// This warp's 16 rows of M (64 x 64 fp32 in the accumulator layout) rounded to T, as
// the A fragments of four k-steps (the mma.sync m16n8k16 A layout): element [nt][e] of
// M is half e % 2 of a[nt / 2][(nt % 2) * 2 + e / 2].
template <typename T>
__device__ __forceinline__ void pack_a(uint32_t (&a)[4][4], const float (&m)[8][4]) {
  using Op = Ops<T>;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    a[kk][0] = Op::pack(m[2 * kk][0], m[2 * kk][1]);
    a[kk][1] = Op::pack(m[2 * kk][2], m[2 * kk][3]);
    a[kk][2] = Op::pack(m[2 * kk + 1][0], m[2 * kk + 1][1]);
    a[kk][3] = Op::pack(m[2 * kk + 1][2], m[2 * kk + 1][3]);
  }
}

// Element [nt][e] of the matrix pack_a packed into `a`, back in fp32.
template <typename T>
__device__ __forceinline__ float packed_element(const uint32_t (&a)[4][4], int nt, int e) {
  const uint32_t pair = a[nt / 2][(nt % 2) * 2 + e / 2];
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(e % 2 ? pair >> 16 : pair & 0xFFFFu)));
  } else {
    return __uint_as_float(e % 2 ? pair & 0xFFFF0000u : pair << 16);
  }
}

// acc (64 x 64) += A (pack_a's fragments, packed right before: see above) . B, B a
// swizzled tile read MN-major (its rows are the k dimension).
template <typename T>
__device__ __forceinline__ void gemm_packed_b(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t tile) {
  const uint64_t b_desc = descriptor(tile);
  fence();  // acc and a were written by ordinary instructions
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)  // a k-step is 16 rows of B = 2048 bytes
    Mma<T>::template step<true>(acc, a[kk], advanced(b_desc, kk * 16 * kRowBytes), 1);
  commit();
  wait_all();
}

// acc (64 x 64) += M (64 x 64 fp32 in the accumulator layout, rounded to T) . B, B a
// swizzled tile read MN-major (its rows are the k dimension): O += P V.
template <typename T>
__device__ __forceinline__ void gemm_mb(float (&acc)[8][4], const float (&m)[8][4], uint32_t tile) {
  uint32_t a[4][4];
  pack_a<T>(a, m);
  gemm_packed_b<T>(acc, a, tile);
}

#undef LDQA_WGMMA_M64N64K16_RS
#undef LDQA_WGMMA_M64N64K16_SS
#undef LDQA_WGMMA_ACC_OPERANDS
#undef LDQA_WGMMA_ACC32

}  // namespace ldqa::attention::detail::gpu::wgmma
