// CUDA backend: fused flash-style kernels on tensor cores (mma.sync m16n8k16, fp16 or
// bf16 operands, fp32 accumulation), online softmax in registers, only the key tiles
// the plan lists. Launch sequence per call, all on one stream, no host synchronisation:
//   1. prepare:  per sequence, position flags (valid/global) and the ordered global list;
//   2. local:    one CTA per (query tile, head, sequence), listed key tiles then the
//                global keys outside them;
//   3. global:   global query rows against every key, split over key ranges so a few
//                global rows still fill the GPU, in the same launch as 2 (its CTAs
//                first); 4. combine the splits.
// With top_k, a separate exact kernel replaces 2-4 (one CTA per query row, radix select).
// At head dim 64 on Hopper, 2 and 3 run their GEMMs as wgmma instead (tiles by TMA,
// cuda/tma.cuh, through the tensor maps encode_row_map writes), and so do the
// backward's dQ and dK/dV kernels (kernel_path: the default there; LDQA_ATTENTION_KERNEL
// =mma.sync forces the fallback, LDQA_ATTENTION_BACKWARD_KERNEL the backward's alone).
// Given AttentionInputs::lse, 2 and 4 also write each row's log-sum-exp for the backward
// (attention_gpu_backward.cu). This file is the host side: the preparation pass, the
// device plan, the split geometry, the workspace and the dispatch over dtype x head dim;
// the kernels are in cuda/forward_kernel.cuh, the launch sequence in
// cuda/forward_launch.cuh, what forward and backward share in cuda/common.cuh.
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attention/attention_internal.hpp"
#include "attention/cuda/common.cuh"
#include "attention/cuda/tma.cuh"
#include "device/cuda_check.hpp"
#include "ldqa/error.hpp"

namespace ldqa::attention::detail {

namespace gpu {

namespace {

// ---------------------------------------------------------------------------------------
// 1. Flags and the ordered list of global positions, one CTA per sequence.
__global__ void prepare_kernel(Params p) {
  constexpr int kPrepThreads = 1024;
  __shared__ int warp_sums[32];
  const int b = blockIdx.x;
  const int n = p.n;
  int length = n;
  // A length outside [0, n] is the caller's error: the sequence is written as NaN (the
  // overflow path), never silently clamped (the CPU backend throws).
  bool bad_length = false;
  if (p.valid_lengths != nullptr) {
    bad_length = p.valid_lengths[b] < 0 || p.valid_lengths[b] > n;
    length = min(max(p.valid_lengths[b], 0), n);
  }
  const int per_thread = (n + kPrepThreads - 1) / kPrepThreads;
  const int first = threadIdx.x * per_thread;
  const int last = min(n, first + per_thread);
  const std::size_t row = static_cast<std::size_t>(b) * n;
  uint8_t* row_flags = p.flags + static_cast<std::size_t>(b) * flag_stride(n);
  int mine = 0;
  bool beyond_qg = false;  // a global row q_global does not hold (q_global_rows)
  for (int i = first; i < last; ++i) {
    uint8_t f = 0;
    if (i < length && (p.key_mask == nullptr || p.key_mask[row + i] != 0)) {
      f = kValid;
      if (p.global_mask != nullptr && p.global_mask[row + i] != 0) f |= kGlobal;
    }
    row_flags[i] = f;
    mine += (f & kGlobal) ? 1 : 0;
    beyond_qg = beyond_qg || ((f & kGlobal) && i >= p.qg_rows);
  }
  // The row's padding past n holds no key: the wgmma forward copies a tile's 64 flags
  // whole (a TMA bulk copy cannot zero-fill as cp.async does).
  for (int i = n + static_cast<int>(threadIdx.x); i < flag_stride(n); i += kPrepThreads) row_flags[i] = 0;
  // Such a sequence is written as NaN, and lists no global row, so that no kernel reads
  // q_global (or writes d_q_global) past its rows.
  beyond_qg = __syncthreads_or(beyond_qg) != 0;
  // Block-wide exclusive scan of the per-thread counts keeps the list in position order.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int inclusive = mine;
  for (int d = 1; d < 32; d *= 2) {
    const int up = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += up;
  }
  if (lane == 31) warp_sums[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int s = warp_sums[lane];
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, s, d);
      if (lane >= d) s += up;
    }
    warp_sums[lane] = s;
  }
  __syncthreads();
  int slot = inclusive - mine + (warp > 0 ? warp_sums[warp - 1] : 0);
  for (int i = first; i < last; ++i) {
    if (row_flags[i] & kGlobal) {
      if (slot < p.max_global) p.global_index[static_cast<std::size_t>(b) * p.max_global + slot] = i;
      if (p.slot_of != nullptr) p.slot_of[row + i] = slot < p.max_global ? slot : -1;
      ++slot;
    }
  }
  if (threadIdx.x == kPrepThreads - 1) {
    p.global_count[b] = beyond_qg ? 0 : min(slot, p.max_global);
    p.overflow[b] = (slot > p.max_global || bad_length || beyond_qg) ? 1 : 0;
  }
}

template <typename X>
X* upload(const std::vector<X>& host) {
  X* dev = nullptr;
  const std::size_t bytes = std::max<std::size_t>(1, host.size()) * sizeof(X);
  LDQA_CUDA_CHECK(cudaMalloc(&dev, bytes));
  if (!host.empty()) LDQA_CUDA_CHECK(cudaMemcpy(dev, host.data(), host.size() * sizeof(X), cudaMemcpyHostToDevice));
  return dev;
}

}  // namespace

