// The forward kernels (mma.sync m16n8k16, fp16 or bf16 operands, fp32 accumulation,
// online softmax in registers): the window/layout + global kernel for local and for
// global rows, the merge of a global row's key splits, and exact top-k. Instantiated
// by forward_launch.cuh, one dtype x head dim per unit (forward_*_hd*.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/cuda/common.cuh"
#include "attention/cuda/tma.cuh"
#include "attention/cuda/wgmma.cuh"

namespace ldqa::attention::detail::gpu {

// How far (log2 units) a row's maximum may grow before the wgmma kernel rescales its
// running output and sum to it: exponentials against the stale maximum stay <= 2^8.
constexpr float kLazyRescaleLog2 = 8.f;

// O's rows (this thread's two) times their softmax corrections.
template <int D>
__device__ __forceinline__ void scale_rows(float (&o_acc)[D / 8][4], const float (&correction)[2]) {
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    o_acc[dt][0] *= correction[0];
    o_acc[dt][1] *= correction[0];
    o_acc[dt][2] *= correction[1];
    o_acc[dt][3] *= correction[1];
  }
}

// One step's online softmax on the wgmma path, lazily rescaled (FlashAttention-4's
// way): the running maximum moves only when some row of the warp grows past its own by
// more than kLazyRescaleLog2. Below that the exponentials are taken against the old
// maximum, at most 2^kLazyRescaleLog2 (exact in fp32, rounded to bf16/fp16 at the same
// relative precision as any P), and O and the sums keep their scale: most steps skip the
// corrections' ex2 and O's 32 multiplies, which sit between the softmax and the P V
// GEMM. The decision is warp-uniform (a branch, not selects). The lse stays exact: it
// is the maximum actually used plus log2 of the sum taken against it.
// s_acc: the step's unscaled scores in, P out; tile_max: this thread's maxima of its two
// rows' scores (reduced over the row's four threads here).
template <int D>
__device__ __forceinline__ void lazy_softmax_step(float (&s_acc)[8][4], float (&o_acc)[D / 8][4], float (&tile_max)[2],
                                                  float (&row_max)[2], float (&row_sum)[2], float scale_log2) {
  float new_max[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    new_max[r] = fmaxf(row_max[r], tile_max[r] * scale_log2);
  }
  // -inf + kLazyRescaleLog2 is -inf: a row's first valid keys always move its maximum.
  const bool rescale =
      __any_sync(0xffffffffu, new_max[0] > row_max[0] + kLazyRescaleLog2 || new_max[1] > row_max[1] + kLazyRescaleLog2);
  if (rescale) {
    float correction[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float use = new_max[r] == -INFINITY ? 0.f : new_max[r];
      correction[r] = fast_exp2(row_max[r] - use);
      row_max[r] = new_max[r];
      row_sum[r] *= correction[r];
    }
    scale_rows<D>(o_acc, correction);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float use = row_max[r] == -INFINITY ? 0.f : row_max[r];  // all masked so far: keep zeros
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      s_acc[nt][2 * r] = fast_exp2(fmaf(s_acc[nt][2 * r], scale_log2, -use));
      s_acc[nt][2 * r + 1] = fast_exp2(fmaf(s_acc[nt][2 * r + 1], scale_log2, -use));
      row_sum[r] += s_acc[nt][2 * r] + s_acc[nt][2 * r + 1];
    }
  }
}

