// The backward kernels (FlashAttention-2-style recomputation from the forward's row
// log-sum-exp, mma.sync, no atomics): dQ for local and global rows (each CTA working out
// its rows' deltas) and the merge of the latter's splits, dK/dV key-major and for the
// gathered global keys. The launch sequence and its reasons are in
// attention_gpu_backward.cu; instantiated by backward_launch.cuh, one dtype x head dim
// per unit (backward_*_hd*.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention/cuda/common.cuh"
#include "attention/cuda/wgmma.cuh"

namespace ldqa::attention::detail::gpu {

// kWgmma (sm_90a, head dim 64): the GEMMs as Hopper's warpgroup MMA (wgmma.cuh), every
// tile swizzled for it, 1024-byte aligned, the streamed ones (K and V in dQ, Q and dO in
// dK/dV) first. The resident ones (Q and dO in dQ, K and V in dK/dV) are the A operand
// of S = Q K^T and dP = dO V^T (S^T = K Q^T, dP^T = V dO^T) straight from shared memory:
// no ldmatrix per step, and 32 registers fewer. On the mma.sync path they are padded
// for ldmatrix, loaded into registers once.
template <int D, bool kWgmma = false>
struct BackwardSmem {
  static constexpr int kRow = D + kPad;
  static constexpr int kTileElems = kTile * kRow;
  // Head dim 128 single-buffers its streamed tiles so both kernels stay under the
  // 99 KB of shared memory a CTA may have on sm_86/sm_89.
  static constexpr int kStages = D <= 64 ? 2 : 1;
  // dQ CTAs per SM the registers must allow: three at D <= 64 (168 registers), four on
  // the wgmma path (128; its shared memory allows four too). There the one-launch kernel
  // would take 143 and ptxas keeps a few set-up values in local memory instead (see
  // SPILL_BUDGET in scripts/check-wgmma-sass.py): 3-4 % faster on an H100 than three.
  static constexpr int kDqMinBlocks = kWgmma ? 4 : (D <= 64 ? 3 : 1);
  // Halves of one streamed tile (a stage) and of a resident one, and the bytes before
  // the first tile.
  static constexpr int kStageHalves = kWgmma ? static_cast<int>(wgmma::kTileBytes / 2) : kTileElems;
  static constexpr int kResidentHalves = kStageHalves;
  static constexpr std::size_t kAlignBytes = kWgmma ? wgmma::kAtomBytes : 0;
  // dQ: the query and dO tiles, per stage a key and a value tile, key flags, and the
  // rows' deltas (floats).
  static constexpr std::size_t kDqBytes = kAlignBytes + static_cast<std::size_t>(2) * kResidentHalves * 2 +
                                          static_cast<std::size_t>(2 * kStages) * kStageHalves * 2 +
                                          static_cast<std::size_t>(kStages) * kTile + kTile * sizeof(float);
  // dK/dV: the key and value tiles, per stage a query and a dO tile, each row's log2
  // offset and delta (floats) and whether the row's tile counts the key (bytes).
  static constexpr std::size_t kDkvBytes = kAlignBytes + static_cast<std::size_t>(2) * kResidentHalves * 2 +
                                           static_cast<std::size_t>(2 * kStages) * kStageHalves * 2 +
                                           static_cast<std::size_t>(kStages) * kTile * (2 * sizeof(float) + 1);
  // Where column `col` of row `r` of a resident tile lands, in halves.
  static __device__ __forceinline__ int resident_offset(int r, int col) {
    if constexpr (kWgmma) return static_cast<int>(wgmma::swizzled(r, col / 8) / 2);
    return r * kRow + col;
  }
  // Where chunk column `col` of row `r` of stage `buf` lands, in halves from the stage base.
  static __device__ __forceinline__ int stage_offset(int buf, int r, int col) {
    if constexpr (kWgmma) return buf * kStageHalves + static_cast<int>(wgmma::swizzled(r, col / 8) / 2);
    return (buf * kTile + r) * kRow + col;
  }
  // The first byte at or after `raw` where the streamed tiles may start.
  static __device__ __forceinline__ unsigned char* streamed_base(unsigned char* raw) {
    if constexpr (!kWgmma) return raw;
    const uint32_t misalign = smem_addr(raw) % wgmma::kAtomBytes;
    return raw + (misalign == 0 ? 0 : wgmma::kAtomBytes - misalign);
  }
};

// A operand fragments of 16 rows (from r0) of a [64][kRow] shared tile: the forward's Q.
template <int D, typename T>
__device__ __forceinline__ void load_a(uint32_t (&a)[D / 16][4], const T* tile, int r0, int lane) {
  constexpr int kRow = D + kPad;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    ldmatrix_x4(a[kk], tile + (r0 + (lane % 8) + ((lane / 8) % 2) * 8) * kRow + kk * 16 + (lane / 16) * 8);
}

// acc (16 x 64) = A (16 x D) . B^T, B's 64 rows in a [64][kRow] shared tile: S = Q K^T.
template <typename T, int D>
__device__ __forceinline__ void gemm_abt(float (&acc)[8][4], const uint32_t (&a)[D / 16][4], const T* b, int lane) {
  using Op = Ops<T>;
  constexpr int kRow = D + kPad;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk += 2) {
      uint32_t kb[4];
      ldmatrix_x4(kb, b + (nt * 8 + (lane % 8)) * kRow + kk * 16 + (lane / 8) * 8);
      Op::mma(acc[nt], a[kk], kb[0], kb[1]);
      Op::mma(acc[nt], a[kk + 1], kb[2], kb[3]);
    }
  }
}