DevicePlan::~DevicePlan() {
  cudaFree(row_ptr);
  cudaFree(key_tile);
  cudaFree(layout_bits);
  cudaFree(col_ptr);
  cudaFree(col_query_tile);
  cudaFree(col_entry);
}

std::shared_ptr<const DevicePlan> device_plan(const SparseAttention::Impl& impl, int device) {
  std::lock_guard<std::mutex> lock(impl.device_plan_mutex);
  auto& slot = impl.device_plans[device];
  if (!slot) {
    auto fresh = std::make_shared<DevicePlan>();
    fresh->device = device;
    fresh->row_ptr = upload(impl.plan.row_ptr);
    fresh->key_tile = upload(impl.plan.key_tile);
    fresh->layout_bits = upload(impl.plan.layout_bits);
    fresh->col_ptr = upload(impl.plan.col_ptr);
    fresh->col_query_tile = upload(impl.plan.col_query_tile);
    fresh->col_entry = upload(impl.plan.col_entry);
    slot = fresh;
  }
  return std::static_pointer_cast<const DevicePlan>(slot);
}

namespace {

// The environment's choice for `pass`: LDQA_ATTENTION_BACKWARD_KERNEL over
// LDQA_ATTENTION_KERNEL for the backward; "default" where neither is set. Anything but
// default, wgmma and mma.sync is refused, naming the variable and its value: a typo
// would otherwise time or train the kernels one did not mean.
const char* kernel_choice(AttentionPass pass) {
  const char* name = "LDQA_ATTENTION_KERNEL";
  const char* choice = std::getenv(name);
  if (pass == AttentionPass::backward) {
    if (const char* backward = std::getenv("LDQA_ATTENTION_BACKWARD_KERNEL")) {
      name = "LDQA_ATTENTION_BACKWARD_KERNEL";
      choice = backward;
    }
  }
  if (choice == nullptr || *choice == '\0') return "default";
  for (const char* known : {"default", "wgmma", "mma.sync"})
    if (std::strcmp(choice, known) == 0) return known;
  throw Error(std::string(name) + "='" + choice + "': expected default, wgmma or mma.sync");
}

}  // namespace

KernelPath kernel_path(int head_dim, AttentionPass pass) {
  const char* choice = kernel_choice(pass);
#ifdef LDQA_HAVE_SM90A
  // default: wgmma for both passes (see common.cuh for the measurements).
  if (head_dim != 64 || std::strcmp(choice, "mma.sync") == 0) return KernelPath::mma_sync;
  int device = 0, major = 0, minor = 0;
  LDQA_CUDA_CHECK(cudaGetDevice(&device));
  LDQA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LDQA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  // sm_90a machine code runs on compute capability 9.0 only.
  return major == 9 && minor == 0 ? KernelPath::wgmma : KernelPath::mma_sync;
#else
  (void)choice;
  (void)head_dim;
  return KernelPath::mma_sync;
#endif
}