// 2./3. The attention kernel, four warps, each 16 query rows of a 64-row tile.
// kGlobalRows = false: the local rows of query tile x over its listed key tiles,
// then the global keys outside them; true: up to 64 global rows (by slot) against one
// split of the key tiles, writing partial results.
// Two shared buffers and one barrier per step: the barrier that publishes step s also
// tells that every warp is done with step s - 1, whose buffer step s + 1 then takes.
// What a step costs beyond its 64 mma.sync is kept small (it bounds the rate at
// D = 64): scores stay unscaled until one FFMA feeds ex2.approx, shared addresses are
// fixed per thread, and each thread copies the same rows of every tile.
// kWgmma (sm_90a, head dim 64): the two GEMMs of a step as Hopper's warpgroup MMA
// (wgmma.cuh), S = Q K^T with both operands in shared memory, on swizzled Q, K and V
// tiles instead of mma.sync on padded ones; the tiles a step lists (and the local rows'
// queries) come by TMA (tma.cuh), one thread asking, each stage completing on its
// mbarrier; gathered global keys and the global rows' queries stay on cp.async.
// Masks and stores are the same code; the online softmax is rescaled lazily
// (lazy_softmax_step).
template <int D, bool kWgmma = false>
struct ForwardTraits {
  static constexpr int kRow = D + kPad;  // halves per shared row
  static constexpr std::size_t kTileHalves = static_cast<std::size_t>(kTile) * kRow;
  static constexpr int kChunks = D / 8;                       // 16-byte chunks per row
  static constexpr int kCopies = kTile * kChunks / kThreads;  // chunks per thread per tile
  static constexpr int kRowsPerCopy = kThreads / kChunks;     // rows between a thread's chunks
  // CTAs per SM the registers must allow: at D <= 64 four (128 registers, a 32-byte
  // spill) beat three (168, none) on the H200 in 11 of 12 benchmark rows by 1-18 %
  // (three won H12 n = 4k B = 1 by 9 %); D = 128 needs its 221.
  // wgmma: four as well (ptxas: 109-114 registers, no spill; not measured against three).
  // Five would fit in shared memory, but at their 96 registers ptxas spills 36 bytes
  // inside the loop and waits after every HGMMA instead of once per GEMM (2026-12-06).
  // The one-launch local + global kernel (attend_all_kernel) at bf16 D = 64: mma.sync 128
  // registers and a 36-byte spill, where the local rows' own kernel had none (ptxas, nvcc 13).
  static constexpr int kMinBlocks = kWgmma ? 4 : (D <= 64 ? 4 : 2);
  // mma.sync: q, then two k and two v tiles (padded rows), then two stages of key flags.
  // wgmma: up to 1 KB to align, two k and two v swizzled tiles, the swizzled q tile, the
  // flags, then three mbarriers (the two K/V stages, the query tile).
  static constexpr std::size_t kBytes =
      kWgmma ? wgmma::kAtomBytes + 5 * wgmma::kTileBytes + 2 * kTile + 3 * 8 : 5 * kTileHalves * 2 + 2 * kTile;
  // Halves between a K/V stage and the next, and where a thread's copy row/chunk lands.
  static constexpr int kStageHalves = kWgmma ? static_cast<int>(wgmma::kTileBytes / 2) : static_cast<int>(kTileHalves);
  static constexpr int kCopyRowHalves = kWgmma ? static_cast<int>(wgmma::kRowBytes / 2) : kRow;
  static __device__ __forceinline__ int copy_offset(int row, int col) {
    if constexpr (kWgmma) return static_cast<int>(wgmma::swizzled(row, col / 8) / 2);
    return row * kRow + col;
  }
};

