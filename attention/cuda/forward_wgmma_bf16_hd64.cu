// The forward's wgmma path for bf16, head dim 64: compiled for sm_90a alone (the
// ldqa_attention_sm90a object library), launched by launch_forward where kernel_path
// says so.
#include "attention/cuda/forward_launch.cuh"

namespace ldqa::attention::detail::gpu {

void launch_attend_wgmma_bf16(const Params& p, const Geometry& g, int batch, int heads, int num_tiles,
                              cudaStream_t stream) {
  launch_attend<__nv_bfloat16, 64, true>(p, g, batch, heads, num_tiles, stream);
}

}  // namespace ldqa::attention::detail::gpu
