// The forward kernels for bf16, head dim 128: one dtype x head dim per unit, so that
// each compiles alone (and in parallel).
#include "attention/cuda/forward_launch.cuh"

namespace ldqa::attention::detail::gpu {

template void launch_forward<__nv_bfloat16, 128>(const Params&, const Geometry&, int, int, int, bool, cudaStream_t);

}  // namespace ldqa::attention::detail::gpu