// One CTA of the attention kernel: query tile (local rows) or global-row tile x split
// (global rows) x of head h, sequence b.
// maps: the wgmma path's tensor maps (nullptr on the mma.sync path).
template <typename T, int D, bool kGlobalRows, bool kWgmma>
__device__ __forceinline__ void attend_cta(const Params& p, const RowMaps* maps, int x, int h, int b) {
  static_assert(!kWgmma || D == 64, "the wgmma path is written for head dim 64");
  using Op = Ops<T>;
  using Tr = ForwardTraits<D, kWgmma>;
  constexpr int kRow = Tr::kRow;
  constexpr uint32_t kStageBytes = Tr::kTileHalves * 2;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_s;                 // [64][kRow] padded (mma.sync), or swizzled (wgmma)
  T* k_s;                 // [2] stages of 64 rows: padded (mma.sync) or swizzled (wgmma)
  T* v_s;                 // likewise
  uint8_t* key_flag_s;    // [2][64]
  uint32_t barriers = 0;  // wgmma: shared address of the mbarriers, 8 bytes each: [0], [1] the stages, [2] q
  if constexpr (kWgmma) {
    const uint32_t misalign = smem_addr(smem_raw) % wgmma::kAtomBytes;
    unsigned char* base = smem_raw + (misalign == 0 ? 0 : wgmma::kAtomBytes - misalign);
    k_s = reinterpret_cast<T*>(base);
    v_s = reinterpret_cast<T*>(base + 2 * wgmma::kTileBytes);
    q_s = reinterpret_cast<T*>(base + 4 * wgmma::kTileBytes);
    key_flag_s = base + 5 * wgmma::kTileBytes;
    barriers = smem_addr(key_flag_s + 2 * kTile);
  } else {
    q_s = reinterpret_cast<T*>(smem_raw);
    k_s = q_s + Tr::kTileHalves;
    v_s = k_s + 2 * Tr::kTileHalves;
    key_flag_s = reinterpret_cast<uint8_t*>(v_s + 2 * Tr::kTileHalves);
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, tig = lane % 4;
  const std::size_t base = head_base(p, b, h);
  const uint8_t* flags = sequence_flags(p, b);
  const int32_t* globals = p.global_index + static_cast<std::size_t>(b) * p.max_global;
  const int global_count = p.global_count[b];
  const bool overflowed = p.overflow[b] != 0;

  QueryWalk walk;
  if (!query_walk<kGlobalRows>(p, x, h, global_count, walk)) return;
  const int q_first = walk.q_first, split = walk.split, steps = walk.steps, listed = walk.listed;
  const int32_t* row_keys = walk.row_keys;
  const uint64_t* row_bits = walk.row_bits;

  const TensorStrides& q_st = kGlobalRows ? p.st_qg : p.st_q;
  const TensorStrides& k_st = kGlobalRows ? p.st_kg : p.st_k;
  const TensorStrides& v_st = kGlobalRows ? p.st_vg : p.st_v;
  const T* q_src = head_rows(static_cast<const T*>(kGlobalRows ? p.qg : p.q), q_st, b, h);
  const T* k_src = head_rows(static_cast<const T*>(kGlobalRows ? p.kg : p.k), k_st, b, h);
  const T* v_src = head_rows(static_cast<const T*>(kGlobalRows ? p.vg : p.v), v_st, b, h);

  // This thread copies chunk column copy_col of rows copy_row + c * kRowsPerCopy.
  const int copy_row = threadIdx.x / Tr::kChunks, copy_col = (threadIdx.x % Tr::kChunks) * 8;
  const int copy_smem = copy_row * kRow + copy_col;              // in the padded q tile
  const int copy_smem_kv = Tr::copy_offset(copy_row, copy_col);  // in a K/V stage

  // The TMA's phases count one arrival (thread 0's, announcing the bytes).
  if constexpr (kWgmma) {
    if (threadIdx.x == 0) {
#pragma unroll
      for (int i = 0; i < 3; ++i) tma::barrier_init(barriers + 8 * i, 1);
      tma::barrier_init_fence();
    }
    __syncthreads();
  }

  // Query rows -> shared (zero rows past the end); cp.async ones travel in step 0's copy
  // group. The wgmma path's local rows: one TMA box on barrier [2], if any step reads it.
  if constexpr (kWgmma && !kGlobalRows) {
    if (threadIdx.x == 0 && steps > 0) {
      tma::arrive_expect_bytes(barriers + 16, wgmma::kTileBytes);
      tma::load_rows(smem_addr(q_s), maps->q, barriers + 16, q_first, h, b);
    }
  } else {
#pragma unroll
    for (int c = 0; c < Tr::kCopies; ++c) {
      const int r = copy_row + c * Tr::kRowsPerCopy;
      int pos = -1;
      if constexpr (kGlobalRows) {
        if (q_first + r < global_count) pos = globals[q_first + r];
      } else {
        if (q_first + r < p.n) pos = q_first + r;
      }
      const T* src = pos >= 0 ? q_src + row_at(pos, q_st) + copy_col : q_src;
      T* dst = kWgmma ? q_s + copy_smem_kv + c * Tr::kRowsPerCopy * Tr::kCopyRowHalves
                      : q_s + copy_smem + c * Tr::kRowsPerCopy * kRow;
      cp_async16(dst, src, pos >= 0 ? 16 : 0);
    }
  }

  // Issues the copies of step s into buffer `buf`: the key and value tiles and the keys'
  // flags (cp.async from the kTile-aligned flag rows, so that no plain load stalls the step).
  auto issue = [&](int s, int buf) {
    int tile = -1, gathered_first = -1;
    if constexpr (kGlobalRows) {
      tile = split * p.tiles_per_split + s;
    } else if (s < listed) {
      tile = row_keys[s];
    } else {
      gathered_first = (s - listed) * kTile;
    }
    T* k_dst = k_s + buf * Tr::kStageHalves + copy_smem_kv;
    T* v_dst = v_s + buf * Tr::kStageHalves + copy_smem_kv;
    if constexpr (kWgmma) {
      if (tile >= 0) {
        // The K and V boxes (rows past n zeros) and the tile's 64 flags (prepare_kernel
        // zeroes the flag row's padding past n), all on the stage's barrier.
        if (threadIdx.x == 0) {
          const uint32_t bar = barriers + 8 * buf;
          tma::arrive_expect_bytes(bar, 2 * wgmma::kTileBytes + kTile);
          tma::load_rows(smem_addr(k_s) + buf * wgmma::kTileBytes, kGlobalRows ? maps->kg : maps->k, bar, tile * kTile,
                         h, b);
          tma::load_rows(smem_addr(v_s) + buf * wgmma::kTileBytes, kGlobalRows ? maps->vg : maps->v, bar, tile * kTile,
                         h, b);
          tma::load_bytes(smem_addr(key_flag_s + buf * kTile), flags + tile * kTile, kTile, bar);
        }
        return;
      }
    }
    if (tile >= 0) {
      const int rows_left = p.n - tile * kTile;
      const int first_row = tile * kTile + copy_row;
#pragma unroll
      for (int c = 0; c < Tr::kCopies; ++c) {
        const bool inside = copy_row + c * Tr::kRowsPerCopy < rows_left;
        const int row = inside ? first_row + c * Tr::kRowsPerCopy : 0;
        cp_async16(k_dst + c * Tr::kRowsPerCopy * Tr::kCopyRowHalves, k_src + row_at(row, k_st) + copy_col,
                   inside ? 16 : 0);
        cp_async16(v_dst + c * Tr::kRowsPerCopy * Tr::kCopyRowHalves, v_src + row_at(row, v_st) + copy_col,
                   inside ? 16 : 0);
      }
      if (threadIdx.x < 4) copy_tile_flags(key_flag_s + buf * kTile, flags, tile, p.n, threadIdx.x);
    } else {
#pragma unroll
      for (int c = 0; c < Tr::kCopies; ++c) {
        const int r = copy_row + c * Tr::kRowsPerCopy;
        const int pos = gathered_first + r < global_count ? globals[gathered_first + r] : -1;
        const int row = pos >= 0 ? pos : 0;
        cp_async16(k_dst + c * Tr::kRowsPerCopy * Tr::kCopyRowHalves, k_src + row_at(row, k_st) + copy_col,
                   pos >= 0 ? 16 : 0);
        cp_async16(v_dst + c * Tr::kRowsPerCopy * Tr::kCopyRowHalves, v_src + row_at(row, v_st) + copy_col,
                   pos >= 0 ? 16 : 0);
      }
      if (threadIdx.x < kTile) {
        const int r = threadIdx.x;
        uint8_t f = 0;
        // A global key inside a listed tile was already seen there: count it once.
        if (gathered_first + r < global_count &&
            !tile_listed(row_keys, row_keys + listed, globals[gathered_first + r] / kTile))
          f = kValid | kGlobal;
        key_flag_s[buf * kTile + r] = f;
      }
    }
    cp_async_commit();
  };

  float o_acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o_acc[i][0] = o_acc[i][1] = o_acc[i][2] = o_acc[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // log2 domain (scaled)
  float row_sum[2] = {0.f, 0.f};
  uint32_t q_frag[D / 16][4];
  const float scale_log2 = p.scale * kLog2e;
  // Fixed per thread: where its ldmatrix rows start in the K and V buffers.
  const uint32_t k_addr = smem_addr(k_s) + ((lane % 8) * kRow + (lane / 8) * 8) * 2;
  const uint32_t v_addr = smem_addr(v_s) + (((lane % 8) + ((lane / 8) % 2) * 8) * kRow + (lane / 16) * 8) * 2;
  const int my_rows = q_first + warp * 16 + group;  // this thread's rows: my_rows and my_rows + 8

  if (steps > 0) issue(0, 0);
  cp_async_commit();  // the query copies, committed even without a step: the last wait covers them
  for (int s = 0; s < steps; ++s) {
    const int buf = s & 1;
    cp_async_wait<0>();
    if constexpr (kWgmma) {
      // The TMA's steps are the first ones (listed tiles before gathered keys), so the
      // k-th use of a stage is step 2k + buf: its phase parity is k's.
      if (!kGlobalRows && s == 0) tma::wait(barriers + 16, 0);
      if (kGlobalRows || s < listed) tma::wait(barriers + 8 * buf, (s >> 1) & 1);
      // This thread's cp.async copies (gathered keys; the global rows' queries, in step
      // 0's group) made visible to wgmma, before the barrier.
      if (kGlobalRows ? s == 0 : s >= listed) wgmma::fence_shared_for_async();
    }
    __syncthreads();
    if (s + 1 < steps) issue(s + 1, buf ^ 1);
    // Q's fragments, once (mma.sync; the wgmma path reads Q from shared memory).
    if (!kWgmma && s == 0) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const int r = warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        ldmatrix_x4(q_frag[kk], q_s + r * kRow + kk * 16 + (lane / 16) * 8);
      }
    }
    const uint8_t* kf = key_flag_s + buf * kTile;
    const bool gathered = !kGlobalRows && s >= listed;
    const int key_first = (!kGlobalRows && !gathered) ? row_keys[s] * kTile : 0;
    // Whether this warp's 16 rows need no mask for this step: every key valid and, for a
    // listed tile, the window covering every (row, key) pair.
    const uint64_t valid = columns_with(kf, kValid, lane);
    bool full = valid == ~0ull;
    if (!kGlobalRows && !gathered) {
      full = full && window_covers(q_first + warp * 16, 16, key_first, kTile, p.window);
    }
    // The keys each of this thread's two rows may see, as column masks (tile_plan.hpp):
    // the valid ones, and of a listed tile those in the window, global or allowed by the
    // layout. Worked out per row before the GEMM (fewer registers live), one bit test per
    // score after it. The wgmma path only: in the mma.sync kernel (128 registers for four
    // CTAs per SM) they made ptxas spill 36/36 bytes (stores/loads; 0/0 without), so it
    // keeps the test per score until a device has timed both.
    uint32_t mine = ~0u;
    if (kWgmma && !full) {
      uint64_t allowed[2] = {valid, valid};
      if (!kGlobalRows && !gathered) {
        const uint64_t global = columns_with(kf, kGlobal, lane);
        const uint64_t bits = row_bits[s];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = my_rows + r * 8;
          allowed[r] &=
              window_columns(i, key_first, p.window) | global | layout_columns(bits, p.layout_block, i % kTile, true);
        }
      }
      mine = thread_columns(allowed[0], allowed[1], tig);
    }
    // S = Q K^T for this warp's 16 rows x 64 keys, unscaled.
    float s_acc[8][4];
    if constexpr (kWgmma) {
      wgmma::gemm_abt_shared<T>(s_acc, smem_addr(q_s), smem_addr(k_s) + buf * wgmma::kTileBytes);
    } else {
      const uint32_t k_stage = k_addr + buf * kStageBytes;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        s_acc[nt][0] = s_acc[nt][1] = s_acc[nt][2] = s_acc[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk += 2) {
          uint32_t kb[4];
          ldmatrix_x4(kb, k_stage + (nt * 8 * kRow + kk * 16) * 2);
          Op::mma(s_acc[nt], q_frag[kk], kb[0], kb[1]);
          Op::mma(s_acc[nt], q_frag[kk + 1], kb[2], kb[3]);
        }
      }
    }
    if (!full) {
      const uint64_t bits = (kWgmma || kGlobalRows || gathered) ? 0 : row_bits[s];  // mma.sync's per-score test
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          bool ok;
          if constexpr (kWgmma) {
            ok = thread_allows(mine, nt, e);
          } else {
            const int col = nt * 8 + tig * 2 + (e & 1);
            const uint8_t f = kf[col];
            ok = (f & kValid) != 0;
            if (ok && !kGlobalRows && !gathered)
              ok = local_allows(my_rows + (e >> 1) * 8, key_first + col, f, p.window, bits, p.layout_block);
          }
          if (!ok) s_acc[nt][e] = -INFINITY;
        }
      }
    }
    // The online softmax update (the scale is positive, so the unscaled maximum is the
    // scaled one's).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      tile_max[0] = fmaxf(tile_max[0], fmaxf(s_acc[nt][0], s_acc[nt][1]));
      tile_max[1] = fmaxf(tile_max[1], fmaxf(s_acc[nt][2], s_acc[nt][3]));
    }
    if constexpr (kWgmma) {
      lazy_softmax_step<D>(s_acc, o_acc, tile_max, row_max, row_sum, scale_log2);
    } else {
      // mma.sync rescales at every step: the lazy form changed this kernel's scheduling
      // and gave the fp16 head-dim-64 one an 8/16-byte spill (ptxas, nvcc 13); not timed.
      float correction[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float new_max = fmaxf(row_max[r], tile_max[r] * scale_log2);
        const float use = new_max == -INFINITY ? 0.f : new_max;  // all masked so far: keep zeros
        correction[r] = fast_exp2(row_max[r] - use);
        row_max[r] = new_max;
        row_sum[r] *= correction[r];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          s_acc[nt][2 * r] = fast_exp2(fmaf(s_acc[nt][2 * r], scale_log2, -use));
          s_acc[nt][2 * r + 1] = fast_exp2(fmaf(s_acc[nt][2 * r + 1], scale_log2, -use));
          row_sum[r] += s_acc[nt][2 * r] + s_acc[nt][2 * r + 1];
        }
      }
      scale_rows<D>(o_acc, correction);
    }
    // O += P V: P's accumulator layout is already the A-operand layout.
    if constexpr (kWgmma) {
      wgmma::gemm_mb<T>(o_acc, s_acc, smem_addr(v_s) + buf * wgmma::kTileBytes);
    } else {
      const uint32_t v_stage = v_addr + buf * kStageBytes;
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        uint32_t a[4];
        a[0] = Op::pack(s_acc[2 * kk][0], s_acc[2 * kk][1]);
        a[1] = Op::pack(s_acc[2 * kk][2], s_acc[2 * kk][3]);
        a[2] = Op::pack(s_acc[2 * kk + 1][0], s_acc[2 * kk + 1][1]);
        a[3] = Op::pack(s_acc[2 * kk + 1][2], s_acc[2 * kk + 1][3]);
#pragma unroll
        for (int dt = 0; dt < D / 8; dt += 2) {
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, v_stage + (kk * 16 * kRow + dt * 8) * 2);
          Op::mma(o_acc[dt], a, vb[0], vb[1]);
          Op::mma(o_acc[dt + 1], a, vb[2], vb[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
  T* out = head_rows(static_cast<T*>(p.out), p.st_out, b, h);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int local_row = warp * 16 + group + r * 8;
    if constexpr (kGlobalRows) {
      const int slot = q_first + local_row;
      if (slot >= global_count) continue;
      const std::size_t at = ((static_cast<std::size_t>(b) * p.heads + h) * p.max_global + slot) * p.splits + split;
      float* acc = p.partial_acc + at * D;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        acc[dt * 8 + tig * 2] = o_acc[dt][2 * r];
        acc[dt * 8 + tig * 2 + 1] = o_acc[dt][2 * r + 1];
      }
      if (tig == 0) {
        p.partial_ml[at * 2] = row_max[r];
        p.partial_ml[at * 2 + 1] = row_sum[r];
      }
    } else {
      const int i = q_first + local_row;
      if (i >= p.n) continue;
      const uint8_t f = flags[i];
      if ((f & kGlobal) && !overflowed) continue;  // written by the global pass
      const bool attended = (f & kValid) && row_sum[r] > 0.f;
      float factor = attended ? 1.f / row_sum[r] : 0.f;
      if (overflowed) factor = NAN;
      if (p.lse != nullptr && tig == 0)  // natural log of the sum of exp over the row's keys
        p.lse[base + i] = overflowed ? NAN : (attended ? (row_max[r] + log2f(row_sum[r])) * kLn2 : -INFINITY);
      T* dst = out + row_at(i, p.st_out);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const uint32_t packed = Op::pack(o_acc[dt][2 * r] * factor, o_acc[dt][2 * r + 1] * factor);
        *reinterpret_cast<uint32_t*>(dst + dt * 8 + tig * 2) = packed;
      }
    }
  }
}

