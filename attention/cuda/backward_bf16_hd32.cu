// The backward kernels for bf16, head dim 32: one dtype x head dim per unit, so that
// each compiles alone (and in parallel).
#include "attention/cuda/backward_launch.cuh"

namespace ldqa::attention::detail::gpu {

template void launch_backward<__nv_bfloat16, 32>(const Params&, const Geometry&, bool, cudaStream_t);

}  // namespace ldqa::attention::detail::gpu