// acc (16 x D) += M (16 x 64, fp32 accumulator layout, rounded to T) . B, B a
// [64][kRow] shared tile read transposed: the forward's P V.
template <typename T, int D>
__device__ __forceinline__ void gemm_mb(float (&acc)[D / 8][4], const float (&m)[8][4], const T* b, int lane) {
  using Op = Ops<T>;
  constexpr int kRow = D + kPad;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t a[4];
    a[0] = Op::pack(m[2 * kk][0], m[2 * kk][1]);
    a[1] = Op::pack(m[2 * kk][2], m[2 * kk][3]);
    a[2] = Op::pack(m[2 * kk + 1][0], m[2 * kk + 1][1]);
    a[3] = Op::pack(m[2 * kk + 1][2], m[2 * kk + 1][3]);
#pragma unroll
    for (int dt = 0; dt < D / 8; dt += 2) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, b + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * kRow + dt * 8 + (lane / 16) * 8);
      Op::mma(acc[dt], a, vb[0], vb[1]);
      Op::mma(acc[dt + 1], a, vb[2], vb[3]);
    }
  }
}

// The exp2 offset of a row in the scaled log2 domain: +inf for rows that take no part
// (their weights come out exactly 0), the forward's lse otherwise.
__device__ __forceinline__ float row_offset(bool active, float lse) {
  return (active && lse > -INFINITY) ? lse * kLog2e : INFINITY;
}

template <typename T, int D>
__device__ __forceinline__ void store_row_pair(T* dst, float lo, float hi) {
  *reinterpret_cast<uint32_t*>(dst) = Ops<T>::pack(lo, hi);
}

// dS = P (dP - delta) over a thread's part of a 16 x 64 accumulator tile: out[nt][e] from
// the weight weight(nt, e), dP in dp[nt][e] and the delta delta(nt, e) (per row in dQ, per
// column in dK/dV); 0 wherever the weight is 0, so that neither a masked pair's dP nor an
// inactive row's delta reaches dS. out may be dp.
template <typename Weight, typename Delta>
__device__ __forceinline__ void ds_from_dp(float (&out)[8][4], const float (&dp)[8][4], Weight weight, Delta delta) {
#pragma unroll
  for (int nt = 0; nt < 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float d = delta(nt, e);
      const float pe = weight(nt, e);
      out[nt][e] = pe > 0.f ? pe * (dp[nt][e] - d) : 0.f;
    }
}

// ---------------------------------------------------------------------------------------
// 2. delta_i = rowsum(dO_i * O_i), fp32, of a dQ CTA's 64 rows, into delta_s (read after
// the step loop's first barrier); the local rows' CTAs also store it for the dK/dV
// kernels, which run after them (each row lies in one local tile: one writer). Two
// threads per row, each summing half the row in a fixed order, then one shuffle, so
// delta is the same at every run. Computed here rather than by a kernel of its own,
// which read O and dO once more (dO's rows are on their way to this CTA, so in L2) and
// took a launch: the backward is 1.5 % faster at H12 w256 g64 16k B = 8 and 2.8 % for
// ldqa-small on an H100 (docs/bench/attention.md).
// row_position(r): the sequence position of the CTA's row r, or -1 (dq_cta's).
template <typename T, int D, bool kGlobalRows, typename RowPosition>
__device__ __forceinline__ void store_tile_deltas(const Params& p, float* delta_s, RowPosition row_position, int b,
                                                  int h) {
  static_assert(kThreads == 2 * kTile, "two threads per row");
  const int r = threadIdx.x / 2, half = threadIdx.x % 2;
  const int pos = row_position(r);
  float sum = 0.f;
  if (pos >= 0) {
    const uint4* o = reinterpret_cast<const uint4*>(head_rows(static_cast<const T*>(p.out), p.st_out, b, h) +
                                                    row_at(pos, p.st_out) + half * (D / 2));
    const uint4* g = reinterpret_cast<const uint4*>(head_rows(static_cast<const T*>(p.d_out), p.st_do, b, h) +
                                                    row_at(pos, p.st_do) + half * (D / 2));
#pragma unroll
    for (int c = 0; c < D / 16; ++c) {
      const uint4 oc = o[c], gc = g[c];
      const T* oh = reinterpret_cast<const T*>(&oc);
      const T* gh = reinterpret_cast<const T*>(&gc);
#pragma unroll
      for (int e = 0; e < 8; ++e) sum = fmaf(Ops<T>::to_float(oh[e]), Ops<T>::to_float(gh[e]), sum);
    }
  }
  sum += __shfl_xor_sync(0xffffffffu, sum, 1);
  if (half == 0) {
    delta_s[r] = sum;
    if (!kGlobalRows && pos >= 0) p.delta[head_base(p, b, h) + pos] = sum;
  }
}

