// Backend entry points for builds without CUDA: clear errors, never silent fallbacks.
#include "attention/attention_internal.hpp"
#include "ldqa/error.hpp"

namespace ldqa::attention::detail {

void run_cuda(const SparseAttention::Impl&, const AttentionInputs&, void*, void*, std::size_t) {
  fail("attention: this ldqa build has no CUDA support (configure with LDQA_CUDA=ON and nvcc)");
}
std::size_t cuda_workspace_bytes(const SparseAttention::Impl&, int, int) { return 0; }
void backward_cuda(const SparseAttention::Impl&, const AttentionInputs&, const AttentionGradients&, void*, void*,
                   std::size_t) {
  fail("attention: this ldqa build has no CUDA support (configure with LDQA_CUDA=ON and nvcc)");
}
std::size_t cuda_backward_workspace_bytes(const SparseAttention::Impl&, int, int) { return 0; }
bool cuda_available() { return false; }
const char* cuda_kernel_path(int, AttentionPass) { return "none"; }

}  // namespace ldqa::attention::detail
