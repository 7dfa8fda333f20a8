// Hopper's wgmma primitives (attention/cuda/wgmma.cuh) on one tile against a float64
// product of the same rounded inputs: the descriptor, the 128-byte swizzle, the K-major
// and MN-major reads of B and the register layouts of A and the accumulators. A wrong
// one shows as a pattern over the 8 x 8 blocks of 8 x 8 entries, printed on failure.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "gpu/wgmma_probe.hpp"

using namespace ldqa;
using namespace ldqa::test::gpu;

namespace {

// Which 8 x 8 blocks hold an entry off by more than `tolerance` (x) or not (.).
std::string wrong_blocks(const std::vector<float>& got, const std::vector<double>& want, double tolerance, int& wrong) {
  std::ostringstream map;
  wrong = 0;
  for (int br = 0; br < 8; ++br) {
    for (int bc = 0; bc < 8; ++bc) {
      bool bad = false;
      for (int r = br * 8; r < br * 8 + 8; ++r)
        for (int c = bc * 8; c < bc * 8 + 8; ++c) {
          const double g = got[static_cast<std::size_t>(r * 64 + c)];
          const bool off = !(std::abs(g - want[static_cast<std::size_t>(r * 64 + c)]) <= tolerance);
          bad = bad || off;
          wrong += off;
        }
      map << (bad ? 'x' : '.');
    }
    map << '\n';
  }
  return map.str();
}

}  // namespace

TEST_CASE("wgmma: S = A B^T (B K-major) and O += round(S) B (B MN-major) on a swizzled tile", "[wgmma]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  INFO((dtype == DType::f16 ? "fp16" : "bf16"));
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0), wide(-2.0, 2.0);
  std::vector<double> a(64 * 64), b(64 * 64);
  std::vector<float> o_init(64 * 64);
  for (auto& x : a) x = unit(rng);
  for (auto& x : b) x = unit(rng);
  for (auto& x : o_init) x = static_cast<float>(wide(rng));
  const auto a_bits = to_bits(a, dtype), b_bits = to_bits(b, dtype);
  const auto ar = from_bits(a_bits, dtype), br = from_bits(b_bits, dtype);  // what the GPU reads
  std::vector<float> s, o;
  if (!run_wgmma_probe(dtype == DType::f16, a_bits, b_bits, o_init, s, o)) {
    WARN("not a compute capability 9.0 device: the wgmma probe has nothing to run");
    return;
  }
  std::vector<double> s_want(64 * 64, 0.0), o_want(64 * 64, 0.0);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j)
      for (int k = 0; k < 64; ++k)
        s_want[static_cast<std::size_t>(i * 64 + j)] +=
            ar[static_cast<std::size_t>(i * 64 + k)] * br[static_cast<std::size_t>(j * 64 + k)];
  // gemm_mb rounds the GPU's own S to the dtype: the reference does the same, so that a
  // wrong S does not also fail O.
  std::vector<double> s_rounded(64 * 64);
  for (std::size_t i = 0; i < s.size(); ++i) s_rounded[i] = dtype == DType::f16 ? round_f16(s[i]) : round_bf16(s[i]);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      double acc = o_init[static_cast<std::size_t>(i * 64 + j)];
      for (int k = 0; k < 64; ++k)
        acc += s_rounded[static_cast<std::size_t>(i * 64 + k)] * br[static_cast<std::size_t>(k * 64 + j)];
      o_want[static_cast<std::size_t>(i * 64 + j)] = acc;
    }
  // fp32 accumulation of 64 products: far below these (|S| <~ 8, |O| <~ 60).
  int wrong_s = 0, wrong_o = 0;
  const std::string s_map = wrong_blocks(s, s_want, 1e-3, wrong_s);
  const std::string o_map = wrong_blocks(o, o_want, 1e-2, wrong_o);
  INFO("S = A B^T, wrong 8 x 8 blocks:\n" << s_map);
  CHECK(wrong_s == 0);
  INFO("O = O0 + round(S) B, wrong 8 x 8 blocks:\n" << o_map);
  CHECK(wrong_o == 0);
}

