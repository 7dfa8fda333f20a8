// ldqa sparse attention: sliding-window + global attention (Longformer semantics),
// block-sparse layouts (DeepSpeed Sparse Attention style) and exact top-k, on CPU
// (Eigen, float32) and CUDA (fused flash-style kernels, fp16/bf16 inputs).
//
// Semantics, for one sequence b and one head h, positions 0..n-1:
//   valid(j)   key j is not padding (valid_lengths and/or key_mask);
//   global(i)  i is in the global set and valid;
//   allowed(i, j) = valid(i) && valid(j) && (
//        global(i)                               // a global query sees every key
//     || (window >= 0 && |i - j| <= window)      // one-sided window w
//     || global(j)                               // every query sees global keys
//     || layout.allows(h, i / block, j / block)) // block-sparse layout, if any
//   out[i] = softmax_j(scale * q_i . k_j over allowed j) . v_j, each key counted once.
// Global queries use q_global/k_global/v_global when given (Longformer's Q_g, K_g,
// V_g; k_global/v_global at every position), local queries always use q/k/v.
// Padded query rows, and rows with no allowed key, are written as zeros.
// With top_k > 0 each query keeps only its top_k highest-scoring allowed keys (ties
// broken towards the lower key index) and the softmax runs over those.
//
// Backward (training): the forward writes each row's log-sum-exp (AttentionInputs::lse);
// backward_* takes the same inputs with that output and lse and the gradient of the
// output, and writes dQ, dK, dV (and dQ_g, dK_g, dV_g with separate global projections)
// by recomputing the attention weights over exactly the forward's pairs. Top-k has no
// backward (its selection is not differentiable; the calls refuse it).
//
// Tensors are [batch, heads, seq_len, head_dim] with adjacent head_dim elements, any
// other strides (Strides; contiguous by default); q_global may hold only the rows up to
// the last global one (AttentionInputs::q_global_rows). Errors throw ldqa::Error.
// A SparseAttention object is immutable after construction and may be shared by
// threads; run_cuda uploads its plan to the current device on first use (thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ldqa::attention {

enum class DType { f32, f16, bf16 };

// Which key blocks each query block sees, per head: a compressed sparse row
// description (sorted, unique key blocks per query block), linear in its entries.
class BlockLayout {
 public:
  BlockLayout() = default;
  // rows[h][qb] lists the key blocks query block qb of head h sees (any order,
  // duplicates allowed). Every head must have the same number of query blocks.
  BlockLayout(int block_size, std::vector<std::vector<std::vector<int>>> rows);

  int block_size() const { return block_size_; }
  int num_heads() const { return num_heads_; }
  int num_blocks() const { return num_blocks_; }
  bool allows(int head, int query_block, int key_block) const;
  // Sorted key blocks of (head, query_block); head is taken modulo num_heads().
  const int32_t* row_begin(int head, int query_block) const;
  const int32_t* row_end(int head, int query_block) const;
  std::size_t num_entries() const { return cols_.size(); }

 private:
  int block_size_ = 0;
  int num_heads_ = 0;
  int num_blocks_ = 0;
  std::vector<int64_t> row_ptr_;  // [num_heads * num_blocks + 1]
  std::vector<int32_t> cols_;
};

// Layout builders after DeepSpeed's sparsity configs (deepspeed.ops.sparse_attention);
// num_blocks = ceil(seq_len / block_size). Random blocks come from `seed` and are the
// same on every platform. With different_per_head, each head draws its own.
struct FixedLayoutConfig {
  int num_local_blocks = 4;
  int num_global_blocks = 1;
  bool horizontal_global = false;  // global blocks also attend to everything
  int num_different_global_patterns = 1;
};
struct VariableLayoutConfig {
  int num_random_blocks = 0;
  std::vector<int> local_window_blocks = {4};   // sizes of consecutive local windows; last repeats
  std::vector<int> global_block_indices = {0};  // global blocks, or starts of ranges
  std::vector<int> global_block_end_indices;    // empty, or exclusive ends of the ranges
  bool horizontal_global = false;
};
struct BigBirdLayoutConfig {
  int num_random_blocks = 1;
  int num_sliding_window_blocks = 3;  // odd: the block itself and (n-1)/2 on each side
  int num_global_blocks = 1;          // the first blocks, as rows and as columns
};
struct BSLongformerLayoutConfig {
  int num_sliding_window_blocks = 3;
  std::vector<int> global_block_indices = {0};
  std::vector<int> global_block_end_indices;
};

