// The CUDA forward pass: bf16 weights and activations, fp32 accumulation, an fp32
// residual stream. Per layer, on one stream, with no host synchronisation until the
// logits are copied back:
//   norm(x + previous bias) -> a           fused bias + residual + LayerNorm
//   a . [Wq Wk Wv Wkg Wvg]^T -> qkv6        one cuBLAS GEMM (bf16 out), and
//   a[global prefix] . Wqg^T -> qkv6         a batched one over each sequence's first
//                                          max_global rows (only global rows read Q_g)
//   bias + rotary, in place in qkv6          one kernel
//   sparse attention (attention/)          ldqa's fused kernels, reading the six heads
//                                          through strides, writing ctx as rows
//   x += ctx . Wo^T                          GEMM accumulating into the fp32 stream
//   norm(x + bo) -> f; f . W1^T -> g; bias + GELU; x += g . W2^T
// A shape's passes after its first are one CUDA graph (run_captured).
// Workspaces belong to the encoder and grow by size class (powers of two of the rows),
// so a steady stream of batches allocates nothing.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "attention/attention.hpp"
#include "device/cuda_check.hpp"
#include "ldqa/error.hpp"
#include "model/encoder_internal.hpp"

namespace ldqa::model {

namespace detail {

namespace {

using bf16 = __nv_bfloat16;

struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  // Grows (never shrinks) to at least `want` bytes; contents are not kept.
  void reserve(std::size_t want) {
    if (want <= bytes) return;
    if (ptr) LDQA_CUDA_CHECK(cudaFree(ptr));
    ptr = nullptr;
    bytes = 0;
    LDQA_CUDA_CHECK(cudaMalloc(&ptr, want));
    bytes = want;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

// ---------------------------------------------------------------------------------- kernels
constexpr int kRowWarps = 4;  // rows per block in the row-wise kernels (one warp each)
constexpr int kQgBlock = 5;   // Q_g's block of the fused projection (q k v kg vg qg)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

struct RowStats {
  float mean, inv;  // mean and 1 / sqrt(variance + eps) of one row
};

// LayerNorm statistics of a row one warp holds, given each lane's partial sum
// (the variance in a second pass over the row, as the CPU and PyTorch do).
__device__ __forceinline__ RowStats row_stats(const float* xr, float lane_sum, int h, int lane, float eps) {
  const float mean = warp_sum(lane_sum) / h;
  float var = 0;
  for (int i = lane; i < h; i += 32) var += (xr[i] - mean) * (xr[i] - mean);
  return RowStats{mean, rsqrtf(warp_sum(var) / h + eps)};
}

// x[r] = token_emb[id] + type_emb[type] (fp32 residual stream), then LayerNorm in place.
__global__ void embed_kernel(const int32_t* ids, const int32_t* types, const bf16* token_emb, const bf16* type_emb,
                             const float* gamma, const float* beta, float eps, float* x, int rows, int h) {
  const int r = blockIdx.x * kRowWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (r >= rows) return;
  const bf16* te = token_emb + static_cast<std::size_t>(ids[r]) * h;
  const bf16* ye = type_emb + static_cast<std::size_t>(types[r]) * h;
  float* xr = x + static_cast<std::size_t>(r) * h;
  float sum = 0;
  for (int i = lane; i < h; i += 32) {
    const float v = __bfloat162float(te[i]) + __bfloat162float(ye[i]);
    xr[i] = v;
    sum += v;
  }
  const RowStats st = row_stats(xr, sum, h, lane, eps);
  for (int i = lane; i < h; i += 32) xr[i] = (xr[i] - st.mean) * st.inv * gamma[i] + beta[i];
}

// x[r] += bias (the previous projection's, when given); out[r] = LayerNorm(x[r]) in bf16.
__global__ void bias_norm_kernel(float* x, const float* bias, const float* gamma, const float* beta, float eps,
                                 bf16* out, int rows, int h) {
  const int r = blockIdx.x * kRowWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (r >= rows) return;
  float* xr = x + static_cast<std::size_t>(r) * h;
  float sum = 0;
  for (int i = lane; i < h; i += 32) {
    float v = xr[i];
    if (bias) {
      v += bias[i];
      xr[i] = v;
    }
    sum += v;
  }
  const RowStats st = row_stats(xr, sum, h, lane, eps);
  bf16* o = out + static_cast<std::size_t>(r) * h;
  for (int i = lane; i < h; i += 32) o[i] = __float2bfloat16_rn((xr[i] - st.mean) * st.inv * gamma[i] + beta[i]);
}

// The last layer's bias, the final LayerNorm (kept in `normed` when asked) and the span
// head: two dot products per row.
__global__ void final_kernel(float* x, const float* bias, const float* gamma, const float* beta, float eps,
                             const float* span_w, const float* span_b, float* normed, float* start, float* end,
                             int rows, int h) {
  const int r = blockIdx.x * kRowWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (r >= rows) return;
  float* xr = x + static_cast<std::size_t>(r) * h;
  float sum = 0;
  for (int i = lane; i < h; i += 32) {
    const float v = xr[i] + bias[i];
    xr[i] = v;
    sum += v;
  }
  const RowStats st = row_stats(xr, sum, h, lane, eps);
  float s = 0, e = 0;
  for (int i = lane; i < h; i += 32) {
    const float v = (xr[i] - st.mean) * st.inv * gamma[i] + beta[i];
    if (normed) normed[static_cast<std::size_t>(r) * h + i] = v;
    s += v * span_w[i];
    e += v * span_w[h + i];
  }
  s = warp_sum(s);
  e = warp_sum(e);
  if (lane == 0) {
    start[r] = s + span_b[0];
    end[r] = e + span_b[1];
  }
}

// The elementwise kernels below take kRowsPerBlock rows per block and kVec values per
// step: 8 (one 16-byte load and store) where the widths allow it, else 1. Indices stay
// 32-bit (rows * 6h < 2^31 is checked): a 64-bit division per element cost more than
// the memory traffic these kernels are bound by.
constexpr int kRowsPerBlock = 4;

template <int kVec>
struct alignas(2 * kVec) Pack {
  bf16 v[kVec];
};

// In place in qkv6 [rows, 6h] (q k v kg vg qg blocks, no bias yet; qg only in each
// sequence's first `qg_rows` rows): the bias, and the rotary rotation on the first
// rotary_dims of each head of q, k, kg, qg. A thread owns rotated pairs (d, d + half),
// so that no thread reads what another has rotated. The attention then reads the six
// [B, H, n, D] views through their strides. kVec divides D and half.
template <int kVec>
__global__ void bias_rotary_kernel(bf16* qkv6, const float* bias6, const float* cos_t, const float* sin_t, int n, int H,
                                   int D, int half, int rows, int qg_rows) {
  const int h = H * D, per_row = 6 * h / kVec, head_packs = D / kVec, half_packs = half / kVec;
  for (int t = threadIdx.x; t < kRowsPerBlock * per_row; t += blockDim.x) {
    const int row = blockIdx.x * kRowsPerBlock + t / per_row;
    if (row >= rows) break;  // t only grows
    const int pack = t % per_row, col = pack * kVec;
    const int which = col / h, d = pack % head_packs * kVec;  // h = H * D: col % h % D
    const int p = row % n;
    if (which == kQgBlock && p >= qg_rows) continue;  // never projected, never read
    const bool rotated = (which == 0 || which == 1 || which == 3 || which == kQgBlock) && d < 2 * half;
    if (rotated && d >= half) continue;  // the pair's owner (d - half) writes it
    auto* x = reinterpret_cast<Pack<kVec>*>(qkv6 + static_cast<std::size_t>(row) * 6 * h + col);
    Pack<kVec> lo = x[0];
    if (!rotated) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) lo.v[i] = __float2bfloat16_rn(__bfloat162float(lo.v[i]) + bias6[col + i]);
      x[0] = lo;
      continue;
    }
    Pack<kVec> hi = x[half_packs];
    const float* co = cos_t + static_cast<std::size_t>(p) * half + d;
    const float* si = sin_t + static_cast<std::size_t>(p) * half + d;
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float l = __bfloat162float(lo.v[i]) + bias6[col + i];
      const float r = __bfloat162float(hi.v[i]) + bias6[col + half + i];
      lo.v[i] = __float2bfloat16_rn(l * co[i] - r * si[i]);
      hi.v[i] = __float2bfloat16_rn(l * si[i] + r * co[i]);
    }
    x[0] = lo;
    x[half_packs] = hi;
  }
}

// g = GELU(g + bias) in place, with erf as in training (cuBLASLt's fused GELU epilogue
// is the tanh approximation, which the weights were not trained with). kVec divides f.
template <int kVec>
__global__ void bias_gelu_kernel(bf16* g, const float* bias, int rows, int f) {
  const int per_row = f / kVec;
  for (int t = threadIdx.x; t < kRowsPerBlock * per_row; t += blockDim.x) {
    const int row = blockIdx.x * kRowsPerBlock + t / per_row;
    if (row >= rows) break;  // t only grows
    const int col = t % per_row * kVec;
    auto* x = reinterpret_cast<Pack<kVec>*>(g + static_cast<std::size_t>(row) * f + col);
    Pack<kVec> pack = x[0];
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      const float v = __bfloat162float(pack.v[i]) + bias[col + i];
      pack.v[i] = __float2bfloat16_rn(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
    x[0] = pack;
  }
}

// Global positions: the first global_len[b] of the valid ones.
__global__ void global_mask_kernel(const int32_t* global_len, const int32_t* valid_len, uint8_t* mask, int batch,
                                   int n) {
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  for (std::size_t idx = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const int p = static_cast<int>(idx % n), b = static_cast<int>(idx / n);
    mask[idx] = p < global_len[b] && p < valid_len[b];
  }
}

unsigned grid_for(std::size_t total, int threads) {
  return static_cast<unsigned>(std::min<std::size_t>((total + threads - 1) / threads, 65535u * 8));
}

}  // namespace

struct GpuLayer {
  bf16 *qkv6_w, *out_w, *ffn_in_w, *ffn_out_w;  // [6h, h], [h, h], [f, h], [h, f]
  float *qkv6_b, *out_b, *ffn_in_b, *ffn_out_b, *attn_norm_w, *attn_norm_b, *ffn_norm_w, *ffn_norm_b;
};

// One whole forward pass (from the global mask to the logits) captured as a CUDA graph
// and replayed: one launch instead of ~80, which is most of a short pass's time. A graph
// holds the addresses it was captured on, so it is replayed only while the workspaces
// are the same buffers; the uploads and the logits' copy back stay outside it.
struct CapturedForward {
  cudaGraphExec_t exec = nullptr;
  std::vector<const void*> buffers;  // the workspaces' addresses at capture
  int eager_runs = 0;                // a shape is captured on its second pass
  bool capturable = true;            // false once a capture failed: eager from then on
  uint64_t last_use = 0;
  CapturedForward() = default;
  CapturedForward(const CapturedForward&) = delete;
  CapturedForward& operator=(const CapturedForward&) = delete;
  ~CapturedForward() {
    if (exec) cudaGraphExecDestroy(exec);  // freed when done, should it still run
  }
};

// What a captured pass depends on besides n (its attention plan's key) and the buffers:
// the host-side shape and the attention kernels chosen at capture.
struct GraphKey {
  int batch = 0, max_global = 0;
  std::string kernel_path;
  bool operator<(const GraphKey& o) const {  // C++17 here (nvcc): no <=>
    return std::tie(batch, max_global, kernel_path) < std::tie(o.batch, o.max_global, o.kernel_path);
  }
};

struct GpuState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  DeviceBuffer cublas_ws;  // cuBLAS's workspace, ours: nothing allocated during a capture
  DeviceBuffer weights;    // every tensor, one allocation
  bf16 *token_emb = nullptr, *type_emb = nullptr;
  float *emb_norm_w = nullptr, *emb_norm_b = nullptr, *final_norm_w = nullptr, *final_norm_b = nullptr;
  float *span_w = nullptr, *span_b = nullptr;
  std::vector<GpuLayer> layers;
  // Workspaces, by size class.
  std::size_t row_capacity = 0;
  DeviceBuffer x, a, qkv6, ctx, g, ids, types, lens, mask, logits, states, attn_ws;
  int rotary_n = 0;
  DeviceBuffer cos_t, sin_t;
  // Attention plans by padded length, the least recently used dropped beyond a bound
  // (each holds a device copy of its tile plan; lengths come from user documents), with
  // the passes captured on them (dropped with the plan they read).
  struct CachedAttention {
    std::unique_ptr<attention::SparseAttention> attention;
    std::map<GraphKey, CapturedForward> graphs;
    uint64_t last_use = 0;
  };
  std::map<int, CachedAttention> attention_by_n;
  uint64_t uses = 0;
  std::size_t peak_bytes = 0;
  bool graphs_enabled = true;  // LDQA_CUDA_GRAPHS=0 turns capture off (A/B, debugging)

