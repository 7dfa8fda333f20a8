// Validation and dispatch: every public entry point checks its arguments here, so the
// backends can assume well-formed inputs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <tuple>
#include <utility>

#include "attention/attention_internal.hpp"
#include "ldqa/error.hpp"

namespace ldqa::attention {

namespace {

// A tensor's strides: non-negative; for an output, no two elements at one address (the
// dims sorted by stride, each stride at least the extent of those below it); on CUDA,
// whole 16-byte steps (rows are copied 16 bytes at a time) and a row stride that fits
// the kernels' 32-bit row offsets.
void check_strides(const SparseAttention::Impl& impl, const char* name, const Strides& given, int batch, bool output,
                   bool cuda, int element_bytes, int rows = 0) {
  const Strides s = detail::resolved(given, impl, rows);
  if (s.batch < 0 || s.head < 0 || s.row < 0)
    fail("attention: ", name, " has a negative stride (", s.batch, ", ", s.head, ", ", s.row, ")");
  if (cuda) {
    for (const int64_t stride : {s.batch, s.head, s.row})
      if (stride * element_bytes % 16 != 0)
        fail("attention: CUDA needs every stride of ", name, " a multiple of 16 bytes; got ", stride, " elements of ",
             element_bytes, " bytes (strides ", s.batch, ", ", s.head, ", ", s.row, ")");
    if (s.row > INT32_MAX) fail("attention: ", name, "'s row stride ", s.row, " exceeds 2^31 - 1 elements");
  }
  if (!output) return;
  std::pair<int64_t, int64_t> dims[] = {
      {s.row, rows > 0 ? rows : impl.seq_len}, {s.head, impl.num_heads}, {s.batch, batch}};
  std::sort(std::begin(dims), std::end(dims));
  int64_t extent = impl.head_dim;  // the head_dim elements are adjacent
  for (const auto& [stride, size] : dims) {
    if (size == 1) continue;
    if (stride < extent)
      fail("attention: the output ", name, " has overlapping strides (", s.batch, ", ", s.head, ", ", s.row,
           "): two of its elements would share memory");
    extent = stride * (size - 1) + extent;
  }
}

// With fewer q_global rows than seq_len, every real global row must be one of them (the
// CPU reads the masks; CUDA, which cannot without a synchronisation, writes NaN).
void check_global_rows(const SparseAttention::Impl& impl, const AttentionInputs& in) {
  for (int b = 0; b < in.batch; ++b) {
    const int length = in.valid_lengths ? in.valid_lengths[b] : impl.seq_len;
    for (int i = in.q_global_rows; i < length; ++i) {
      const std::size_t at = static_cast<std::size_t>(b) * impl.seq_len + i;
      if (in.global_mask[at] != 0 && (in.key_mask == nullptr || in.key_mask[at] != 0))
        fail("attention: row ", i, " of sequence ", b, " is global but q_global holds ", in.q_global_rows,
             " rows (q_global_rows)");
    }
  }
}

void validate(const SparseAttention::Impl& impl, const AttentionInputs& in, bool cuda) {
  if (in.batch < 1) fail("attention: batch must be >= 1, got ", in.batch);
  if (in.q == nullptr || in.k == nullptr || in.v == nullptr || in.out == nullptr)
    fail("attention: q, k, v and out are required");
  if (cuda) {
    if (in.dtype != DType::f16 && in.dtype != DType::bf16) fail("attention: run_cuda takes f16 or bf16 inputs");
    if (impl.head_dim != 32 && impl.head_dim != 64 && impl.head_dim != 128)
      fail("attention: run_cuda supports head_dim 32, 64 or 128, got ", impl.head_dim);
    if (in.max_global > impl.seq_len) fail("attention: max_global ", in.max_global, " > seq_len ", impl.seq_len);
    // The top-k kernel has no backward, so it does not write the row log-sum-exp:
    // refused rather than left unwritten.
    if (in.lse != nullptr && impl.pattern.top_k > 0) fail("attention: run_cuda writes no lse for top-k attention");
    // Grid dimensions y and z (heads, batch) stop at 65535.
    if (in.batch > 65535) fail("attention: run_cuda takes at most 65535 sequences per call, got ", in.batch);
    if (impl.num_heads > 65535) fail("attention: run_cuda takes at most 65535 heads, got ", impl.num_heads);
    // The kernels copy rows 16 bytes at a time (cp.async): a view at an odd offset faults.
    const std::pair<const char*, const void*> pointers[] = {{"q", in.q},
                                                            {"k", in.k},
                                                            {"v", in.v},
                                                            {"q_global", in.q_global},
                                                            {"k_global", in.k_global},
                                                            {"v_global", in.v_global},
                                                            {"out", in.out},
                                                            {"lse", in.lse}};
    for (const auto& [name, ptr] : pointers)
      if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0)
        fail("attention: run_cuda needs 16-byte aligned tensors; ", name, " is at an address ending in ",
             reinterpret_cast<std::uintptr_t>(ptr) % 16, " mod 16");
  } else {
    if (in.dtype != DType::f32) fail("attention: run_cpu takes f32 inputs");
    if (in.valid_lengths != nullptr)
      for (int b = 0; b < in.batch; ++b)
        if (in.valid_lengths[b] < 0 || in.valid_lengths[b] > impl.seq_len)
          fail("attention: valid_lengths[", b, "] = ", in.valid_lengths[b], " outside [0, ", impl.seq_len, "]");
  }
  if (!(in.scale >= 0.0f) || !std::isfinite(in.scale)) fail("attention: scale must be finite and >= 0, got ", in.scale);
  if (in.q_global_rows < 0 || in.q_global_rows > impl.seq_len)
    fail("attention: q_global_rows ", in.q_global_rows, " outside [0, seq_len ", impl.seq_len, "]");
  if (in.q_global_rows > 0 && in.q_global == nullptr)
    fail("attention: q_global_rows ", in.q_global_rows, " given without q_global");
  if (!cuda && in.q_global_rows > 0 && in.global_mask != nullptr) check_global_rows(impl, in);
  const int bytes = in.dtype == DType::f32 ? 4 : 2;
  const bool separate = in.q_global != nullptr || in.k_global != nullptr || in.v_global != nullptr;
  const std::tuple<const char*, const Strides&, bool, int> tensors[] = {
      {"q", in.q_strides, true, 0},
      {"k", in.k_strides, true, 0},
      {"v", in.v_strides, true, 0},
      {"q_global", in.q_global_strides, separate, in.q_global_rows},
      {"k_global", in.k_global_strides, separate, 0},
      {"v_global", in.v_global_strides, separate, 0}};
  for (const auto& [name, strides, present, rows] : tensors)
    if (present) check_strides(impl, name, strides, in.batch, false, cuda, bytes, rows);
  check_strides(impl, "out", in.out_strides, in.batch, true, cuda, bytes);
}

// What both backwards need besides the forward's inputs.
void validate_backward(const SparseAttention::Impl& impl, const AttentionInputs& in, const AttentionGradients& grad,
                       bool cuda) {
  validate(impl, in, cuda);
  if (impl.pattern.top_k > 0) fail("attention: top-k attention has no backward (top_k = ", impl.pattern.top_k, ")");
  if (in.lse == nullptr) fail("attention: the backward needs the forward's lse (AttentionInputs::lse)");
  if (grad.d_out == nullptr || grad.d_q == nullptr || grad.d_k == nullptr || grad.d_v == nullptr)
    fail("attention: the backward needs d_out, d_q, d_k and d_v");
  const bool separate = in.q_global != nullptr || in.k_global != nullptr || in.v_global != nullptr;
  if (separate && (in.q_global == nullptr || in.k_global == nullptr || in.v_global == nullptr))
    fail("attention: the backward takes all three global projections or none");
  const bool global_grads = grad.d_q_global != nullptr || grad.d_k_global != nullptr || grad.d_v_global != nullptr;
  if (separate && (grad.d_q_global == nullptr || grad.d_k_global == nullptr || grad.d_v_global == nullptr))
    fail("attention: the inputs have separate global projections: d_q_global, d_k_global and d_v_global are needed");
  if (!separate && global_grads)
    fail("attention: d_q_global, d_k_global, d_v_global given but the inputs have no separate global projections");
  const int bytes = in.dtype == DType::f32 ? 4 : 2;
  check_strides(impl, "d_out", grad.d_out_strides, in.batch, false, cuda, bytes);
  const std::pair<const char*, const Strides&> outputs[] = {
      {"d_q", grad.d_q_strides}, {"d_k", grad.d_k_strides}, {"d_v", grad.d_v_strides}};
  for (const auto& [name, strides] : outputs) check_strides(impl, name, strides, in.batch, true, cuda, bytes);
  if (separate) {
    const std::tuple<const char*, const Strides&, int> global_outputs[] = {
        {"d_q_global", grad.d_q_global_strides, in.q_global_rows},
        {"d_k_global", grad.d_k_global_strides, 0},
        {"d_v_global", grad.d_v_global_strides, 0}};
    for (const auto& [name, strides, rows] : global_outputs)
      check_strides(impl, name, strides, in.batch, true, cuda, bytes, rows);
  }
  if (cuda) {
    const std::pair<const char*, const void*> pointers[] = {{"d_out", grad.d_out},
                                                            {"d_q", grad.d_q},
                                                            {"d_k", grad.d_k},
                                                            {"d_v", grad.d_v},
                                                            {"d_q_global", grad.d_q_global},
                                                            {"d_k_global", grad.d_k_global},
                                                            {"d_v_global", grad.d_v_global}};
    for (const auto& [name, ptr] : pointers)
      if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0)
        fail("attention: backward_cuda needs 16-byte aligned tensors; ", name, " is at an address ending in ",
             reinterpret_cast<std::uintptr_t>(ptr) % 16, " mod 16");
  }
}

