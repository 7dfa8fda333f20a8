// Float64 dense masked attention: the definition in attention.hpp written out as
// plainly as possible, independent of the tile plan, for checking every backend.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attention/attention.hpp"

namespace ldqa::test {

struct AttentionCase {
  int batch = 1, heads = 1, seq_len = 1, head_dim = 16;
  attention::Pattern pattern;
  bool separate_global = false;
  std::vector<uint8_t> global_mask;    // [batch * n] or empty
  std::vector<int32_t> valid_lengths;  // [batch] or empty
  std::vector<uint8_t> key_mask;       // [batch * n] or empty
  // Inputs, exactly as the backend sees them (already rounded for 16-bit runs).
  std::vector<double> q, k, v, qg, kg, vg;
  double scale = 0;  // 0: 1/sqrt(head_dim)
  std::string describe() const;
};

// A case of this shape (and one-sided window), everything else as declared above.
inline AttentionCase case_of_shape(int batch, int heads, int seq_len, int head_dim, int window = 0) {
  AttentionCase c;
  c.batch = batch;
  c.heads = heads;
  c.seq_len = seq_len;
  c.head_dim = head_dim;
  c.pattern.window = window;
  return c;
}

struct ReferenceResult {
  std::vector<double> out;  // [batch, heads, n, head_dim]
  std::vector<double> lse;  // [batch, heads, n]: log-sum-exp of the row's kept scaled scores; -inf: none
  // Rows whose top-k selection is decided by a gap below rounding: the k-th and the
  // (k+1)-th score lie within `tie_tolerance`; any backend may pick either key.
  std::vector<uint8_t> ambiguous;  // [batch * heads * n]
  int ambiguous_rows = 0;
};

ReferenceResult reference_attention(const AttentionCase& c, double tie_tolerance = 1e-4);

// Whether position i of sequence b is a real token (not padding), as attention.hpp defines it.
bool is_valid(const AttentionCase& c, int b, int i);

// Nonzero values at padding positions over [batch, heads, n, head_dim] tensors (empty ones
// skipped): a backward must give padding exactly nothing.
template <typename T>
int64_t padding_nonzeros(const AttentionCase& c, std::initializer_list<const std::vector<T>*> tensors) {
  int64_t count = 0;
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.heads; ++h)
      for (int i = 0; i < c.seq_len; ++i) {
        if (is_valid(c, b, i)) continue;
        const std::size_t at = ((static_cast<std::size_t>(b) * c.heads + h) * c.seq_len + i) * c.head_dim;
        for (const auto* x : tensors)
          if (!x->empty())
            for (int e = 0; e < c.head_dim; ++e) count += (*x)[at + static_cast<std::size_t>(e)] != T(0);
      }
  return count;
}

// The case's tensors in float32 and the AttentionInputs over them (run_cpu, backward_cpu);
// the outputs are the caller's. The case must outlive it.
struct Float32Case {
  explicit Float32Case(const AttentionCase& c);
  attention::AttentionInputs inputs(float* out, float* lse = nullptr) const;
  const AttentionCase& c;
  std::vector<float> q, k, v, qg, kg, vg;
};

// Gradients of sum(out * d_out) with respect to every input, [batch, heads, n, head_dim]
// each; the global ones only with separate_global (otherwise they are in dq, dk, dv).
// Top-k has no backward. stored_out, when given, is the output the backward under test
// read for delta = sum(d_out * out): a 16-bit kernel reads its own rounded output (as
// FlashAttention's does), and where a row attends to two or three keys dP - delta
// cancels, so that rounding alone moves dS by several percent; the reference then
// takes the same delta (the forward's output is checked on its own).
struct ReferenceGrads {
  std::vector<double> dq, dk, dv, dqg, dkg, dvg;
};
ReferenceGrads reference_attention_backward(const AttentionCase& c, const std::vector<double>& d_out,
                                            const std::vector<double>* stored_out = nullptr);

// Named global sets from the test grid: "none", "first", "first17", "scattered17", "all".
std::vector<uint8_t> make_global_set(const std::string& kind, int batch, int n, std::mt19937_64& rng);
// Named padding: "none", "lengths" (random per sequence, at least 1), "mask" (random holes).
void make_padding(const std::string& kind, AttentionCase& c, std::mt19937_64& rng);
// Random inputs in [-2, 2), never zero; round() is applied to every value (identity
// for float32 runs, a round trip through fp16/bf16 for 16-bit runs).
void fill_inputs(AttentionCase& c, std::mt19937_64& rng, double (*round)(double));

struct Comparison {
  double relative_error = 0;  // ||out - ref|| / ||ref|| over compared rows
  int64_t nan_count = 0;      // NaN/Inf in compared or zero-expected rows
  int64_t compared_rows = 0;
};
// out: the backend's result as doubles; rows flagged ambiguous are skipped.
Comparison compare(const std::vector<double>& out, const ReferenceResult& ref, int head_dim);

// The four DeepSpeed-style layouts the tests use (kind 0 Fixed, 1 Variable, 2 BigBird,
// 3 BSLongformer), with settings that give global rows, random blocks and odd windows.
std::shared_ptr<const attention::BlockLayout> make_test_layout(int kind, int n, int block, int heads, uint64_t seed);

}  // namespace ldqa::test