  ~GpuState() {
    attention_by_n.clear();  // graphs before the stream they were launched on
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }
};

namespace {

// Uploads every tensor in the order expected_tensors lists them: 16-bit matrices as
// bf16 straight from the mapping when stored so, norms and biases as fp32.
std::shared_ptr<GpuState> make_gpu_state(const Config& c, const Shards& shards) {
  auto s = std::make_shared<GpuState>();
  LDQA_CUDA_CHECK(cudaGetDevice(&s->device));
  LDQA_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  LDQA_CUBLAS_CHECK(cublasCreate(&s->cublas));
  LDQA_CUBLAS_CHECK(cublasSetStream(s->cublas, s->stream));
  // After cublasSetStream, which resets the workspace to cuBLAS's own pool. 32 MiB is
  // what cuBLAS asks for on Hopper.
  s->cublas_ws.reserve(32u << 20);
  LDQA_CUBLAS_CHECK(cublasSetWorkspace(s->cublas, s->cublas_ws.ptr, s->cublas_ws.bytes));
  if (const char* graphs = std::getenv("LDQA_CUDA_GRAPHS"))
    s->graphs_enabled = std::strcmp(graphs, "0") != 0 && std::strcmp(graphs, "off") != 0;
  const int64_t h = c.hidden, f = c.ffn;
  // Layout of the one allocation: fused QKV6 per layer is assembled on the host side
  // by copying six [h, h] blocks next to each other.
  std::vector<unsigned char> host;
  auto align = [&] { host.resize((host.size() + 255) / 256 * 256); };
  std::map<std::string, std::size_t> offset_of;
  auto put_bf16 = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const TensorView& t = shards.get(name, shape);
    const std::size_t at = host.size();
    host.resize(at + t.count * 2);
    if (t.dtype == WeightType::bf16) {
      std::memcpy(host.data() + at, t.data, t.count * 2);
    } else {
      const auto values = shards.floats(name, shape);
      for (std::size_t i = 0; i < t.count; ++i) {
        const uint16_t v = float_to_bf16(values[i]);
        std::memcpy(host.data() + at + 2 * i, &v, 2);
      }
    }
    return at;
  };
  auto put_f32 = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const auto values = shards.floats(name, shape);
    const std::size_t at = host.size();
    host.resize(at + values.size() * 4);
    std::memcpy(host.data() + at, values.data(), values.size() * 4);
    return at;
  };
  struct LayerOffsets {
    std::size_t qkv6_w, out_w, ffn_in_w, ffn_out_w, qkv6_b, out_b, ffn_in_b, ffn_out_b, anw, anb, fnw, fnb;
  };
  align();
  const std::size_t tok = put_bf16("token_embedding.weight", {c.vocab_size, h});
  align();
  const std::size_t typ = put_bf16("type_embedding.weight", {c.type_vocab, h});
  align();
  const std::size_t enw = put_f32("embedding_norm.weight", {h}), enb = put_f32("embedding_norm.bias", {h});
  const std::size_t fnw = put_f32("final_norm.weight", {h}), fnb = put_f32("final_norm.bias", {h});
  const std::size_t spw = put_f32("span.weight", {2, h}), spb = put_f32("span.bias", {2});
  // The fused projection's blocks, in qkv6's column order: Q_g last, so that one GEMM
  // projects the five every row needs and a batched one Q_g for the global prefixes.
  static const char* kProj[6] = {"query", "key", "value", "key_global", "value_global", "query_global"};
  std::vector<LayerOffsets> lo(static_cast<std::size_t>(c.layers));
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerOffsets& o = lo[static_cast<std::size_t>(l)];
    align();
    o.qkv6_w = host.size();
    for (const char* proj : kProj) put_bf16(p + "attention." + proj + ".weight", {h, h});
    align();
    o.qkv6_b = host.size();
    for (const char* proj : kProj) put_f32(p + "attention." + proj + ".bias", {h});
    align();
    o.out_w = put_bf16(p + "attention.out.weight", {h, h});
    align();
    o.ffn_in_w = put_bf16(p + "ffn_in.weight", {f, h});
    align();
    o.ffn_out_w = put_bf16(p + "ffn_out.weight", {h, f});
    align();
    o.out_b = put_f32(p + "attention.out.bias", {h});
    o.ffn_in_b = put_f32(p + "ffn_in.bias", {f});
    o.ffn_out_b = put_f32(p + "ffn_out.bias", {h});
    o.anw = put_f32(p + "attention_norm.weight", {h});
    o.anb = put_f32(p + "attention_norm.bias", {h});
    o.fnw = put_f32(p + "ffn_norm.weight", {h});
    o.fnb = put_f32(p + "ffn_norm.bias", {h});
  }
  s->weights.reserve(host.size());
  LDQA_CUDA_CHECK(cudaMemcpy(s->weights.ptr, host.data(), host.size(), cudaMemcpyHostToDevice));
  auto* base = s->weights.as<unsigned char>();
  auto B16 = [&](std::size_t at) { return reinterpret_cast<bf16*>(base + at); };
  auto F32 = [&](std::size_t at) { return reinterpret_cast<float*>(base + at); };
  s->token_emb = B16(tok);
  s->type_emb = B16(typ);
  s->emb_norm_w = F32(enw);
  s->emb_norm_b = F32(enb);
  s->final_norm_w = F32(fnw);
  s->final_norm_b = F32(fnb);
  s->span_w = F32(spw);
  s->span_b = F32(spb);
  for (const auto& o : lo)
    s->layers.push_back(GpuLayer{B16(o.qkv6_w), B16(o.out_w), B16(o.ffn_in_w), B16(o.ffn_out_w), F32(o.qkv6_b),
                                 F32(o.out_b), F32(o.ffn_in_b), F32(o.ffn_out_b), F32(o.anw), F32(o.anb), F32(o.fnw),
                                 F32(o.fnb)});
  return s;
}

