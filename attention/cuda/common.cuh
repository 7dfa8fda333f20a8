// Internal to the CUDA backend, laid out as FlashAttention's csrc: this header (the
// launch parameters, the fp16/bf16 tensor-core operations and PTX helpers, the device
// copy of the tile plan, the split geometry of the global rows, the preparation pass),
// the kernel headers (forward_kernel.cuh, backward_kernel.cuh), the launch templates
// (forward_launch.cuh, backward_launch.cuh), one unit per dtype x head dim that
// instantiates them (forward_bf16_hd64.cu, ...), and the host side that dispatches
// (../attention_gpu.cu, ../attention_gpu_backward.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "attention/attention_internal.hpp"

namespace ldqa::attention::detail::gpu {

constexpr int kThreads = 128;  // 4 warps x 16 rows = one 64-row tile
constexpr int kPad = 8;        // halves of padding per shared row: conflict-free ldmatrix
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Element strides of one [batch, heads, n, head_dim] tensor (attention.hpp's Strides,
// resolved). The row stride is 32-bit so that a row's offset is one wide multiply.
struct TensorStrides {
  int64_t batch, head;
  int32_t row;
};

struct Params {
  const void* q;
  const void* k;
  const void* v;
  const void* qg;
  const void* kg;
  const void* vg;
  void* out;
  const uint8_t* global_mask;
  const int32_t* valid_lengths;
  const uint8_t* key_mask;
  uint8_t* flags;         // [batch][flag_stride(n)]
  int32_t* global_index;  // [batch * max_global]
  int32_t* global_count;  // [batch]
  int32_t* overflow;      // [batch]: more globals than max_global, or a bad valid length
  int32_t* slot_of;       // [batch * n]: a global position's slot in global_index (backward; else nullptr)
  float* partial_acc;     // [batch, heads, max_global, splits, head_dim] (backward: dQ_g partials)
  float* partial_ml;      // [batch, heads, max_global, splits, 2] (forward only)
  float* partial_dkv;     // [batch, heads, max_global, splits, 2, head_dim] (backward only)
  float* lse;             // [batch, heads, n]: the forward writes it when given, the backward reads it
  // Backward only.
  const void* d_out;
  float* delta;  // [batch, heads, n]: rowsum(dO * O)
  void* dq;
  void* dk;
  void* dv;
  void* dqg;  // == dq, dk, dv without separate global projections
  void* dkg;
  void* dvg;
  const int32_t* row_ptr;
  const int32_t* key_tile;
  const uint64_t* layout_bits;
  const int32_t* col_ptr;  // the transposed plan (backward)
  const int32_t* col_query_tile;
  const int32_t* col_entry;
  int batch, heads, n, num_tiles, plan_heads, window, layout_block, max_global, splits, tiles_per_split, top_k;
  int separate;  // separate global projections
  int qg_rows;   // rows of qg and dqg (q_global_rows; n when not given)
  float scale;
  // The tensors' strides (lse, delta and the workspace are contiguous).
  TensorStrides st_q, st_k, st_v, st_qg, st_kg, st_vg, st_out;
  TensorStrides st_do, st_dq, st_dk, st_dv, st_dqg, st_dkg, st_dvg;  // backward only
};

template <typename T>
struct Ops;
template <>
struct Ops<__half> {
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <>
struct Ops<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void mma(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// 2^x on the SFU: one instruction. Denormal results flush to zero: a weight below
// 2^-126 of the row's largest vanishes in a bf16/fp16 result either way.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; src_bytes = 0 zero-fills the destination.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// Flag rows are kTile-aligned (a sequence's row starts at b * flag_stride(n)), so that a
// key tile's flags are whole 16-byte chunks that cp.async can carry.
__host__ __device__ constexpr int flag_stride(int n) { return (n + kTile - 1) / kTile * kTile; }
__device__ __forceinline__ const uint8_t* sequence_flags(const Params& p, int b) {
  return p.flags + static_cast<std::size_t>(b) * flag_stride(p.n);
}

// What a query-major kernel (the forward, dQ) walks. Local rows: query tile x
// over its listed key tiles (row_keys, row_bits: `listed` of them), then the global keys
// outside them, a tile's worth per step. Global rows: 64 global rows by slot from q_first
// against split `split` of the key tiles.
struct QueryWalk {
  int q_first = 0;  // local: the tile's first row; global: the first slot
  int split = 0, steps = 0, listed = 0;
  const int32_t* row_keys = nullptr;
  const uint64_t* row_bits = nullptr;
};

// CTA blockIdx.x of a one-launch grid of local and global rows (rows_grid): the first
// global_ctas x heads x batch CTAs call global_rows(x, h, b), the others local_rows(x, h,
// b). Two branches with their own divisions, not one with a selected divisor: that one
// doubles the mma.sync forward's spill (ptxas, bf16 D64: 76 bytes of loads against 40).
template <class GlobalRows, class LocalRows>
__device__ __forceinline__ void rows_cta(const Params& p, int global_ctas, GlobalRows global_rows,
                                         LocalRows local_rows) {
  const int i = static_cast<int>(blockIdx.x);
  const int global_total = global_ctas * p.heads * p.batch;
  if (i < global_total) {
    global_rows(i % global_ctas, (i / global_ctas) % p.heads, i / (global_ctas * p.heads));
  } else {
    const int j = i - global_total;
    local_rows(j % p.num_tiles, (j / p.num_tiles) % p.heads, j / (p.num_tiles * p.heads));
  }
}

// The walk of CTA x (along the tiles) of head h; false when it has no global rows to take
// (nothing to do).
template <bool kGlobalRows>
__device__ __forceinline__ bool query_walk(const Params& p, int x, int h, int global_count, QueryWalk& w) {
  if constexpr (kGlobalRows) {
    w.q_first = (x / p.splits) * kTile;
    w.split = x % p.splits;
    if (w.q_first >= global_count) return false;
    w.steps = max(0, min(p.num_tiles, (w.split + 1) * p.tiles_per_split) - w.split * p.tiles_per_split);
  } else {
    w.q_first = x * kTile;
    const int prow = (h % p.plan_heads) * p.num_tiles + x;
    w.row_keys = p.key_tile + p.row_ptr[prow];
    w.row_bits = p.layout_bits + p.row_ptr[prow];
    w.listed = p.row_ptr[prow + 1] - p.row_ptr[prow];
    w.steps = w.listed + (global_count + kTile - 1) / kTile;
  }
  return true;
}

// One of the four 16-byte chunks (0..3) of a key tile's flags, by cp.async (zeros past n).
__device__ __forceinline__ void copy_tile_flags(uint8_t* dst, const uint8_t* flags, int tile, int n, int chunk) {
  const int first = tile * kTile + chunk * 16;
  const int bytes = min(max(n - first, 0), 16);
  cp_async16(dst + chunk * 16, flags + (bytes > 0 ? first : 0), bytes);
}

// The columns of a step's 64 flags (a shared [64] array) that have `bit` set, as a
// column mask (tile_plan.hpp): two ballots, so the whole warp must call it.
__device__ __forceinline__ uint64_t columns_with(const uint8_t* flags, uint8_t bit, int lane) {
  const uint32_t low = __ballot_sync(0xffffffffu, (flags[lane] & bit) != 0);
  const uint32_t high = __ballot_sync(0xffffffffu, (flags[lane + 32] & bit) != 0);
  return (static_cast<uint64_t>(high) << 32) | low;
}

// Where (b, h)'s rows start in the contiguous [batch, heads, n] row arrays (lse, delta).
__device__ __forceinline__ std::size_t head_base(const Params& p, int b, int h) {
  return (static_cast<std::size_t>(b) * p.heads + h) * static_cast<std::size_t>(p.n);
}

// Row 0 of (b, h) in a strided tensor, and the offset of row i from it.
template <typename T>
__device__ __forceinline__ T* head_rows(T* data, const TensorStrides& s, int b, int h) {
  return data + b * s.batch + h * s.head;
}
__device__ __forceinline__ int64_t row_at(int i, const TensorStrides& s) { return static_cast<int64_t>(i) * s.row; }

// The tile plan (and its transpose) on one device.
struct DevicePlan {
  int device = -1;
  int32_t* row_ptr = nullptr;
  int32_t* key_tile = nullptr;
  uint64_t* layout_bits = nullptr;
  int32_t* col_ptr = nullptr;
  int32_t* col_query_tile = nullptr;
  int32_t* col_entry = nullptr;
  ~DevicePlan();
};

// The plan on `device`: uploaded once per device and kept for the object's life (a
// call on another device adds its own copy, never frees this one).
std::shared_ptr<const DevicePlan> device_plan(const SparseAttention::Impl& impl, int device);
int multiprocessors();
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) once per kernel and device, so that
// calls stay capturable in a CUDA graph.
void allow_dynamic_smem_once(const void* kernel, int bytes);

// Which kernels run the forward's local and global rows (pass forward) or the backward's
// dQ and dK/dV (pass backward). wgmma: Hopper's warpgroup MMA (sm_90a), head dim 64, on a
// compute capability 9.0 device in a build with the sm_90a units (LDQA_HAVE_SM90A), for
// both passes by default: the forward is 1.23-1.57x the mma.sync forward (H200 and H100),
// the backward 1.19-1.38x the mma.sync backward with the same gradients (H100,
// 2026-12-05, docs/bench/attention.md), and the GPU suite passes on both. mma.sync
// otherwise, and wherever a variable says mma.sync (the path of GPUs before Hopper,
// forced): LDQA_ATTENTION_KERNEL for both passes, LDQA_ATTENTION_BACKWARD_KERNEL for the
// backward's over the former. Values other than default, wgmma and mma.sync throw
// ldqa::Error naming the variable.
enum class KernelPath { mma_sync, wgmma };
KernelPath kernel_path(int head_dim, AttentionPass pass);

struct Geometry {
  int max_global, splits, tiles_per_split;
  // The kernels this call takes: kernel_path, asked once per call before anything is
  // allocated or launched (a bad variable throws there), by run_cuda / backward_cuda.
  KernelPath path = KernelPath::mma_sync;
};
// Splits of the tiles a global-row tile walks: enough CTAs to fill the GPU twice, each
// split at least four tiles long.
Geometry geometry(const SparseAttention::Impl& impl, int batch, int max_global);

// The 1-D grid of a launch that runs local and global rows together (attend_all_kernel,
// dq_all_kernel): the global rows' CTAs per head and sequence (global-row tiles x
// splits), and all CTAs; throws ldqa::Error past CUDA's 2^31 - 1.
struct RowsGrid {
  int global_ctas;
  unsigned ctas;
};
RowsGrid rows_grid(const Params& p, const Geometry& g);

inline std::size_t align256(std::size_t x) { return (x + 255) / 256 * 256; }

// Both workspaces start with the flag rows (at 0), the global list and the per-sequence
// count and overflow flag; `end` is where what each pass adds begins.
struct ListLayout {
  std::size_t global_index, counts, end;
};
ListLayout list_layout(int batch, int n, const Geometry& g);

// A tensor's strides as the kernels take them (contiguous when the caller gave none).
TensorStrides tensor_strides(const SparseAttention::Impl& impl, const Strides& given, int rows = 0);

// What the forward and the backward fill alike: the inputs, the plan, the shape, the
// split geometry and the list part of the workspace at `ws`.
Params shared_params(const SparseAttention::Impl& impl, const AttentionInputs& in, const DevicePlan& plan,
                     const Geometry& g, int max_global, unsigned char* ws);

// Flags, the ordered global list (and slot_of when set), one CTA per sequence.
void launch_prepare(const Params& p, cudaStream_t stream);

// A workspace taken from the stream-ordered pool when the caller gave none; back to
// the pool on every way out, a throw included.
class StreamWorkspace {
 public:
  StreamWorkspace(void* given, std::size_t bytes, cudaStream_t stream);
  ~StreamWorkspace();
  StreamWorkspace(const StreamWorkspace&) = delete;
  StreamWorkspace& operator=(const StreamWorkspace&) = delete;
  unsigned char* get() const { return static_cast<unsigned char*>(ptr_); }
  void release();  // frees an owned workspace now, checked

 private:
  void* ptr_ = nullptr;
  bool owned_ = false;
  cudaStream_t stream_;
};

// The wgmma path's kernels (cuda/*_wgmma_<dtype>_hd64.cu): the forward's local- and
// global-row kernels (false, nothing launched, where the TMA cannot take a tensor:
// launch_attend_wgmma); the backward's dQ and dK/dV kernels (not the merge).
bool launch_attend_wgmma_bf16(const Params& p, const Geometry& g, int num_tiles, cudaStream_t stream);
bool launch_attend_wgmma_fp16(const Params& p, const Geometry& g, int num_tiles, cudaStream_t stream);
void launch_gradients_wgmma_bf16(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream);
void launch_gradients_wgmma_fp16(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream);

// The launch sequences after launch_prepare, one instantiation per dtype x head dim
// (cuda/forward_<dtype>_hd<D>.cu, cuda/backward_<dtype>_hd<D>.cu).
template <typename T, int D>
void launch_forward(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, bool top_k,
                    cudaStream_t stream);
template <typename T, int D>
void launch_backward(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream);

}  // namespace ldqa::attention::detail::gpu