// The local rows alone (no globals): CTA (query tile, head, sequence).
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, ForwardTraits<D>::kMinBlocks) attend_kernel(Params p) {
  attend_cta<T, D, false, false>(p, nullptr, blockIdx.x, blockIdx.y, blockIdx.z);
}
// The wgmma path's (sm_90a, head dim 64): the tensor maps as a __grid_constant__
// parameter, whose address the TMA takes.
template <typename T>
__global__ void __launch_bounds__(kThreads, ForwardTraits<64, true>::kMinBlocks)
    attend_wgmma_kernel(Params p, const __grid_constant__ RowMaps maps) {
  attend_cta<T, 64, false, true>(p, &maps, blockIdx.x, blockIdx.y, blockIdx.z);
}

// Local and global rows in one launch, so that neither waits for the other (the global
// rows' CTAs, run after the local ones, were a serial tail: at B = 8 a few hundred CTAs
// of ~86 key tiles each). A 1-D grid: first the global rows' `global_ctas` CTAs of every
// head and sequence (global-row tile x split; the longest walks, dispatched first), then
// every local query tile.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, ForwardTraits<D>::kMinBlocks) attend_all_kernel(Params p, int global_ctas) {
  rows_cta(
      p, global_ctas, [&](int x, int h, int b) { attend_cta<T, D, true, false>(p, nullptr, x, h, b); },
      [&](int x, int h, int b) { attend_cta<T, D, false, false>(p, nullptr, x, h, b); });
}
template <typename T>
__global__ void __launch_bounds__(kThreads, ForwardTraits<64, true>::kMinBlocks)
    attend_all_wgmma_kernel(Params p, int global_ctas, const __grid_constant__ RowMaps maps) {
  rows_cta(
      p, global_ctas, [&](int x, int h, int b) { attend_cta<T, 64, true, true>(p, &maps, x, h, b); },
      [&](int x, int h, int b) { attend_cta<T, 64, false, true>(p, &maps, x, h, b); });
}