int multiprocessors() {
  int device = 0, count = 0;
  LDQA_CUDA_CHECK(cudaGetDevice(&device));
  LDQA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

bool encode_row_map(CUtensorMap& map, const void* data, const TensorStrides& strides, int rows, int heads, int batch) {
  // cuTensorMapEncodeTiled is the driver's: reached through the runtime, so that the
  // library links no libcuda. It only encodes (no GPU work, nothing to capture).
  using Encode = PFN_cuTensorMapEncodeTiled_v12000;
  static const Encode encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      fn = nullptr;
      (void)cudaGetLastError();  // not the next launch check's error to report
    }
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr) return false;
  constexpr cuuint32_t kHalfBytes = 2;
  const cuuint64_t dims[4] = {64, static_cast<cuuint64_t>(rows), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(batch)};
  const cuuint64_t byte_strides[3] = {static_cast<cuuint64_t>(strides.row) * kHalfBytes,
                                      static_cast<cuuint64_t>(strides.head) * kHalfBytes,
                                      static_cast<cuuint64_t>(strides.batch) * kHalfBytes};
  const cuuint32_t box[4] = {64, kTile, 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  // Halves as 16-bit integers (a copy needs no more); out-of-bounds rows read as zeros.
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT16, 4, const_cast<void*>(data), dims, byte_strides, box,
                element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Keyed by the kernel's address: every instantiation has the same type, so a per-type
// static would set only the first.
void allow_dynamic_smem_once(const void* kernel, int bytes) {
  static std::mutex mutex;
  static std::vector<std::pair<const void*, int>> done;  // (kernel, device) set up
  int device = 0;
  LDQA_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (std::find(done.begin(), done.end(), std::make_pair(kernel, device)) != done.end()) return;
  LDQA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.emplace_back(kernel, device);
}

Geometry geometry(const SparseAttention::Impl& impl, int batch, int max_global) {
  Geometry g{std::max(1, max_global), 1, impl.plan.num_tiles};
  const int num_tiles = impl.plan.num_tiles;
  const int64_t row_ctas = static_cast<int64_t>(batch) * impl.num_heads * ((g.max_global + kTile - 1) / kTile);
  const int64_t want = (2 * multiprocessors() + row_ctas - 1) / row_ctas;
  g.splits = static_cast<int>(std::clamp<int64_t>(want, 1, std::max(1, num_tiles / 4)));
  g.tiles_per_split = (num_tiles + g.splits - 1) / g.splits;
  g.splits = (num_tiles + g.tiles_per_split - 1) / g.tiles_per_split;
  return g;
}

RowsGrid rows_grid(const Params& p, const Geometry& g) {
  const int global_ctas = (g.max_global + kTile - 1) / kTile * g.splits;
  const long long ctas = static_cast<long long>(global_ctas + p.num_tiles) * p.heads * p.batch;
  if (ctas > 2147483647LL) fail("attention: ", ctas, " CTAs exceed one launch's grid (2^31 - 1); split the batch");
  return RowsGrid{global_ctas, static_cast<unsigned>(ctas)};
}

ListLayout list_layout(int batch, int n, const Geometry& g) {
  ListLayout l{};
  l.global_index = align256(static_cast<std::size_t>(batch) * flag_stride(n));
  l.counts = l.global_index + align256(static_cast<std::size_t>(batch) * g.max_global * sizeof(int32_t));
  l.end = l.counts + align256(2 * static_cast<std::size_t>(batch) * sizeof(int32_t));
  return l;
}

TensorStrides tensor_strides(const SparseAttention::Impl& impl, const Strides& given, int rows) {
  const Strides s = resolved(given, impl, rows);  // the row stride fits 32 bits: validated
  return TensorStrides{s.batch, s.head, static_cast<int32_t>(s.row)};
}

Params shared_params(const SparseAttention::Impl& impl, const AttentionInputs& in, const DevicePlan& plan,
                     const Geometry& g, int max_global, unsigned char* ws) {
  const ListLayout list = list_layout(in.batch, impl.seq_len, g);
  Params p{};
  p.q = in.q;
  p.k = in.k;
  p.v = in.v;
  p.qg = in.q_global ? in.q_global : in.q;
  p.kg = in.k_global ? in.k_global : in.k;
  p.vg = in.v_global ? in.v_global : in.v;
  p.out = in.out;
  p.global_mask = in.global_mask;
  p.valid_lengths = in.valid_lengths;
  p.key_mask = in.key_mask;
  p.lse = in.lse;
  p.flags = ws;
  p.global_index = reinterpret_cast<int32_t*>(ws + list.global_index);
  p.global_count = reinterpret_cast<int32_t*>(ws + list.counts);
  p.overflow = p.global_count + in.batch;
  p.row_ptr = plan.row_ptr;
  p.key_tile = plan.key_tile;
  p.layout_bits = plan.layout_bits;
  p.col_ptr = plan.col_ptr;
  p.col_query_tile = plan.col_query_tile;
  p.col_entry = plan.col_entry;
  p.batch = in.batch;
  p.heads = impl.num_heads;
  p.n = impl.seq_len;
  p.num_tiles = impl.plan.num_tiles;
  p.plan_heads = impl.plan.plan_heads;
  p.window = impl.plan.window;
  p.layout_block = impl.plan.layout_block;
  p.max_global = in.global_mask == nullptr ? 1 : max_global;  // without a mask the list stays empty
  p.splits = g.splits;
  p.tiles_per_split = g.tiles_per_split;
  p.scale = effective_scale(impl, in);
  p.st_q = tensor_strides(impl, in.q_strides);
  p.st_k = tensor_strides(impl, in.k_strides);
  p.st_v = tensor_strides(impl, in.v_strides);
  // A missing global projection reads the local one, with its strides.
  p.st_qg = in.q_global ? tensor_strides(impl, in.q_global_strides, in.q_global_rows) : p.st_q;
  p.qg_rows = in.q_global && in.q_global_rows > 0 ? in.q_global_rows : impl.seq_len;
  p.st_kg = in.k_global ? tensor_strides(impl, in.k_global_strides) : p.st_k;
  p.st_vg = in.v_global ? tensor_strides(impl, in.v_global_strides) : p.st_v;
  p.st_out = tensor_strides(impl, in.out_strides);
  return p;
}

void launch_prepare(const Params& p, cudaStream_t stream) {
  prepare_kernel<<<p.batch, 1024, 0, stream>>>(p);
  LDQA_CUDA_CHECK(cudaGetLastError());
}

StreamWorkspace::StreamWorkspace(void* given, std::size_t bytes, cudaStream_t stream) : ptr_(given), stream_(stream) {
  if (ptr_ == nullptr) {
    LDQA_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
    owned_ = true;
  }
}

StreamWorkspace::~StreamWorkspace() {
  if (owned_) cudaFreeAsync(ptr_, stream_);
}

void StreamWorkspace::release() {
  if (!owned_) return;
  owned_ = false;
  LDQA_CUDA_CHECK(cudaFreeAsync(ptr_, stream_));
}

}  // namespace gpu

