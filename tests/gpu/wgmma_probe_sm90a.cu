// Compiled for sm_90a only (tests/CMakeLists.txt). The A fragments are read from global
// memory at the places the PTX ISA gives for wgmma's register A operand (the mma.sync
// m16n8k16 layout per warp, warp w holding rows 16w..16w+15), not through the kernels'
// ldmatrix, so a wrong assumption there shows as a wrong S rather than passing twice.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "attention/cuda/wgmma.cuh"
#include "tests/gpu/wgmma_probe.hpp"

namespace ldqa::test::gpu {

namespace {

namespace dg = ldqa::attention::detail::gpu;

template <typename T>
__global__ void __launch_bounds__(128)
    probe_kernel(const T* a, const T* b, const float* o_init, float* s_out, float* o_out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t misalign = dg::smem_addr(smem_raw) % dg::wgmma::kAtomBytes;
  unsigned char* tile = smem_raw + (misalign == 0 ? 0 : dg::wgmma::kAtomBytes - misalign);
  // B into the swizzled tile, 16 bytes at a time, as the kernels copy K and V.
  for (int c = threadIdx.x; c < 64 * 8; c += blockDim.x) {
    const int row = c / 8, chunk = c % 8;
    dg::cp_async16(tile + dg::wgmma::swizzled(row, chunk), b + row * 64 + chunk * 8, 16);
  }
  dg::cp_async_commit();
  dg::cp_async_wait<0>();
  dg::wgmma::fence_shared_for_async();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * 16 + lane / 4, c0 = (lane % 4) * 2;
  auto pair = [&](int r, int c) {  // two adjacent halves of A, as one register
    uint32_t v;
    memcpy(&v, a + r * 64 + c, 4);
    return v;
  };
  uint32_t a_frag[4][4];
  for (int kk = 0; kk < 4; ++kk) {
    a_frag[kk][0] = pair(r0, kk * 16 + c0);
    a_frag[kk][1] = pair(r0 + 8, kk * 16 + c0);
    a_frag[kk][2] = pair(r0, kk * 16 + c0 + 8);
    a_frag[kk][3] = pair(r0 + 8, kk * 16 + c0 + 8);
  }
  float s_acc[8][4], o_acc[8][4];
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) o_acc[nt][e] = o_init[(r0 + (e >> 1) * 8) * 64 + nt * 8 + c0 + (e & 1)];
  dg::wgmma::gemm_abt<T>(s_acc, a_frag, dg::smem_addr(tile));
  dg::wgmma::gemm_mb<T>(o_acc, s_acc, dg::smem_addr(tile));
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) {
      const int at = (r0 + (e >> 1) * 8) * 64 + nt * 8 + c0 + (e & 1);
      s_out[at] = s_acc[nt][e];
      o_out[at] = o_acc[nt][e];
    }
}

template <typename T>
__global__ void __launch_bounds__(128, 4)
    pipeline_kernel(const T* a, const T* b, int tiles, int steps, float scale, float* o_out) {
  namespace wg = dg::wgmma;
  constexpr int kRow = 72;  // the forward's padded query rows
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t misalign = dg::smem_addr(smem_raw) % wg::kAtomBytes;
  unsigned char* stages = smem_raw + (misalign == 0 ? 0 : wg::kAtomBytes - misalign);  // two swizzled tiles
  T* a_s = reinterpret_cast<T*>(stages + 2 * wg::kTileBytes);
  const int cta = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* a_src = a + static_cast<std::size_t>(cta) * 4096;
  for (int c = threadIdx.x; c < 64 * 8; c += blockDim.x)
    dg::cp_async16(a_s + (c / 8) * kRow + (c % 8) * 8, a_src + c * 8, 16);
  auto issue = [&](int s, int buf) {
    const T* src = b + static_cast<std::size_t>((cta + s) % tiles) * 4096;
    for (int c = threadIdx.x; c < 64 * 8; c += blockDim.x)
      dg::cp_async16(stages + buf * wg::kTileBytes + wg::swizzled(c / 8, c % 8), src + c * 8, 16);
    dg::cp_async_commit();
  };
  issue(0, 0);  // A's copies commit with step 0's
  float o_acc[8][4];
  for (int nt = 0; nt < 8; ++nt) o_acc[nt][0] = o_acc[nt][1] = o_acc[nt][2] = o_acc[nt][3] = 0.f;
  uint32_t a_frag[4][4];
  for (int s = 0; s < steps; ++s) {
    const int buf = s & 1;
    dg::cp_async_wait<0>();
    wg::fence_shared_for_async();
    __syncthreads();
    if (s + 1 < steps) issue(s + 1, buf ^ 1);
    // A at every step, as the kernels load it (wgmma.cuh: a register A operand is not
    // kept across steps).
    for (int kk = 0; kk < 4; ++kk)
      dg::ldmatrix_x4(a_frag[kk],
                      a_s + (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * kRow + kk * 16 + (lane / 16) * 8);
    float s_acc[8][4];
    const uint32_t tile = dg::smem_addr(stages) + buf * wg::kTileBytes;
    wg::gemm_abt<T>(s_acc, a_frag, tile);
    for (int nt = 0; nt < 8; ++nt)
      for (int e = 0; e < 4; ++e) {
        s_acc[nt][e] *= scale;
        o_acc[nt][e] *= kDecay;  // as the online softmax rescales O between steps
      }
    wg::gemm_mb<T>(o_acc, s_acc, tile);
  }
  const int r0 = warp * 16 + lane / 4, c0 = (lane % 4) * 2;
  float* o = o_out + static_cast<std::size_t>(cta) * 4096;
  for (int nt = 0; nt < 8; ++nt)
    for (int e = 0; e < 4; ++e) o[(r0 + (e >> 1) * 8) * 64 + nt * 8 + c0 + (e & 1)] = o_acc[nt][e];
}

bool compute_capability_90() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  return major == 9 && minor == 0;
}

}  // namespace