BlockLayout make_fixed_layout(int seq_len, int block_size, int num_heads, const FixedLayoutConfig&);
BlockLayout make_variable_layout(int seq_len, int block_size, int num_heads, const VariableLayoutConfig&, uint64_t seed,
                                 bool different_per_head);
BlockLayout make_bigbird_layout(int seq_len, int block_size, int num_heads, const BigBirdLayoutConfig&, uint64_t seed,
                                bool different_per_head);
BlockLayout make_bslongformer_layout(int seq_len, int block_size, int num_heads, const BSLongformerLayoutConfig&);

struct Pattern {
  int window = 0;                             // one-sided window w >= 0; -1: no token window (layout/global only)
  std::shared_ptr<const BlockLayout> layout;  // optional; block size a power of two in [8, 1024]
  int top_k = 0;                              // 0: plain softmax over every allowed key
};

// Element strides of a [batch, heads, seq_len, head_dim] tensor whose head_dim elements
// are adjacent. All zero (the default) means contiguous: {heads * seq_len * head_dim,
// seq_len * head_dim, head_dim}. So a [batch, seq_len, heads, head_dim] buffer (a
// projection's output) is read as {seq_len * heads * head_dim, head_dim, heads *
// head_dim}, and q, k, v as column blocks of one fused projection, without a copy.
// Inputs may overlap (a stride of 0 repeats); an output's elements must not share
// memory (checked). run_cuda also needs every stride a multiple of 16 bytes.
struct Strides {
  int64_t batch = 0, head = 0, row = 0;
  bool is_default() const { return batch == 0 && head == 0 && row == 0; }
};

// Pointers into host memory for run_cpu, device memory for run_cuda.
struct AttentionInputs {
  int batch = 0;
  DType dtype = DType::f32;  // f32 on CPU; f16 or bf16 on CUDA
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* q_global = nullptr;  // optional separate projections for global rows
  const void* k_global = nullptr;
  const void* v_global = nullptr;
  // Rows q_global holds (and d_q_global, in the backward): 0 means seq_len. Fewer when
  // the globals come first, as a question prefix does: q_global is read at global rows
  // only, so a projection of the first rows is passed as it is. Every real global row
  // must then lie below it: run_cpu throws; run_cuda writes that sequence as NaN.
  int q_global_rows = 0;
  const uint8_t* global_mask = nullptr;  // [batch, seq_len], non-zero = global; optional
  // CUDA only: an upper bound on the global positions of any one sequence, so that
  // launches are sized without reading the mask back (no host synchronisation).
  // -1 means seq_len. Rows beyond the bound are written as NaN, never silently dropped.
  int max_global = -1;
  // [batch]; optional. A length outside [0, seq_len] is an error: run_cpu throws;
  // run_cuda (which cannot read device memory without a synchronisation) writes that
  // sequence's whole output as NaN.
  const int32_t* valid_lengths = nullptr;
  const uint8_t* key_mask = nullptr;  // [batch, seq_len], non-zero = real token; optional
  void* out = nullptr;
  // Optional output, float32 [batch, heads, seq_len]: each row's log-sum-exp (natural
  // log) of its scaled scores over the keys it attends to; -inf for padded rows and rows
  // with no allowed key. What the backward needs from the forward.
  float* lse = nullptr;
  float scale = 0.0f;  // 0: 1/sqrt(head_dim)
  // The strides of the tensors above (lse is always contiguous).
  Strides q_strides, k_strides, v_strides, q_global_strides, k_global_strides, v_global_strides, out_strides;
};

