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