bool run_wgmma_probe(bool half_bits, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b,
                     const std::vector<float>& o_init, std::vector<float>& s, std::vector<float>& o) {
  if (!compute_capability_90()) return false;
  constexpr std::size_t kElems = 64 * 64;
  void *da = nullptr, *db = nullptr, *d_init = nullptr, *ds = nullptr, *d_o = nullptr;
  cudaMalloc(&da, kElems * 2);
  cudaMalloc(&db, kElems * 2);
  cudaMalloc(&d_init, kElems * 4);
  cudaMalloc(&ds, kElems * 4);
  cudaMalloc(&d_o, kElems * 4);
  cudaMemcpy(da, a.data(), kElems * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), kElems * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(d_init, o_init.data(), kElems * 4, cudaMemcpyHostToDevice);
  cudaMemset(ds, 0xFF, kElems * 4);  // NaN: a value never written shows
  cudaMemset(d_o, 0xFF, kElems * 4);
  const int smem = static_cast<int>(dg::wgmma::kTileBytes + dg::wgmma::kAtomBytes);
  if (half_bits) {
    probe_kernel<__half><<<1, 128, smem>>>(static_cast<const __half*>(da), static_cast<const __half*>(db),
                                           static_cast<const float*>(d_init), static_cast<float*>(ds),
                                           static_cast<float*>(d_o));
  } else {
    probe_kernel<__nv_bfloat16>
        <<<1, 128, smem>>>(static_cast<const __nv_bfloat16*>(da), static_cast<const __nv_bfloat16*>(db),
                           static_cast<const float*>(d_init), static_cast<float*>(ds), static_cast<float*>(d_o));
  }
  const cudaError_t launched = cudaGetLastError();
  const cudaError_t ran = cudaDeviceSynchronize();
  s.assign(kElems, 0.f);
  o.assign(kElems, 0.f);
  cudaMemcpy(s.data(), ds, kElems * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(o.data(), d_o, kElems * 4, cudaMemcpyDeviceToHost);
  for (void* p : {da, db, d_init, ds, d_o}) cudaFree(p);
  const cudaError_t failed = launched != cudaSuccess ? launched : ran;
  if (failed != cudaSuccess) throw std::runtime_error(std::string("wgmma probe: ") + cudaGetErrorString(failed));
  return true;
}

bool run_wgmma_pipeline_probe(bool half_bits, int ctas, int steps, int tiles, float scale,
                              const std::vector<uint16_t>& a, const std::vector<uint16_t>& b, std::vector<float>& o) {
  if (!compute_capability_90()) return false;
  const std::size_t a_elems = static_cast<std::size_t>(ctas) * 4096, b_elems = static_cast<std::size_t>(tiles) * 4096;
  if (a.size() != a_elems || b.size() != b_elems) throw std::invalid_argument("wgmma pipeline probe: sizes");
  void *da = nullptr, *db = nullptr, *d_o = nullptr;
  cudaMalloc(&da, a_elems * 2);
  cudaMalloc(&db, b_elems * 2);
  cudaMalloc(&d_o, a_elems * 4);
  cudaMemcpy(da, a.data(), a_elems * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b_elems * 2, cudaMemcpyHostToDevice);
  cudaMemset(d_o, 0xFF, a_elems * 4);  // NaN: a value never written shows
  const int smem = static_cast<int>(dg::wgmma::kAtomBytes + 2 * dg::wgmma::kTileBytes + 64 * 72 * 2);
  if (half_bits) {
    pipeline_kernel<__half><<<ctas, 128, smem>>>(static_cast<const __half*>(da), static_cast<const __half*>(db), tiles,
                                                 steps, scale, static_cast<float*>(d_o));
  } else {
    pipeline_kernel<__nv_bfloat16><<<ctas, 128, smem>>>(static_cast<const __nv_bfloat16*>(da),
                                                        static_cast<const __nv_bfloat16*>(db), tiles, steps, scale,
                                                        static_cast<float*>(d_o));
  }
  const cudaError_t launched = cudaGetLastError();
  const cudaError_t ran = cudaDeviceSynchronize();
  o.assign(a_elems, 0.f);
  cudaMemcpy(o.data(), d_o, a_elems * 4, cudaMemcpyDeviceToHost);
  for (void* p : {da, db, d_o}) cudaFree(p);
  const cudaError_t failed = launched != cudaSuccess ? launched : ran;
  if (failed != cudaSuccess)
    throw std::runtime_error(std::string("wgmma pipeline probe: ") + cudaGetErrorString(failed));
  return true;
}

}  // namespace ldqa::test::gpu