// 4. Merge the key splits of each global row: one warp per (row, head, sequence).
template <typename T, int D>
__global__ void combine_kernel(Params p) {
  const int slot = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int h = blockIdx.y, b = blockIdx.z;
  if (slot >= p.global_count[b] || p.overflow[b]) return;
  const std::size_t at = ((static_cast<std::size_t>(b) * p.heads + h) * p.max_global + slot) * p.splits;
  float m = -INFINITY;
  for (int s = 0; s < p.splits; ++s) m = fmaxf(m, p.partial_ml[(at + s) * 2]);
  float acc[D / 32] = {};
  float sum = 0.f;
  for (int s = 0; s < p.splits; ++s) {
    const float split_max = p.partial_ml[(at + s) * 2];
    if (split_max == -INFINITY) continue;  // a split with no valid key
    const float w = exp2f(split_max - m);
    sum += p.partial_ml[(at + s) * 2 + 1] * w;
#pragma unroll
    for (int x = 0; x < D / 32; ++x) acc[x] += p.partial_acc[(at + s) * D + x * 32 + lane] * w;
  }
  const int i = p.global_index[static_cast<std::size_t>(b) * p.max_global + slot];
  T* dst = head_rows(static_cast<T*>(p.out), p.st_out, b, h) + row_at(i, p.st_out);
#pragma unroll
  for (int x = 0; x < D / 32; ++x) dst[x * 32 + lane] = Ops<T>::from_float(sum > 0.f ? acc[x] / sum : 0.f);
  if (p.lse != nullptr && lane == 0) p.lse[head_base(p, b, h) + i] = sum > 0.f ? (m + log2f(sum)) * kLn2 : -INFINITY;
}

