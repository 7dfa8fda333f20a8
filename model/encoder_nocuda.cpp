// Builds without CUDA: the CPU backend only.
#include "ldqa/error.hpp"
#include "model/encoder_internal.hpp"

namespace ldqa::model {

Outputs Encoder::forward_cuda(const Batch&, bool) const {
  fail("encoder: this build of ldqa has no CUDA kernels (configure with -DLDQA_CUDA=ON on a machine with nvcc)");
}

std::size_t Encoder::cuda_workspace_bytes() const { return 0; }
std::size_t Encoder::cuda_cached_lengths() const { return 0; }
std::size_t Encoder::cuda_graphs() const { return 0; }

}  // namespace ldqa::model