// Row-major Y[rows, out] (+)= X[rows, in] . W[out, in]^T, bf16 inputs, fp32 accumulate;
// Y's rows `ldy` elements apart (default: out).
void gemm(cublasHandle_t handle, const bf16* x, const bf16* w, void* y, bool y_f32, bool accumulate, int rows, int out,
          int in, int ldy = 0) {
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  LDQA_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, CUDA_R_16BF, in, x,
                                 CUDA_R_16BF, in, &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, ldy > 0 ? ldy : out,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// The same per sequence, on its first `rows` rows: X's sequences `x_stride` elements
// apart, Y's `y_stride` (bf16 out, rows `ldy` apart).
void gemm_prefixes(cublasHandle_t handle, const bf16* x, long long x_stride, const bf16* w, bf16* y, long long y_stride,
                   int ldy, int rows, int out, int in, int sequences) {
  const float alpha = 1.0f, beta = 0.0f;
  LDQA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &alpha, w, CUDA_R_16BF,
                                               in, 0, x, CUDA_R_16BF, in, x_stride, &beta, y, CUDA_R_16BF, ldy,
                                               y_stride, sequences, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

struct PassShape {
  int batch, n, max_global;  // max_global: rows of Q_g projected and global capacity
  std::size_t rows;          // batch * n
};

// Enqueues one forward pass on s.stream, from the uploaded ids, types and lengths to the
// logits in s.logits; with `states`, also copies the hidden states back into it (a pass
// that keeps states is never captured: its copies go to pageable host memory).
void enqueue_pass(GpuState& s, const Config& c, const PassShape& shape, const attention::SparseAttention& attn,
                  Outputs* states) {
  const int B = shape.batch, n = shape.n, max_global = shape.max_global;
  const int h = c.hidden, H = c.heads, D = c.head_dim(), f = c.ffn, half = c.rotary_dims / 2;
  const std::size_t rows = shape.rows;
  cudaStream_t st = s.stream;
  const int32_t* lens = s.lens.as<int32_t>();
  global_mask_kernel<<<grid_for(rows, 256), 256, 0, st>>>(lens + B, lens, s.mask.as<uint8_t>(), B, n);

  const unsigned row_blocks = static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps);
  const unsigned row_groups = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  float* x = s.x.as<float>();
  auto keep = [&](const float* src) {
    if (!states) return;
    states->states.emplace_back(rows * h);
    LDQA_CUDA_CHECK(cudaMemcpyAsync(states->states.back().data(), src, rows * h * 4, cudaMemcpyDeviceToHost, st));
  };
  embed_kernel<<<row_blocks, 32 * kRowWarps, 0, st>>>(
      s.ids.as<int32_t>(), s.types.as<int32_t>(), s.token_emb, s.type_emb, s.emb_norm_w, s.emb_norm_b,
      static_cast<float>(c.layer_norm_eps), x, static_cast<int>(rows), h);
  keep(x);
  // [B, H, n, D] views of the fused projection's rows (q k v qg kg vg blocks) and of ctx.
  const attention::Strides fused{static_cast<int64_t>(n) * 6 * h, D, 6 * h};
  const attention::Strides rows_of_ctx{static_cast<int64_t>(n) * h, D, h};
  bf16* qkv6 = s.qkv6.as<bf16>();
  const float* pending_bias = nullptr;  // the last ffn_out bias, added by the next norm
  for (const GpuLayer& L : s.layers) {
    bias_norm_kernel<<<row_blocks, 32 * kRowWarps, 0, st>>>(x, pending_bias, L.attn_norm_w, L.attn_norm_b,
                                                            static_cast<float>(c.layer_norm_eps), s.a.as<bf16>(),
                                                            static_cast<int>(rows), h);
    if (pending_bias) keep(x);
    gemm(s.cublas, s.a.as<bf16>(), L.qkv6_w, qkv6, false, false, static_cast<int>(rows), 5 * h, h, 6 * h);
    if (max_global > 0)
      gemm_prefixes(s.cublas, s.a.as<bf16>(), static_cast<long long>(n) * h,
                    L.qkv6_w + static_cast<std::size_t>(kQgBlock) * h * h,
                    qkv6 + static_cast<std::size_t>(kQgBlock) * h, static_cast<long long>(n) * 6 * h, 6 * h, max_global,
                    h, h, B);
    if (D % 8 == 0 && half % 8 == 0)
      bias_rotary_kernel<8><<<row_groups, 256, 0, st>>>(qkv6, L.qkv6_b, s.cos_t.as<float>(), s.sin_t.as<float>(), n, H,
                                                        D, half, static_cast<int>(rows), max_global);
    else
      bias_rotary_kernel<1><<<row_groups, 256, 0, st>>>(qkv6, L.qkv6_b, s.cos_t.as<float>(), s.sin_t.as<float>(), n, H,
                                                        D, half, static_cast<int>(rows), max_global);
    attention::AttentionInputs ai;
    ai.batch = B;
    ai.dtype = attention::DType::bf16;
    ai.q = qkv6;
    ai.k = qkv6 + h;
    ai.v = qkv6 + 2 * h;
    ai.k_global = qkv6 + 3 * h;
    ai.v_global = qkv6 + 4 * h;
    ai.q_global = qkv6 + static_cast<std::size_t>(kQgBlock) * h;  // read at global rows only
    ai.q_strides = ai.k_strides = ai.v_strides = fused;
    ai.q_global_strides = ai.k_global_strides = ai.v_global_strides = fused;
    ai.global_mask = s.mask.as<uint8_t>();
    ai.max_global = max_global;
    ai.valid_lengths = lens;
    ai.out = s.ctx.ptr;  // the context straight into rows: no merge pass
    ai.out_strides = rows_of_ctx;
    attn.run_cuda(ai, st, s.attn_ws.ptr, s.attn_ws.bytes);
    gemm(s.cublas, s.ctx.as<bf16>(), L.out_w, x, true, true, static_cast<int>(rows), h, h);
    bias_norm_kernel<<<row_blocks, 32 * kRowWarps, 0, st>>>(x, L.out_b, L.ffn_norm_w, L.ffn_norm_b,
                                                            static_cast<float>(c.layer_norm_eps), s.a.as<bf16>(),
                                                            static_cast<int>(rows), h);
    gemm(s.cublas, s.a.as<bf16>(), L.ffn_in_w, s.g.ptr, false, false, static_cast<int>(rows), f, h);
    if (f % 8 == 0)
      bias_gelu_kernel<8><<<row_groups, 256, 0, st>>>(s.g.as<bf16>(), L.ffn_in_b, static_cast<int>(rows), f);
    else
      bias_gelu_kernel<1><<<row_groups, 256, 0, st>>>(s.g.as<bf16>(), L.ffn_in_b, static_cast<int>(rows), f);
    gemm(s.cublas, s.g.as<bf16>(), L.ffn_out_w, x, true, true, static_cast<int>(rows), h, f);
    pending_bias = L.ffn_out_b;
  }
  float* logits = s.logits.as<float>();
  final_kernel<<<row_blocks, 32 * kRowWarps, 0, st>>>(
      x, pending_bias, s.final_norm_w, s.final_norm_b, static_cast<float>(c.layer_norm_eps), s.span_w, s.span_b,
      states ? s.states.as<float>() : nullptr, logits, logits + rows, static_cast<int>(rows), h);
  LDQA_CUDA_CHECK(cudaGetLastError());
  keep(x);
  keep(states ? s.states.as<float>() : nullptr);
}

// The device addresses a captured pass has baked in, besides the weights and the plan.
std::vector<const void*> workspace_addresses(const GpuState& s) {
  return {s.x.ptr,    s.a.ptr,    s.qkv6.ptr,   s.ctx.ptr,     s.g.ptr,     s.ids.ptr,   s.types.ptr,
          s.lens.ptr, s.mask.ptr, s.logits.ptr, s.attn_ws.ptr, s.cos_t.ptr, s.sin_t.ptr, s.cublas_ws.ptr};
}

constexpr std::size_t kMaxGraphsPerLength = 8;  // (batch, max_global, path) shapes per n

// Runs the pass as a CUDA graph: replayed when this shape was captured on these buffers,
// captured on a shape's second pass (a shape seen once runs as it is, and its first pass
// also made the plan and set the kernels' attributes, which a capture cannot do). A
// capture that fails leaves the shape eager; `Encoder::cuda_graphs()` counts what is held.
void run_captured(GpuState& s, const Config& c, const PassShape& shape, GpuState::CachedAttention& cached) {
  const GraphKey key{shape.batch, shape.max_global, cached.attention->cuda_kernel_path()};
  auto found = cached.graphs.find(key);
  if (found == cached.graphs.end()) {
    if (cached.graphs.size() >= kMaxGraphsPerLength) {
      auto oldest = cached.graphs.begin();
      for (auto it = cached.graphs.begin(); it != cached.graphs.end(); ++it)
        if (it->second.last_use < oldest->second.last_use) oldest = it;
      cached.graphs.erase(oldest);
    }
    found = cached.graphs.try_emplace(key).first;
  }
  CapturedForward& graph = found->second;
  graph.last_use = ++s.uses;
  const std::vector<const void*> buffers = workspace_addresses(s);
  if (graph.exec && graph.buffers != buffers) {  // a workspace grew since: capture again
    LDQA_CUDA_CHECK(cudaGraphExecDestroy(graph.exec));
    graph.exec = nullptr;
  }
  if (graph.exec) {
    LDQA_CUDA_CHECK(cudaGraphLaunch(graph.exec, s.stream));
    return;
  }
  if (!graph.capturable || graph.eager_runs++ == 0) {
    enqueue_pass(s, c, shape, *cached.attention, nullptr);
    return;
  }
  // Thread-local mode: only this thread's unsafe calls (a synchronous copy, a malloc)
  // end the capture, not another thread's unrelated work.
  LDQA_CUDA_CHECK(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t captured = nullptr;
  bool enqueued = true;
  try {
    enqueue_pass(s, c, shape, *cached.attention, nullptr);
  } catch (const Error&) {
    enqueued = false;  // a call the capture refused (or a real error, which the eager pass rethrows)
  }
  const cudaError_t ended = cudaStreamEndCapture(s.stream, &captured);
  cudaGraphExec_t exec = nullptr;
  const bool made = enqueued && ended == cudaSuccess && captured != nullptr &&
                    cudaGraphInstantiateWithFlags(&exec, captured, 0) == cudaSuccess;
  if (captured) cudaGraphDestroy(captured);
  if (!made) {
    (void)cudaGetLastError();  // the capture's (non-sticky) error
    graph.capturable = false;
    enqueue_pass(s, c, shape, *cached.attention, nullptr);
    return;
  }
  graph.exec = exec;
  graph.buffers = buffers;
  LDQA_CUDA_CHECK(cudaGraphLaunch(exec, s.stream));
}

}  // namespace
}  // namespace detail