// The same primitives inside the kernels' pipeline (two cp.async stages, one barrier per
// step, A through ldmatrix at every step, four CTAs per multiprocessor, two waves): the
// one-tile case above passes while a pipeline hazard (a stage overwritten or read
// early, the async proxy seeing stale data, CTAs sharing a multiprocessor) would not.
TEST_CASE("wgmma: the primitives in the kernels' double-buffered pipeline, many CTAs", "[wgmma]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  INFO((dtype == DType::f16 ? "fp16" : "bf16"));
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  int device = 0, sms = 0;
  CUDA_OK(cudaGetDevice(&device));
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int ctas = 8 * sms, steps = 7, tiles = 5;  // odd: CTAs walk the tiles from different starts
  const float scale = 0.125f;
  std::vector<double> a(static_cast<std::size_t>(ctas) * 4096), b(static_cast<std::size_t>(tiles) * 4096);
  for (auto& x : a) x = unit(rng);
  for (auto& x : b) x = unit(rng);
  const auto a_bits = to_bits(a, dtype), b_bits = to_bits(b, dtype);
  const auto ar = from_bits(a_bits, dtype), br = from_bits(b_bits, dtype);
  std::vector<float> o;
  if (!run_wgmma_pipeline_probe(dtype == DType::f16, ctas, steps, tiles, scale, a_bits, b_bits, o)) {
    WARN("not a compute capability 9.0 device: the wgmma probe has nothing to run");
    return;
  }
  // Per CTA, in float64 from the same rounded inputs, P rounded to the dtype as the GPU
  // rounds its fp32 P (a rounding boundary crossed differently moves an entry by one
  // unit in the last place: far below the tolerance; a hazard moves whole rows).
  int wrong_ctas = 0;
  std::string first_wrong;
  std::vector<double> p(4096), want(4096);
  for (int c = 0; c < ctas; ++c) {
    std::fill(want.begin(), want.end(), 0.0);
    const double* ac = ar.data() + static_cast<std::size_t>(c) * 4096;
    for (int s = 0; s < steps; ++s) {
      for (auto& x : want) x *= kDecay;
      const double* bt = br.data() + static_cast<std::size_t>((c + s) % tiles) * 4096;
      for (int i = 0; i < 64; ++i)
        for (int j = 0; j < 64; ++j) {
          double dot = 0;
          for (int k = 0; k < 64; ++k) dot += ac[i * 64 + k] * bt[j * 64 + k];
          const double scaled = static_cast<double>(static_cast<float>(dot) * scale);
          p[static_cast<std::size_t>(i * 64 + j)] = dtype == DType::f16 ? round_f16(scaled) : round_bf16(scaled);
        }
      for (int i = 0; i < 64; ++i)
        for (int k = 0; k < 64; ++k) {
          const double pk = p[static_cast<std::size_t>(i * 64 + k)];
          for (int j = 0; j < 64; ++j) want[static_cast<std::size_t>(i * 64 + j)] += pk * bt[k * 64 + j];
        }
    }
    double err = 0, norm = 0;
    std::string rows;  // which 16-row warp slices are off
    for (int w = 0; w < 4; ++w) {
      double werr = 0, wnorm = 0;
      for (int x = w * 1024; x < (w + 1) * 1024; ++x) {
        const double d = o[static_cast<std::size_t>(c) * 4096 + x] - want[static_cast<std::size_t>(x)];
        werr += d * d;
        wnorm += want[static_cast<std::size_t>(x)] * want[static_cast<std::size_t>(x)];
      }
      rows += !(werr <= 1e-4 * wnorm) ? 'x' : '.';
      err += werr;
      norm += wnorm;
    }
    if (!(err <= 1e-4 * norm)) {
      if (++wrong_ctas <= 8) first_wrong += " " + std::to_string(c) + "[" + rows + "]";
    }
  }
  INFO(ctas << " CTAs x " << steps << " steps; wrong CTAs [warps]:" << first_wrong);
  CHECK(wrong_ctas == 0);
}