// ---------------------------------------------------------------------------------------
// 3. dQ. kGlobalRows = false: the local rows of a 64-row tile (global rows there get
// 0 here; theirs comes from the global pass); true: up to 64 global rows (by slot)
// against one split of the key tiles, into fp32 partials.
// One CTA: query tile (local rows) or global-row tile x split (global rows) x of head h,
// sequence b.
template <typename T, int D, bool kGlobalRows, bool kWgmma>
__device__ __forceinline__ void dq_cta(const Params& p, int x, int h, int b) {
  static_assert(!kWgmma || D == 64, "the wgmma path is written for head dim 64");
  using Sm = BackwardSmem<D, kWgmma>;
  constexpr int kStages = Sm::kStages;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* k_s = reinterpret_cast<T*>(Sm::streamed_base(smem_raw));                    // [kStages] stages
  T* v_s = k_s + kStages * Sm::kStageHalves;                                     // [kStages] stages
  T* q_s = v_s + kStages * Sm::kStageHalves;                                     // resident_offset
  T* do_s = q_s + Sm::kResidentHalves;                                           // resident_offset
  uint8_t* key_flag_s = reinterpret_cast<uint8_t*>(do_s + Sm::kResidentHalves);  // [kStages][64]
  float* delta_s = reinterpret_cast<float*>(key_flag_s + kStages * kTile);       // [64]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, tig = lane % 4;
  const std::size_t base = head_base(p, b, h);
  const uint8_t* flags = sequence_flags(p, b);
  const int32_t* globals = p.global_index + static_cast<std::size_t>(b) * p.max_global;
  const int global_count = p.global_count[b];
  const bool overflowed = p.overflow[b] != 0;

  QueryWalk walk;  // the forward's
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
  const T* do_src = head_rows(static_cast<const T*>(p.d_out), p.st_do, b, h);

  // The sequence position of the CTA's row r (a global row by its slot), or -1 past the
  // last: one definition for the copies, the offsets and the deltas.
  auto row_position = [&](int r) {
    if constexpr (kGlobalRows) {
      return q_first + r < global_count ? globals[q_first + r] : -1;
    } else {
      return q_first + r < p.n ? q_first + r : -1;
    }
  };
  constexpr int kChunks = D / 8;
  for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const int pos = row_position(r);
    const int row = pos >= 0 ? pos : 0;
    cp_async16(q_s + Sm::resident_offset(r, col), q_src + row_at(row, q_st) + col, pos >= 0 ? 16 : 0);
    cp_async16(do_s + Sm::resident_offset(r, col), do_src + row_at(row, p.st_do) + col, pos >= 0 ? 16 : 0);
  }
  // This thread's two rows: their offsets (their deltas come from delta_s, below).
  float offset[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int pos = row_position(warp * 16 + group + r * 8);
    const bool active = pos >= 0 && (kGlobalRows || (flags[pos] & (kValid | kGlobal)) == kValid);
    offset[r] = row_offset(active, active ? p.lse[base + pos] : -INFINITY);
  }

  auto load_step = [&](int s, int buf) {
    int tile = -1, gathered_first = -1;
    if constexpr (kGlobalRows) {
      tile = split * p.tiles_per_split + s;
    } else if (s < listed) {
      tile = row_keys[s];
    } else {
      gathered_first = (s - listed) * kTile;
    }
    for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      int pos;
      if (tile >= 0) {
        pos = tile * kTile + r < p.n ? tile * kTile + r : -1;
      } else {
        pos = gathered_first + r < global_count ? globals[gathered_first + r] : -1;
      }
      const int row = pos >= 0 ? pos : 0;
      cp_async16(k_s + Sm::stage_offset(buf, r, col), k_src + row_at(row, k_st) + col, pos >= 0 ? 16 : 0);
      cp_async16(v_s + Sm::stage_offset(buf, r, col), v_src + row_at(row, v_st) + col, pos >= 0 ? 16 : 0);
    }
    if (tile >= 0) {
      // The key flags travel with the tile (cp.async from the kTile-aligned flag rows): a
      // plain load here would stall the step on a memory round trip.
      if (threadIdx.x < 4) copy_tile_flags(key_flag_s + buf * kTile, flags, tile, p.n, threadIdx.x);
    } else if (threadIdx.x < kTile) {
      const int r = threadIdx.x;
      uint8_t f = 0;
      if (gathered_first + r < global_count) {
        // A global key inside a listed tile was already counted there.
        const int pos = globals[gathered_first + r];
        if (!tile_listed(row_keys, row_keys + listed, pos / kTile)) f = kValid | kGlobal;
      }
      key_flag_s[buf * kTile + r] = f;
    }
    cp_async_commit();
  };

  float dq_acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) dq_acc[i][0] = dq_acc[i][1] = dq_acc[i][2] = dq_acc[i][3] = 0.f;
  uint32_t q_frag[D / 16][4], do_frag[D / 16][4];  // mma.sync: Q and dO as A, loaded once
  const float scale_log2 = p.scale * kLog2e;

  if (steps > 0) {
    load_step(0, 0);
  } else {
    cp_async_commit();
    cp_async_wait<0>();
  }
  store_tile_deltas<T, D, kGlobalRows>(p, delta_s, row_position, b, h);
  for (int s = 0; s < steps; ++s) {
    const int buf = kStages == 2 ? (s & 1) : 0;
    if (kStages == 1 && s > 0) load_step(s, 0);
    if (kStages == 2 && s + 1 < steps) {
      load_step(s + 1, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    if constexpr (kWgmma) wgmma::fence_shared_for_async();  // this thread's copies, before the barrier
    __syncthreads();
    if (!kWgmma && s == 0) {  // the wgmma path reads Q and dO from shared memory
      load_a<D>(q_frag, q_s, warp * 16, lane);
      load_a<D>(do_frag, do_s, warp * 16, lane);
    }
    const T* k_tile = k_s + buf * Sm::kStageHalves;
    const T* v_tile = v_s + buf * Sm::kStageHalves;
    float p_acc[8][4];
    if constexpr (kWgmma) {
      wgmma::gemm_abt_shared<T>(p_acc, smem_addr(q_s), smem_addr(k_tile));
    } else {
      gemm_abt<T, D>(p_acc, q_frag, k_tile, lane);  // S = Q K^T
    }
    const bool gathered = !kGlobalRows && s >= listed;
    const int key_first = (!kGlobalRows && !gathered) ? row_keys[s] * kTile : 0;
    // No mask for this warp's 16 rows when every key is valid and, for a listed tile, the
    // window covers every (row, key) pair: the forward's fast path. Otherwise the keys
    // each row may see: as column masks on the wgmma path, as in the forward; the mma.sync
    // kernel, at its 168-register cap, tests each score (with the masks ptxas spilled up
    // to 48/84 bytes there, against 0/0 and 4/4 without).
    const uint8_t* kf = key_flag_s + buf * kTile;
    bool full = __all_sync(0xffffffffu, (kf[lane] & kValid) && (kf[lane + 32] & kValid));
    if (!kGlobalRows && !gathered) {
      full = full && window_covers(q_first + warp * 16, 16, key_first, kTile, p.window);
    }
    uint32_t mine = ~0u;  // this thread's columns of its two rows (thread_columns)
    if (kWgmma && !full) {
      const uint64_t valid = columns_with(kf, kValid, lane);
      uint64_t allowed[2] = {valid, valid};
      if (!kGlobalRows && !gathered) {
        const uint64_t global = columns_with(kf, kGlobal, lane);
        const uint64_t bits = row_bits[s];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = q_first + warp * 16 + group + r * 8;
          allowed[r] &=
              window_columns(i, key_first, p.window) | global | layout_columns(bits, p.layout_block, i % kTile, true);
        }
      }
      mine = thread_columns(allowed[0], allowed[1], tig);
    }
    // P = exp2(S * scale - offset) where allowed, 0 elsewhere.
    const uint64_t bits = (kWgmma || kGlobalRows || gathered) ? 0 : row_bits[s];  // mma.sync's per-score test
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        bool ok = true;
        if (!full) {
          if constexpr (kWgmma) {
            ok = thread_allows(mine, nt, e);
          } else {
            const int col = nt * 8 + tig * 2 + (e & 1);
            const uint8_t f = kf[col];
            ok = (f & kValid) != 0;
            if (ok && !kGlobalRows && !gathered)
              ok = local_allows(q_first + warp * 16 + group + (e >> 1) * 8, key_first + col, f, p.window, bits,
                                p.layout_block);
          }
        }
        p_acc[nt][e] = ok ? fast_exp2(fmaf(p_acc[nt][e], scale_log2, -offset[e >> 1])) : 0.f;
      }
    }
    float dp_acc[8][4];
    if constexpr (kWgmma) {
      wgmma::gemm_abt_shared<T>(dp_acc, smem_addr(do_s), smem_addr(v_tile));
    } else {
      gemm_abt<T, D>(dp_acc, do_frag, v_tile, lane);  // dP = dO V^T
    }
    // Inactive rows' weights are 0 already: their deltas need no zeroing.
    const float delta[2] = {delta_s[warp * 16 + group], delta_s[warp * 16 + group + 8]};
    ds_from_dp(
        p_acc, dp_acc, [&](int nt, int e) { return p_acc[nt][e]; }, [&](int, int e) { return delta[e >> 1]; });
    if constexpr (kWgmma) {
      wgmma::gemm_mb<T>(dq_acc, p_acc, smem_addr(k_tile));
    } else {
      gemm_mb<T, D>(dq_acc, p_acc, k_tile, lane);  // dQ += dS K
    }
    __syncthreads();  // the buffer is reloaded next
  }

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
        acc[dt * 8 + tig * 2] = dq_acc[dt][2 * r];
        acc[dt * 8 + tig * 2 + 1] = dq_acc[dt][2 * r + 1];
      }
    } else {
      const int i = q_first + local_row;
      if (i >= p.n) continue;
      const uint8_t f = flags[i];
      float factor = (f & (kValid | kGlobal)) == kValid ? p.scale : 0.f;
      if (overflowed) factor = NAN;
      T* dst = head_rows(static_cast<T*>(p.dq), p.st_dq, b, h) + row_at(i, p.st_dq);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        store_row_pair<T, D>(dst + dt * 8 + tig * 2, dq_acc[dt][2 * r] * factor, dq_acc[dt][2 * r + 1] * factor);
      // dQ_g of every row it holds that is not a global row (dq_combine writes those):
      // zeros, or NaN for a sequence over max_global. Written here rather than by a
      // memset, which a strided dQ_g would not allow.
      if (p.separate && i < p.qg_rows && !((f & kGlobal) && !overflowed)) {
        const float fill = overflowed ? NAN : 0.f;
        T* dst_g = head_rows(static_cast<T*>(p.dqg), p.st_dqg, b, h) + row_at(i, p.st_dqg);
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt) store_row_pair<T, D>(dst_g + dt * 8 + tig * 2, fill, fill);
      }
    }
  }
}