// ---------------------------------------------------------------------------------------
// Exact top-k: one CTA per query row. Candidates are enumerated in the fused kernel's
// order; scores are recomputed per pass (bit-identical), so no score buffer is needed.
// A 4-pass radix select over order-preserving score keys finds the k-th largest score;
// ties at that score are then cut by ascending key position (a second radix select).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) topk_kernel(Params p) {
  using Op = Ops<T>;
  __shared__ float q_row[D];
  __shared__ int hist[256];
  __shared__ int select_state[2];
  __shared__ float red_f[kThreads / 32];
  __shared__ int red_i[kThreads / 32];
  __shared__ float chunk_p[kThreads];
  __shared__ int chunk_j[kThreads];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x;
  const uint8_t* flags = sequence_flags(p, b);
  const int32_t* globals = p.global_index + static_cast<std::size_t>(b) * p.max_global;
  const int global_count = p.global_count[b];
  T* dst = head_rows(static_cast<T*>(p.out), p.st_out, b, h) + row_at(i, p.st_out);
  const uint8_t fi = flags[i];
  if (p.overflow[b] || !(fi & kValid)) {
    const float fill = p.overflow[b] ? NAN : 0.f;
    for (int x = tid; x < D; x += kThreads) dst[x] = Op::from_float(fill);
    return;
  }
  const bool is_global = (fi & kGlobal) != 0;
  const TensorStrides& k_st = is_global ? p.st_kg : p.st_k;
  const TensorStrides& v_st = is_global ? p.st_vg : p.st_v;
  const T* q = head_rows(static_cast<const T*>(is_global ? p.qg : p.q), is_global ? p.st_qg : p.st_q, b, h) +
               row_at(i, is_global ? p.st_qg : p.st_q);
  const T* keys = head_rows(static_cast<const T*>(is_global ? p.kg : p.k), k_st, b, h);
  const T* values = head_rows(static_cast<const T*>(is_global ? p.vg : p.v), v_st, b, h);
  for (int x = tid; x < D; x += kThreads) q_row[x] = Op::to_float(q[x]) * p.scale;
  const int prow = (h % p.plan_heads) * p.num_tiles + i / kTile;
  const int32_t* row_keys = p.key_tile + p.row_ptr[prow];
  const int listed = p.row_ptr[prow + 1] - p.row_ptr[prow];
  const int total = is_global ? p.n : listed * kTile + global_count;
  __syncthreads();

  // Candidate c -> key position, or -1 when the pattern does not allow it.
  auto key_of = [&](int c) -> int {
    if (is_global) return (flags[c] & kValid) ? c : -1;
    if (c < listed * kTile) {
      const int e = c / kTile;
      const int j = row_keys[e] * kTile + c % kTile;
      if (j >= p.n || !(flags[j] & kValid)) return -1;
      return local_allows(i, j, flags[j], p.window, p.layout_bits[p.row_ptr[prow] + e], p.layout_block) ? j : -1;
    }
    const int j = globals[c - listed * kTile];
    return tile_listed(row_keys, row_keys + listed, j / kTile) ? -1 : j;
  };
  auto score_of = [&](int j) {
    const T* kr = keys + row_at(j, k_st);
    float acc = 0.f;
#pragma unroll 8
    for (int x = 0; x < D; ++x) acc = fmaf(q_row[x], Op::to_float(kr[x]), acc);
    return acc;
  };
  auto block_sum = [&](int v) {
    for (int d = 16; d > 0; d /= 2) v += __shfl_xor_sync(0xffffffffu, v, d);
    __syncthreads();
    if (tid % 32 == 0) red_i[tid / 32] = v;
    __syncthreads();
    int s = 0;
    for (int w = 0; w < kThreads / 32; ++w) s += red_i[w];
    return s;
  };
  auto block_max = [&](float v) {
    for (int d = 16; d > 0; d /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, d));
    __syncthreads();
    if (tid % 32 == 0) red_f[tid / 32] = v;
    __syncthreads();
    float s = -INFINITY;
    for (int w = 0; w < kThreads / 32; ++w) s = fmaxf(s, red_f[w]);
    return s;
  };

  int count = 0;
  float best = -INFINITY;
  for (int c = tid; c < total; c += kThreads) {
    const int j = key_of(c);
    if (j < 0) continue;
    ++count;
    best = fmaxf(best, score_of(j));
  }
  count = block_sum(count);
  best = block_max(best);
  if (count == 0) {
    for (int x = tid; x < D; x += kThreads) dst[x] = Op::from_float(0.f);
    return;
  }
  const int keep = min(p.top_k, count);

  // Radix select of the `want`-th largest key among eligible candidates.
  // key_fn(c, j) -> uint32 key; eligible(c, j) -> bool. Returns (threshold, how many
  // candidates equal to the threshold are still to be taken).
  auto radix_select = [&](auto key_fn, auto eligible, int want, uint32_t& threshold, int& remaining) {
    uint32_t prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int x = tid; x < 256; x += kThreads) hist[x] = 0;
      __syncthreads();
      for (int c = tid; c < total; c += kThreads) {
        const int j = key_of(c);
        if (j < 0 || !eligible(c, j)) continue;
        const uint32_t key = key_fn(c, j);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
      }
      __syncthreads();
      if (tid == 0) {
        int above = 0, bin = 255;
        for (; bin > 0; --bin) {
          if (above + hist[bin] >= want) break;
          above += hist[bin];
        }
        select_state[0] = bin;
        select_state[1] = want - above;
      }
      __syncthreads();
      prefix |= static_cast<uint32_t>(select_state[0]) << shift;
      mask |= 255u << shift;
      want = select_state[1];
      __syncthreads();
    }
    threshold = prefix;
    remaining = want;
  };
  auto score_key = [&](int, int j) { return order_key(score_of(j)); };
  uint32_t score_threshold = 0;
  int take_equal = 0;
  radix_select(
      score_key, [](int, int) { return true; }, keep, score_threshold, take_equal);
  // Among keys whose score equals the threshold, keep the take_equal lowest positions.
  uint32_t position_threshold = 0xffffffffu;  // ~j >= threshold  <=>  j <= ~threshold
  int unused = 0;
  radix_select([](int, int j) { return ~static_cast<uint32_t>(j); },
               [&](int, int j) { return order_key(score_of(j)) == score_threshold; }, take_equal, position_threshold,
               unused);
  const int last_equal_position = static_cast<int>(~position_threshold);

  // Softmax over the kept keys and the weighted sum of their values, in chunks.
  float acc = 0.f, sum = 0.f;
  const int chunks = (total + kThreads - 1) / kThreads;
  for (int chunk = 0; chunk < chunks; ++chunk) {
    const int c = chunk * kThreads + tid;
    float weight = 0.f;
    int j = c < total ? key_of(c) : -1;
    if (j >= 0) {
      const float s = score_of(j);
      const uint32_t key = order_key(s);
      if (key > score_threshold || (key == score_threshold && j <= last_equal_position)) {
        weight = exp2f((s - best) * kLog2e);
      } else {
        j = -1;
      }
    }
    chunk_p[tid] = weight;
    chunk_j[tid] = j;
    __syncthreads();
    if (tid < D) {
      for (int x = 0; x < kThreads; ++x) {
        if (chunk_j[x] < 0) continue;
        sum += chunk_p[x];
        acc = fmaf(chunk_p[x], Op::to_float(values[row_at(chunk_j[x], v_st) + tid]), acc);
      }
    }
    __syncthreads();
  }
  if (tid < D) dst[tid] = Op::from_float(acc / sum);
}

}  // namespace ldqa::attention::detail::gpu