void check_workspace(std::size_t needed, void* workspace, std::size_t workspace_bytes) {
  if (workspace == nullptr) return;
  if (workspace_bytes < needed)
    fail("attention: the workspace holds ", workspace_bytes, " bytes; this call needs ", needed,
         " (cuda_workspace_bytes / cuda_backward_workspace_bytes)");
  if (reinterpret_cast<std::uintptr_t>(workspace) % 256 != 0) fail("attention: the workspace must be 256-byte aligned");
}

}  // namespace

namespace detail {
float effective_scale(const SparseAttention::Impl& impl, const AttentionInputs& in) {
  return in.scale > 0.0f ? in.scale : 1.0f / std::sqrt(static_cast<float>(impl.head_dim));
}
}  // namespace detail

SparseAttention::SparseAttention(int seq_len, int num_heads, int head_dim, Pattern pattern)
    : impl_(std::make_unique<Impl>()) {
  if (seq_len < 1) fail("attention: seq_len must be >= 1, got ", seq_len);
  if (num_heads < 1) fail("attention: num_heads must be >= 1, got ", num_heads);
  if (head_dim < 1) fail("attention: head_dim must be >= 1, got ", head_dim);
  if (pattern.window < -1) fail("attention: window must be >= 0 (or -1 for none), got ", pattern.window);
  if (pattern.top_k < 0) fail("attention: top_k must be >= 0, got ", pattern.top_k);
  impl_->seq_len = seq_len;
  impl_->num_heads = num_heads;
  impl_->head_dim = head_dim;
  impl_->plan = detail::build_tile_plan(seq_len, num_heads, pattern);
  impl_->pattern = std::move(pattern);
}