// dQ of the local rows (CTA (query tile, head, sequence)) or of the global rows (CTA
// (global-row tile x split, head, sequence)).
template <typename T, int D, bool kGlobalRows, bool kWgmma = false>
__global__ void __launch_bounds__(kThreads, BackwardSmem<D, kWgmma>::kDqMinBlocks) dq_kernel(Params p) {
  dq_cta<T, D, kGlobalRows, kWgmma>(p, blockIdx.x, blockIdx.y, blockIdx.z);
}

// dQ of local and global rows in one launch, as the forward's attend_all_kernel: a 1-D
// grid, the global rows' `global_ctas` CTAs of every head and sequence first. The wgmma
// path's only (ptxas, bf16 D = 64: 128 registers, see kDqMinBlocks); on the mma.sync path the
// one kernel would spill 188 bytes where the two spill 4 and none.
template <typename T, int D, bool kWgmma = false>
__global__ void __launch_bounds__(kThreads, BackwardSmem<D, kWgmma>::kDqMinBlocks)
    dq_all_kernel(Params p, int global_ctas) {
  rows_cta(
      p, global_ctas, [&](int x, int h, int b) { dq_cta<T, D, true, kWgmma>(p, x, h, b); },
      [&](int x, int h, int b) { dq_cta<T, D, false, kWgmma>(p, x, h, b); });
}