namespace {

using namespace gpu;

// The list part (list_layout), then the global rows' split partials.
struct WorkspaceLayout {
  std::size_t partial_acc, partial_ml, total;
};

WorkspaceLayout workspace_layout(const SparseAttention::Impl& impl, int batch, const Geometry& g) {
  WorkspaceLayout w{};
  const std::size_t rows = static_cast<std::size_t>(batch) * impl.num_heads * g.max_global * g.splits;
  w.partial_acc = list_layout(batch, impl.seq_len, g).end;
  w.partial_ml = w.partial_acc + align256(rows * impl.head_dim * sizeof(float));
  w.total = w.partial_ml + align256(rows * 2 * sizeof(float));
  return w;
}

template <typename T>
void launch_dtype(const Params& p, const Geometry& g, int batch, int heads, int num_tiles, bool top_k, int head_dim,
                  cudaStream_t stream) {
  switch (head_dim) {
    case 32:
      return launch_forward<T, 32>(p, g, batch, heads, num_tiles, top_k, stream);
    case 64:
      return launch_forward<T, 64>(p, g, batch, heads, num_tiles, top_k, stream);
    case 128:
      return launch_forward<T, 128>(p, g, batch, heads, num_tiles, top_k, stream);
    default:
      fail("attention: head_dim ", head_dim, " has no CUDA kernel");
  }
}

}  // namespace

const char* cuda_kernel_path(int head_dim, AttentionPass pass) {
  return gpu::kernel_path(head_dim, pass) == gpu::KernelPath::wgmma ? "wgmma" : "mma.sync";
}

bool cuda_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::size_t cuda_workspace_bytes(const SparseAttention::Impl& impl, int batch, int max_global) {
  return workspace_layout(impl, batch, geometry(impl, batch, max_global)).total;
}

void run_cuda(const SparseAttention::Impl& impl, const AttentionInputs& in, void* stream_ptr, void* workspace,
              std::size_t /*workspace_bytes: checked by SparseAttention::run_cuda*/) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  const KernelPath path = kernel_path(impl.head_dim, AttentionPass::forward);  // first: it may throw
  int device = 0;
  LDQA_CUDA_CHECK(cudaGetDevice(&device));
  const std::shared_ptr<const DevicePlan> held = device_plan(impl, device);  // alive for this call
  const DevicePlan& plan = *held;
  const int max_global = in.global_mask == nullptr ? 0 : (in.max_global < 0 ? impl.seq_len : in.max_global);
  Geometry g = geometry(impl, in.batch, max_global);
  g.path = path;
  const WorkspaceLayout w = workspace_layout(impl, in.batch, g);
  StreamWorkspace taken(workspace, w.total, stream);
  unsigned char* ws = taken.get();
  Params p = shared_params(impl, in, plan, g, max_global, ws);
  p.partial_acc = reinterpret_cast<float*>(ws + w.partial_acc);
  p.partial_ml = reinterpret_cast<float*>(ws + w.partial_ml);
  p.top_k = impl.pattern.top_k;

  launch_prepare(p, stream);
  if (in.dtype == DType::f16) {
    launch_dtype<__half>(p, g, in.batch, impl.num_heads, impl.plan.num_tiles, p.top_k > 0, impl.head_dim, stream);
  } else {
    launch_dtype<__nv_bfloat16>(p, g, in.batch, impl.num_heads, impl.plan.num_tiles, p.top_k > 0, impl.head_dim,
                                stream);
  }
  taken.release();
}

}  // namespace ldqa::attention::detail
