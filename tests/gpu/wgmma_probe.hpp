// The wgmma primitives of attention/cuda/wgmma.cuh alone, on one 64 x 64 tile: what
// test_wgmma_gpu.cpp checks before (and to diagnose) the kernels built on them.
#pragma once

#include <cstdint>
#include <vector>

namespace ldqa::test::gpu {

// a, b: 64 x 64 row-major fp16 (half_bits) or bf16 bit patterns; o_init: 64 x 64 floats.
// Runs, as one warpgroup: S = A . B^T (gemm_abt, B read K-major from a swizzled tile) and
// O = o_init + round(S) . B (gemm_mb, B read MN-major from the same tile), both back in
// the accumulator layout, written row-major into s and o. Returns false, running nothing,
// where the device is not compute capability 9.0 (sm_90a code runs nowhere else).
bool run_wgmma_probe(bool half_bits, const std::vector<uint16_t>& a, const std::vector<uint16_t>& b,
                     const std::vector<float>& o_init, std::vector<float>& s, std::vector<float>& o);

// The kernels' pipeline around the same primitives, on many CTAs at once (four per
// multiprocessor, as the forward runs): CTA c reads its A (64 x 64, at c * 4096 in a)
// once through ldmatrix from a padded tile and streams `steps` B tiles (tile (c + s) %
// tiles of b) through two swizzled stages by cp.async, one barrier per step, as the
// forward streams K and V; per step O = kDecay * O + round(scale * A B^T) . B (O's
// registers rescaled by ordinary code between two wgmma, as the online softmax does).
// o: ctas x 64 x 64, row-major. False, running nothing, where the device is not compute
// capability 9.0.
constexpr float kDecay = 0.75f;
bool run_wgmma_pipeline_probe(bool half_bits, int ctas, int steps, int tiles, float scale,
                              const std::vector<uint16_t>& a, const std::vector<uint16_t>& b, std::vector<float>& o);

}  // namespace ldqa::test::gpu