std::size_t Encoder::cuda_graphs() const {
  std::lock_guard<std::mutex> lock(impl_->gpu_mutex);
  std::size_t held = 0;
  if (impl_->gpu)
    for (const auto& [n, cached] : impl_->gpu->attention_by_n)
      for (const auto& [key, graph] : cached.graphs) held += graph.exec != nullptr;
  return held;
}

std::size_t Encoder::cuda_cached_lengths() const {
  std::lock_guard<std::mutex> lock(impl_->gpu_mutex);
  return impl_->gpu ? impl_->gpu->attention_by_n.size() : 0;
}

std::size_t Encoder::cuda_workspace_bytes() const {
  std::lock_guard<std::mutex> lock(impl_->gpu_mutex);
  return impl_->gpu ? impl_->gpu->peak_bytes : 0;
}

Outputs Encoder::forward_cuda(const Batch& in, bool keep_states) const {
  using namespace detail;
  const Config& c = impl_->config;
  check_batch(c, in);
  if (!attention::SparseAttention::cuda_available()) fail("encoder: no usable CUDA device");
  std::lock_guard<std::mutex> lock(impl_->gpu_mutex);
  if (!impl_->gpu) impl_->gpu = make_gpu_state(c, impl_->shards);
  GpuState& s = *impl_->gpu;
  LDQA_CUDA_CHECK(cudaSetDevice(s.device));
  const int B = in.batch, n = in.n, h = c.hidden, H = c.heads, D = c.head_dim(), f = c.ffn;
  const std::size_t rows = static_cast<std::size_t>(B) * n;
  if (rows > static_cast<std::size_t>(INT32_MAX / std::max(6 * h, f)))
    fail("encoder: batch of ", rows, " tokens is too large for one pass");
  std::vector<int32_t> valid(in.valid_len), glen(in.global_len);
  int max_global = 0;
  for (int b = 0; b < B; ++b) {
    valid[static_cast<std::size_t>(b)] = std::clamp(valid[static_cast<std::size_t>(b)], 0, n);
    glen[static_cast<std::size_t>(b)] = std::clamp(glen[static_cast<std::size_t>(b)], 0, n);
    max_global = std::max(max_global, glen[static_cast<std::size_t>(b)]);
  }
  // A capacity, not a count (the mask says which rows are global): rounded up to 16 so
  // that questions of similar lengths share one captured pass (a few more Q_g rows).
  if (max_global > 0) max_global = std::min(n, (max_global + 15) / 16 * 16);
  // Size class: the next power of two of the rows.
  std::size_t cap = 1;
  while (cap < rows) cap <<= 1;
  if (cap > s.row_capacity) {
    s.x.reserve(cap * h * 4);
    s.a.reserve(cap * h * 2);
    s.qkv6.reserve(cap * 6 * h * 2);
    s.ctx.reserve(cap * h * 2);
    s.g.reserve(cap * f * 2);
    s.ids.reserve(cap * 4);
    s.types.reserve(cap * 4);
    s.mask.reserve(cap);
    s.logits.reserve(cap * 2 * 4);
    s.row_capacity = cap;
  }
  s.lens.reserve(static_cast<std::size_t>(2 * B) * 4);
  if (keep_states) s.states.reserve(rows * h * 4);
  if (n > s.rotary_n) {
    std::vector<float> cos_h, sin_h;
    const int table_n = std::max(n, 2 * s.rotary_n);
    rotary_table(c, table_n, cos_h, sin_h);
    s.cos_t.reserve(std::max<std::size_t>(cos_h.size() * 4, 4));
    s.sin_t.reserve(std::max<std::size_t>(sin_h.size() * 4, 4));
    LDQA_CUDA_CHECK(cudaMemcpy(s.cos_t.ptr, cos_h.data(), cos_h.size() * 4, cudaMemcpyHostToDevice));
    LDQA_CUDA_CHECK(cudaMemcpy(s.sin_t.ptr, sin_h.data(), sin_h.size() * 4, cudaMemcpyHostToDevice));
    s.rotary_n = table_n;
  }
  constexpr std::size_t kMaxCachedLengths = 32;
  if (!s.attention_by_n.count(n) && s.attention_by_n.size() >= kMaxCachedLengths) {
    auto oldest = s.attention_by_n.begin();
    for (auto it = s.attention_by_n.begin(); it != s.attention_by_n.end(); ++it)
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    s.attention_by_n.erase(oldest);  // its plan's cudaFree waits for the kernels that read it
  }
  auto& cached = s.attention_by_n[n];
  cached.last_use = ++s.uses;
  if (!cached.attention)
    cached.attention = std::make_unique<attention::SparseAttention>(n, H, D, attention::Pattern{c.window, nullptr, 0});
  const auto& attn = cached.attention;
  s.attn_ws.reserve(std::max<std::size_t>(attn->cuda_workspace_bytes(B, max_global), 256));
  s.peak_bytes = std::max(s.peak_bytes, s.x.bytes + s.a.bytes + s.qkv6.bytes + s.ctx.bytes + s.g.bytes +
                                            s.attn_ws.bytes + s.states.bytes + s.weights.bytes);

  cudaStream_t st = s.stream;
  auto* ids = s.ids.as<int32_t>();
  auto* types = s.types.as<int32_t>();
  auto* lens = s.lens.as<int32_t>();
  LDQA_CUDA_CHECK(cudaMemcpyAsync(ids, in.ids.data(), rows * 4, cudaMemcpyHostToDevice, st));
  LDQA_CUDA_CHECK(cudaMemcpyAsync(types, in.types.data(), rows * 4, cudaMemcpyHostToDevice, st));
  LDQA_CUDA_CHECK(cudaMemcpyAsync(lens, valid.data(), static_cast<std::size_t>(B) * 4, cudaMemcpyHostToDevice, st));
  LDQA_CUDA_CHECK(cudaMemcpyAsync(lens + B, glen.data(), static_cast<std::size_t>(B) * 4, cudaMemcpyHostToDevice, st));

  Outputs out;
  const PassShape shape{B, n, max_global, rows};
  if (keep_states || !s.graphs_enabled) {
    enqueue_pass(s, c, shape, *attn, keep_states ? &out : nullptr);
  } else {
    run_captured(s, c, shape, cached);
  }
  float* logits = s.logits.as<float>();
  out.start_logits.resize(rows);
  out.end_logits.resize(rows);
  LDQA_CUDA_CHECK(cudaMemcpyAsync(out.start_logits.data(), logits, rows * 4, cudaMemcpyDeviceToHost, st));
  LDQA_CUDA_CHECK(cudaMemcpyAsync(out.end_logits.data(), logits + rows, rows * 4, cudaMemcpyDeviceToHost, st));
  LDQA_CUDA_CHECK(cudaStreamSynchronize(st));
  return out;
}

}  // namespace ldqa::model
