// The backward's wgmma path for fp16, head dim 64 (its dQ and dK/dV kernels): compiled
// for sm_90a alone (the ldqa_attention_sm90a object library), launched by
// launch_backward where kernel_path says so.
#include "attention/cuda/backward_launch.cuh"

namespace ldqa::attention::detail::gpu {

void launch_gradients_wgmma_fp16(const Params& p, const Geometry& g, bool has_globals, cudaStream_t stream) {
  launch_gradients<__half, 64, true>(p, g, has_globals, stream);
}

}  // namespace ldqa::attention::detail::gpu