SparseAttention::~SparseAttention() = default;

int SparseAttention::seq_len() const { return impl_->seq_len; }
int SparseAttention::num_heads() const { return impl_->num_heads; }
int SparseAttention::head_dim() const { return impl_->head_dim; }
const Pattern& SparseAttention::pattern() const { return impl_->pattern; }

int64_t SparseAttention::local_pairs() const {
  const detail::TilePlan& plan = impl_->plan;
  int64_t pairs = 0;
  // plan_heads is 1 (every head shares the plan) or num_heads.
  const int64_t heads_per_plan = impl_->num_heads / plan.plan_heads;
  for (int ph = 0; ph < plan.plan_heads; ++ph) {
    for (int t = 0; t < plan.num_tiles; ++t) {
      for (int e = plan.row_ptr[ph * plan.num_tiles + t]; e < plan.row_ptr[ph * plan.num_tiles + t + 1]; ++e) {
        const int u = plan.key_tile[e];
        for (int i = t * detail::kTile; i < std::min(plan.seq_len, (t + 1) * detail::kTile); ++i)
          for (int j = u * detail::kTile; j < std::min(plan.seq_len, (u + 1) * detail::kTile); ++j)
            pairs +=
                detail::local_allows(i, j, 0, plan.window, plan.layout_bits[e], plan.layout_block) ? heads_per_plan : 0;
      }
    }
  }
  return pairs;
}

void SparseAttention::run_cpu(const AttentionInputs& in) const {
  validate(*impl_, in, false);
  detail::run_cpu(*impl_, in);
}

void SparseAttention::backward_cpu(const AttentionInputs& in, const AttentionGradients& grad) const {
  validate_backward(*impl_, in, grad, false);
  detail::backward_cpu(*impl_, in, grad);
}

void SparseAttention::backward_cuda(const AttentionInputs& in, const AttentionGradients& grad, void* cuda_stream,
                                    void* workspace, std::size_t workspace_bytes) const {
  validate_backward(*impl_, in, grad, true);
  check_workspace(cuda_backward_workspace_bytes(in.batch, in.global_mask == nullptr ? 0 : in.max_global), workspace,
                  workspace_bytes);
  detail::backward_cuda(*impl_, in, grad, cuda_stream, workspace, workspace_bytes);
}

std::size_t SparseAttention::cuda_backward_workspace_bytes(int batch, int max_global) const {
  if (batch < 1) fail("attention: batch must be >= 1, got ", batch);
  return detail::cuda_backward_workspace_bytes(*impl_, batch, max_global < 0 ? impl_->seq_len : max_global);
}

void SparseAttention::run_cuda(const AttentionInputs& in, void* cuda_stream, void* workspace,
                               std::size_t workspace_bytes) const {
  validate(*impl_, in, true);
  check_workspace(cuda_workspace_bytes(in.batch, in.global_mask == nullptr ? 0 : in.max_global), workspace,
                  workspace_bytes);
  detail::run_cuda(*impl_, in, cuda_stream, workspace, workspace_bytes);
}

std::size_t SparseAttention::cuda_workspace_bytes(int batch, int max_global) const {
  if (batch < 1) fail("attention: batch must be >= 1, got ", batch);
  return detail::cuda_workspace_bytes(*impl_, batch, max_global < 0 ? impl_->seq_len : max_global);
}

bool SparseAttention::cuda_available() { return detail::cuda_available(); }

const char* SparseAttention::cuda_kernel_path(AttentionPass pass) const {
  return detail::cuda_kernel_path(impl_->head_dim, pass);
}

}  // namespace ldqa::attention