// The key splits of each global row's dQ, summed in split order: one warp per (row,
// head, sequence).
template <typename T, int D>
__global__ void dq_combine_kernel(Params p) {
  const int slot = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int h = blockIdx.y, b = blockIdx.z;
  if (slot >= p.global_count[b] || p.overflow[b]) return;
  const std::size_t at = ((static_cast<std::size_t>(b) * p.heads + h) * p.max_global + slot) * p.splits;
  float acc[D / 32] = {};
  for (int s = 0; s < p.splits; ++s)
#pragma unroll
    for (int x = 0; x < D / 32; ++x) acc[x] += p.partial_acc[(at + s) * D + x * 32 + lane];
  const int i = p.global_index[static_cast<std::size_t>(b) * p.max_global + slot];
  T* dst = head_rows(static_cast<T*>(p.dqg), p.st_dqg, b, h) + row_at(i, p.st_dqg);
#pragma unroll
  for (int x = 0; x < D / 32; ++x) dst[x * 32 + lane] = Ops<T>::from_float(acc[x] * p.scale);
}

// ---------------------------------------------------------------------------------------
// 4./5. dK and dV, key-major: a CTA holds 64 keys (each warp 16) and streams query tiles
// past them, computing S^T = K Q^T so that dV += P^T dO and dK += dS^T Q accumulate in
// registers. kGathered = false: key tile blockIdx.x, its listed query tiles, then the
// global rows. true: 64 global keys (by slot) against one split of the query tiles,
// counting only tiles that do not list the key's tile, into fp32 partials.
// Three CTAs per SM on the wgmma path (168 registers: see the packed P below); on the
// mma.sync path no minimum (0), ptxas' own choice as before.
template <typename T, int D, bool kGathered, bool kWgmma = false>
__global__ void __launch_bounds__(kThreads, kWgmma ? 3 : 0) dkdv_kernel(Params p) {
  static_assert(!kWgmma || D == 64, "the wgmma path is written for head dim 64");
  using Sm = BackwardSmem<D, kWgmma>;
  constexpr int kStages = Sm::kStages;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* q_s = reinterpret_cast<T*>(Sm::streamed_base(smem_raw));                 // [kStages] stages
  T* do_s = q_s + kStages * Sm::kStageHalves;                                 // [kStages] stages
  T* k_s = do_s + kStages * Sm::kStageHalves;                                 // resident_offset
  T* v_s = k_s + Sm::kResidentHalves;                                         // resident_offset
  float* offset_s = reinterpret_cast<float*>(v_s + Sm::kResidentHalves);      // [kStages][64]
  float* delta_s = offset_s + kStages * kTile;                                // [kStages][64]
  uint8_t* key_ok_s = reinterpret_cast<uint8_t*>(delta_s + kStages * kTile);  // [kStages][64]

  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, tig = lane % 4;
  const std::size_t base = head_base(p, b, h);
  const uint8_t* flags = sequence_flags(p, b);
  const int32_t* globals = p.global_index + static_cast<std::size_t>(b) * p.max_global;
  const int global_count = p.global_count[b];
  const bool overflowed = p.overflow[b] != 0;
  const int plan_head = h % p.plan_heads;

  // The key tile: positions of rows 0..63, -1 past the end (or past the global count).
  int key_first = 0, split = 0;
  if constexpr (kGathered) {
    key_first = (blockIdx.x / p.splits) * kTile;  // first slot
    split = blockIdx.x % p.splits;
    if (key_first >= global_count) return;
  } else {
    key_first = blockIdx.x * kTile;
  }
  auto key_pos = [&](int r) -> int {
    if constexpr (kGathered) {
      return key_first + r < global_count ? globals[key_first + r] : -1;
    } else {
      return key_first + r < p.n ? key_first + r : -1;
    }
  };
  int my_key[2];
  uint8_t my_flag[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    my_key[r] = key_pos(warp * 16 + group + r * 8);
    my_flag[r] = my_key[r] >= 0 ? flags[my_key[r]] : 0;
  }

  constexpr int kChunks = D / 8;
  auto load_keys = [&](const void* k_any, const TensorStrides& k_st, const void* v_any, const TensorStrides& v_st) {
    const T* k_src = head_rows(static_cast<const T*>(k_any), k_st, b, h);
    const T* v_src = head_rows(static_cast<const T*>(v_any), v_st, b, h);
    for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      const int pos = key_pos(r);
      const int row = pos >= 0 ? pos : 0;
      cp_async16(k_s + Sm::resident_offset(r, col), k_src + row_at(row, k_st) + col, pos >= 0 ? 16 : 0);
      cp_async16(v_s + Sm::resident_offset(r, col), v_src + row_at(row, v_st) + col, pos >= 0 ? 16 : 0);
    }
  };

  // Phase 0: local rows (query tiles from the transposed plan, or this split's tiles);
  // phase 1: global rows, by slot.
  const int32_t* col_tiles = nullptr;
  const int32_t* col_entries = nullptr;
  int local_steps = 0;
  if constexpr (kGathered) {
    local_steps = max(0, min(p.num_tiles, (split + 1) * p.tiles_per_split) - split * p.tiles_per_split);
  } else {
    const int column = plan_head * p.num_tiles + blockIdx.x;
    col_tiles = p.col_query_tile + p.col_ptr[column];
    col_entries = p.col_entry + p.col_ptr[column];
    local_steps = p.col_ptr[column + 1] - p.col_ptr[column];
  }
  auto query_tile = [&](int s) { return kGathered ? split * p.tiles_per_split + s : col_tiles[s]; };

  auto load_step = [&](int phase, int s, int buf) {
    const TensorStrides& q_st = phase == 0 ? p.st_q : p.st_qg;
    const T* q_src = head_rows(static_cast<const T*>(phase == 0 ? p.q : p.qg), q_st, b, h);
    const T* do_src = head_rows(static_cast<const T*>(p.d_out), p.st_do, b, h);
    const int t = phase == 0 ? query_tile(s) : -1;
    for (int c = threadIdx.x; c < kTile * kChunks; c += kThreads) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      int pos = -1;
      if (phase == 0) {
        const int i = t * kTile + r;
        if (i < p.n && (flags[i] & (kValid | kGlobal)) == kValid) pos = i;  // inactive rows: zeros
      } else if (s * kTile + r < global_count) {
        pos = globals[s * kTile + r];
      }
      const int row = pos >= 0 ? pos : 0;
      cp_async16(q_s + Sm::stage_offset(buf, r, col), q_src + row_at(row, q_st) + col, pos >= 0 ? 16 : 0);
      cp_async16(do_s + Sm::stage_offset(buf, r, col), do_src + row_at(row, p.st_do) + col, pos >= 0 ? 16 : 0);
    }
    if (threadIdx.x < kTile) {
      const int r = threadIdx.x;
      int pos = -1;
      if (phase == 0) {
        const int i = t * kTile + r;
        if (i < p.n && (flags[i] & (kValid | kGlobal)) == kValid) pos = i;
      } else if (s * kTile + r < global_count) {
        pos = globals[s * kTile + r];
      }
      offset_s[buf * kTile + r] = row_offset(pos >= 0, pos >= 0 ? p.lse[base + pos] : -INFINITY);
      delta_s[buf * kTile + r] = pos >= 0 ? p.delta[base + pos] : 0.f;
      if constexpr (kGathered) {  // does query tile t see key r only through the gathered list?
        const int key = key_pos(r);
        const int prow = plan_head * p.num_tiles + t;
        const int32_t* row_keys = p.key_tile + p.row_ptr[prow];
        key_ok_s[buf * kTile + r] =
            key >= 0 && !tile_listed(row_keys, row_keys + (p.row_ptr[prow + 1] - p.row_ptr[prow]), key / kTile);
      }
    }
    cp_async_commit();
  };

  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  auto clear = [&]() {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      dk_acc[i][0] = dk_acc[i][1] = dk_acc[i][2] = dk_acc[i][3] = 0.f;
      dv_acc[i][0] = dv_acc[i][1] = dv_acc[i][2] = dv_acc[i][3] = 0.f;
    }
  };
  const float scale_log2 = p.scale * kLog2e;

  // Streams `steps` query tiles of `phase` past the resident keys (whose copies were
  // issued just before and commit with the first step's).
  auto run_phase = [&](int phase, int steps) {
    uint32_t k_frag[D / 16][4], v_frag[D / 16][4];  // mma.sync: K and V as A, loaded once
    if (steps > 0) {
      load_step(phase, 0, 0);
    } else {
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
      return;
    }
    for (int s = 0; s < steps; ++s) {
      const int buf = kStages == 2 ? (s & 1) : 0;
      if (kStages == 1 && s > 0) load_step(phase, s, 0);
      if (kStages == 2 && s + 1 < steps) {
        load_step(phase, s + 1, buf ^ 1);
        cp_async_wait<1>();
      } else {
        cp_async_wait<0>();
      }
      if constexpr (kWgmma) wgmma::fence_shared_for_async();  // this thread's copies, before the barrier
      __syncthreads();
      if (!kWgmma && s == 0) {  // the wgmma path reads K and V from shared memory
        load_a<D>(k_frag, k_s, warp * 16, lane);
        load_a<D>(v_frag, v_s, warp * 16, lane);
      }
      const T* q_tile = q_s + buf * Sm::kStageHalves;
      const T* do_tile = do_s + buf * Sm::kStageHalves;
      int query_first = 0;
      uint64_t bits = 0;
      if (phase == 0 && !kGathered) {
        query_first = col_tiles[s] * kTile;
        bits = p.layout_bits[col_entries[s]];
      }
      // No mask for this warp's 16 keys when each counts (a vote) and, for local rows of a
      // listed tile, the window covers every (query, key) pair. Inactive query rows need
      // none: their offset is +inf, their weight exp2(-inf) = 0.
      bool full;
      if (phase == 0 && kGathered) {
        full = __all_sync(0xffffffffu, key_ok_s[buf * kTile + warp * 16 + group] != 0 &&
                                           key_ok_s[buf * kTile + warp * 16 + group + 8] != 0);
      } else {
        full = __all_sync(0xffffffffu, (my_flag[0] & kValid) && (my_flag[1] & kValid));
        if (phase == 0) {
          full = full && window_covers(query_first, kTile, key_first + warp * 16, 16, p.window);
        }
      }
      // The queries each of this thread's two keys may see, as column masks
      // (tile_plan.hpp), worked out before the GEMM (fewer registers live): a key row sees
      // all or nothing except against a listed tile, where the window, its being global or
      // the layout decide. One bit test per score instead of local_allows.
      uint32_t mine = ~0u;  // this thread's columns of its two keys (thread_columns)
      if (!full) {
        uint64_t allowed[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          if (phase == 1) {
            allowed[r] = (my_flag[r] & kValid) ? ~0ull : 0;
          } else if (kGathered) {
            allowed[r] = key_ok_s[buf * kTile + warp * 16 + group + r * 8] != 0 ? ~0ull : 0;
          } else if (!(my_flag[r] & kValid)) {
            allowed[r] = 0;
          } else if (my_flag[r] & kGlobal) {
            allowed[r] = ~0ull;
          } else {
            allowed[r] = window_columns(my_key[r], query_first, p.window) |
                         layout_columns(bits, p.layout_block, my_key[r] % kTile, false);
          }
        }
        mine = thread_columns(allowed[0], allowed[1], tig);
      }
      float p_acc[8][4];
      if constexpr (kWgmma) {
        wgmma::gemm_abt_shared<T>(p_acc, smem_addr(k_s), smem_addr(q_tile));
      } else {
        gemm_abt<T, D>(p_acc, k_frag, q_tile, lane);  // S^T = K Q^T: rows keys, columns queries
      }
      // P^T = exp2(S^T * scale - offset) where allowed, 0 elsewhere.
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = nt * 8 + tig * 2 + (e & 1);
          const bool ok = full || thread_allows(mine, nt, e);
          p_acc[nt][e] = ok ? fast_exp2(fmaf(p_acc[nt][e], scale_log2, -offset_s[buf * kTile + col])) : 0.f;
        }
      }
      // The delta of column (query) nt * 8 + tig * 2 + (e & 1) of this step's tile.
      const auto column_delta = [&](int nt, int e) { return delta_s[buf * kTile + nt * 8 + tig * 2 + (e & 1)]; };
      if constexpr (kWgmma) {
        // P^T rounded to T once, first the A operand of dV += P^T dO, then (unpacked) the
        // P of dS = P (dP - delta): with the fp32 P live through dP^T's GEMM the kernel
        // needs 182 registers, more than the 168 of three CTAs per SM, which make the
        // backward ~14 % faster. dS is rounded to T for its own GEMM anyway.
        uint32_t p_packed[4][4];
        wgmma::pack_a<T>(p_packed, p_acc);
        wgmma::gemm_packed_b<T>(dv_acc, p_packed, smem_addr(do_tile));
        float ds_acc[8][4];
        wgmma::gemm_abt_shared<T>(ds_acc, smem_addr(v_s), smem_addr(do_tile));  // dP^T = V dO^T
        ds_from_dp(
            ds_acc, ds_acc, [&](int nt, int e) { return wgmma::packed_element<T>(p_packed, nt, e); }, column_delta);
        wgmma::gemm_mb<T>(dk_acc, ds_acc, smem_addr(q_tile));
      } else {
        float dp_acc[8][4];
        gemm_abt<T, D>(dp_acc, v_frag, do_tile, lane);  // dP^T = V dO^T
        gemm_mb<T, D>(dv_acc, p_acc, do_tile, lane);    // dV += P^T dO
        ds_from_dp(
            p_acc, dp_acc, [&](int nt, int e) { return p_acc[nt][e]; }, column_delta);
        gemm_mb<T, D>(dk_acc, p_acc, q_tile, lane);  // dK += dS^T Q
      }
      __syncthreads();  // the buffer is reloaded next
    }
  };

  // Writes the accumulators as gradients of the key rows (scale on dK); with
  // `add_gathered`, global keys first add what the gathered pass summed for them.
  auto write = [&](void* dk_any, const TensorStrides& dk_st, void* dv_any, const TensorStrides& dv_st,
                   bool add_gathered) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int j = my_key[r];
      if (j < 0) continue;
      int slot = -1;
      if (add_gathered && (my_flag[r] & kGlobal) && !overflowed)
        slot = p.slot_of[static_cast<std::size_t>(b) * p.n + j];
      T* dk = head_rows(static_cast<T*>(dk_any), dk_st, b, h) + row_at(j, dk_st);
      T* dv = head_rows(static_cast<T*>(dv_any), dv_st, b, h) + row_at(j, dv_st);
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        float k0 = dk_acc[dt][2 * r], k1 = dk_acc[dt][2 * r + 1];
        float v0 = dv_acc[dt][2 * r], v1 = dv_acc[dt][2 * r + 1];
        if (slot >= 0) {
          const int d = dt * 8 + tig * 2;
          const std::size_t at = ((static_cast<std::size_t>(b) * p.heads + h) * p.max_global + slot) * p.splits;
          for (int s = 0; s < p.splits; ++s) {
            const float* part = p.partial_dkv + (at + s) * 2 * D;
            k0 += part[d];
            k1 += part[d + 1];
            v0 += part[D + d];
            v1 += part[D + d + 1];
          }
        }
        const float factor = overflowed ? NAN : 1.f;
        store_row_pair<T, D>(dk + dt * 8 + tig * 2, k0 * p.scale * factor, k1 * p.scale * factor);
        store_row_pair<T, D>(dv + dt * 8 + tig * 2, v0 * factor, v1 * factor);
      }
    }
  };

  clear();
  load_keys(p.k, p.st_k, p.v, p.st_v);
  run_phase(0, local_steps);
  if constexpr (kGathered) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int slot = key_first + warp * 16 + group + r * 8;
      if (slot >= global_count) continue;
      const std::size_t at = ((static_cast<std::size_t>(b) * p.heads + h) * p.max_global + slot) * p.splits + split;
      float* part = p.partial_dkv + at * 2 * D;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const int d = dt * 8 + tig * 2;
        part[d] = dk_acc[dt][2 * r];
        part[d + 1] = dk_acc[dt][2 * r + 1];
        part[D + d] = dv_acc[dt][2 * r];
        part[D + d + 1] = dv_acc[dt][2 * r + 1];
      }
    }
  } else {
    const int global_steps = (global_count + kTile - 1) / kTile;
    if (p.separate) {
      write(p.dk, p.st_dk, p.dv, p.st_dv, true);
      clear();
      load_keys(p.kg, p.st_kg, p.vg, p.st_vg);  // the resident tiles are free: run_phase ended on a barrier
      run_phase(1, global_steps);
      write(p.dkg, p.st_dkg, p.dvg, p.st_dvg, false);
    } else {
      if (global_steps > 0) {
        // Same keys (k_g is k): keep accumulating. run_phase expects fresh key copies in
        // its first group; re-issuing them keeps one code path.
        load_keys(p.k, p.st_k, p.v, p.st_v);
        run_phase(1, global_steps);
      }
      write(p.dk, p.st_dk, p.dv, p.st_dv, true);
    }
  }
}

}  // namespace ldqa::attention::detail::gpu