// The backward's own tensors, [batch, heads, seq_len, head_dim] in the inputs' dtype
// (d_q_global: q_global_rows rows). Every gradient is overwritten in full (zeros where
// nothing flows: padding, rows with no allowed key). The global ones are given exactly
// when the inputs have separate global projections; without them the global rows'
// gradients go to d_q, d_k, d_v.
struct AttentionGradients {
  const void* d_out = nullptr;
  void* d_q = nullptr;
  void* d_k = nullptr;
  void* d_v = nullptr;
  void* d_q_global = nullptr;
  void* d_k_global = nullptr;
  void* d_v_global = nullptr;
  Strides d_out_strides, d_q_strides, d_k_strides, d_v_strides, d_q_global_strides, d_k_global_strides,
      d_v_global_strides;
};

// Which pass a question about kernels concerns (SparseAttention::cuda_kernel_path).
enum class AttentionPass { forward, backward };

class SparseAttention {
 public:
  SparseAttention(int seq_len, int num_heads, int head_dim, Pattern pattern);
  ~SparseAttention();
  SparseAttention(const SparseAttention&) = delete;
  SparseAttention& operator=(const SparseAttention&) = delete;

  int seq_len() const;
  int num_heads() const;
  int head_dim() const;
  const Pattern& pattern() const;
  // Attended (query, key) pairs per head over the whole sequence without padding or
  // global positions: for reporting useful FLOPs.
  int64_t local_pairs() const;

  // Float32, multithreaded (OpenMP); memory O(n * (2w + 1 + g)) per head at most.
  void run_cpu(const AttentionInputs& in) const;
  // Gradients on the CPU, float32: `in` as given to run_cpu, with the out and lse it
  // wrote. Multithreaded over (sequence, head); scratch O(64 * head_dim) per thread.
  void backward_cpu(const AttentionInputs& in, const AttentionGradients& grad) const;

  // f16/bf16, asynchronous on `cuda_stream` (a cudaStream_t; nullptr = default
  // stream). `workspace` of `workspace_bytes` (at least cuda_workspace_bytes(batch,
  // max_global), checked), or nullptr: taken stream-ordered from the CUDA pool. Every
  // pointer 16-byte aligned (the kernels copy 16 bytes at a time); batch and num_heads
  // at most 65535 (grid dimensions). After a first call on a device nothing is
  // allocated or configured per call, so calls may be captured in a CUDA graph (with an
  // explicit workspace).
  void run_cuda(const AttentionInputs& in, void* cuda_stream = nullptr, void* workspace = nullptr,
                std::size_t workspace_bytes = 0) const;
  std::size_t cuda_workspace_bytes(int batch, int max_global) const;
  // Gradients on CUDA: `in` as given to run_cuda, with the out and lse it wrote (lse
  // float32, 16-byte aligned), and `grad` in the inputs' dtype. Deterministic (no
  // atomics: reruns are bit-identical); asynchronous on `cuda_stream`; the workspace as
  // for run_cuda, at least cuda_backward_workspace_bytes(batch, max_global). A sequence
  // with more globals than max_global (or a bad valid length) gets NaN gradients.
  void backward_cuda(const AttentionInputs& in, const AttentionGradients& grad, void* cuda_stream = nullptr,
                     void* workspace = nullptr, std::size_t workspace_bytes = 0) const;
  std::size_t cuda_backward_workspace_bytes(int batch, int max_global) const;

  // True when this build has CUDA kernels and a device is usable.
  static bool cuda_available();
  // The kernels run_cuda (forward) or backward_cuda (backward) takes for the window/layout
  // + global rows on the current device: "wgmma" (Hopper's warpgroup MMA: compute
  // capability 9.0, head dim 64, a build with the sm_90a units; both passes' default
  // there), "mma.sync" (every other case, and where a variable says mma.sync:
  // LDQA_ATTENTION_KERNEL for both passes, LDQA_ATTENTION_BACKWARD_KERNEL for the
  // backward alone), or "none" without CUDA. Either variable
  // set to anything but default, wgmma or mma.sync throws ldqa::Error naming it (here
  // and at run_cuda / backward_cuda).
  const char* cuda_kernel_path(AttentionPass pass = AttentionPass::forward) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ldqa::attention
