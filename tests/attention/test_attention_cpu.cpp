// CPU backend against the float64 reference on the grid, fresh random inputs
// every run (LDQA_TEST_SEED reproduces one).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "support/attention_grid.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;

namespace {

double as_float32(double x) { return static_cast<double>(static_cast<float>(x)); }

test::Comparison run_cpu_case(const test::AttentionCase& c, const test::ReferenceResult& ref) {
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const test::Float32Case tensors(c);
  std::vector<float> out(c.q.size(), std::numeric_limits<float>::quiet_NaN());  // poison
  attn.run_cpu(tensors.inputs(out.data()));
  return test::compare(std::vector<double>(out.begin(), out.end()), ref, c.head_dim);
}

void check_case(test::AttentionCase& c, std::mt19937_64& rng) {
  test::fill_inputs(c, rng, as_float32);
  const auto ref = test::reference_attention(c);
  const auto cmp = run_cpu_case(c, ref);
  INFO(c.describe() << " seed=" << test::test_seed());
  CHECK(cmp.nan_count == 0);
  CHECK(cmp.relative_error < 2e-6);
  // Top-k rows left out for a near-tie must stay rare, or the check proves nothing.
  CHECK(ref.ambiguous_rows * 50 <= static_cast<int64_t>(ref.ambiguous.size()) + 50);
}

// One sequence of 300, two heads of 16, window 5, 17 scattered globals, filled.
test::AttentionCase scattered_globals_case(std::mt19937_64& rng) {
  auto c = test::case_of_shape(1, 2, 300, 16, 5);
  c.global_mask = test::make_global_set("scattered17", 1, c.seq_len, rng);
  test::fill_inputs(c, rng, as_float32);
  return c;
}

}  // namespace

TEST_CASE("cpu window+global attention matches the float64 reference", "[attention][cpu]") {
  std::mt19937_64 rng(test::test_seed());
  test::sweep_window_global(rng, 12, 45, [&](const test::GridPoint& p) {
    auto c = test::make_case(p, p.index % 3 == 0 ? 64 : 16, rng);
    check_case(c, rng);
  });
}

TEST_CASE("cpu block-sparse layouts match the float64 reference", "[attention][cpu][layout]") {
  std::mt19937_64 rng(test::test_seed() + 1);
  test::sweep_layouts(rng, 4, [&](test::GridPoint p) {
    for (const char* padding : {"none", "mask"}) {
      p.padding = padding;
      auto c = test::make_case(p, 16, rng);
      check_case(c, rng);
    }
  });
}

TEST_CASE("cpu top-k attention is exact", "[attention][cpu][topk]") {
  std::mt19937_64 rng(test::test_seed() + 2);
  test::sweep_topk(rng, 5, [&](const test::GridPoint& p) {
    auto c = test::make_case(p, 32, rng);
    check_case(c, rng);
  });
}

TEST_CASE("top-k with k >= every candidate equals plain attention", "[attention][cpu][topk]") {
  std::mt19937_64 rng(test::test_seed() + 3);
  auto c = scattered_globals_case(rng);
  const auto plain = test::reference_attention(c);
  c.pattern.top_k = c.seq_len;
  const auto topk = run_cpu_case(c, plain);
  CHECK(topk.relative_error < 2e-6);
  // and a small k really changes the result (the test could otherwise not fail)
  c.pattern.top_k = 2;
  const auto small_k = run_cpu_case(c, plain);
  CHECK(small_k.relative_error > 1e-2);
}

TEST_CASE("rows with no allowed key are zero, not NaN", "[attention][cpu]") {
  std::mt19937_64 rng(test::test_seed() + 4);
  auto c = test::case_of_shape(1, 1, 96, 8);
  c.pattern.window = -1;  // only the layout: block 1 sees nothing
  c.pattern.layout = std::make_shared<BlockLayout>(32, std::vector<std::vector<std::vector<int>>>{{{0}, {}, {0, 2}}});
  test::fill_inputs(c, rng, as_float32);
  const auto ref = test::reference_attention(c);
  const auto cmp = run_cpu_case(c, ref);
  CHECK(cmp.nan_count == 0);
  CHECK(cmp.relative_error < 2e-6);
  for (int i = 32; i < 64; ++i) CHECK(ref.out[static_cast<std::size_t>(i) * 8] == 0.0);
}

#if defined(__SSE__) || defined(__x86_64__)
// The forward flushes denormals on its threads (cpu_common.hpp's FlushDenormals: masked
// scores made denormal weights that slowed it ~10x) and gives the calling thread its
// floating-point mode back, with or without flushing: the library must not change what a
// caller's own arithmetic does. The result does not depend on the caller's mode either.
TEST_CASE("the cpu forward leaves the caller's denormal mode as it found it", "[attention][cpu]") {
  std::mt19937_64 rng(test::test_seed() + 5);
  const auto c = scattered_globals_case(rng);
  const auto ref = test::reference_attention(c);
  const SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const test::Float32Case tensors(c);
  constexpr unsigned kFlushBits = 0x8040;  // MXCSR: flush-to-zero, denormals-are-zero
  const unsigned saved = _mm_getcsr();
  std::vector<std::vector<float>> outs;
  for (const unsigned mode : {saved & ~kFlushBits, saved | kFlushBits}) {
    std::vector<float> out(c.q.size(), std::numeric_limits<float>::quiet_NaN());  // poison
    _mm_setcsr(mode);
    attn.run_cpu(tensors.inputs(out.data()));
    const unsigned after = _mm_getcsr();
    _mm_setcsr(saved);
    constexpr unsigned kStatusBits = 0x3F;  // the sticky exception flags: status, not mode
    CHECK((after & ~kStatusBits) == (mode & ~kStatusBits));
    const auto cmp = test::compare(std::vector<double>(out.begin(), out.end()), ref, c.head_dim);
    CHECK(cmp.nan_count == 0);
    CHECK(cmp.relative_error < 2e-6);
    outs.push_back(std::move(out));
  }
  CHECK(outs[0] == outs[1]);
}
#endif

TEST_CASE("invalid arguments throw ldqa::Error naming the value", "[attention][errors]") {
  CHECK_THROWS_WITH(SparseAttention(0, 1, 16, {}), Catch::Contains("seq_len must be >= 1, got 0"));
  CHECK_THROWS_WITH(SparseAttention(10, 1, 16, Pattern{-2, nullptr, 0}), Catch::Contains("got -2"));
  CHECK_THROWS_WITH(SparseAttention(10, 1, 16, Pattern{1, nullptr, -1}), Catch::Contains("top_k"));
  auto wrong_blocks = std::make_shared<BlockLayout>(make_bslongformer_layout(100, 16, 1, {}));
  CHECK_THROWS_WITH(SparseAttention(200, 1, 16, Pattern{1, wrong_blocks, 0}), Catch::Contains("seq_len 200"));
  auto per_head = std::make_shared<BlockLayout>(make_bigbird_layout(100, 16, 3, {}, 7, true));
  CHECK_THROWS_WITH(SparseAttention(100, 2, 16, Pattern{1, per_head, 0}), Catch::Contains("3 heads"));
  CHECK_THROWS_AS(make_bigbird_layout(100, 12, 1, {}, 1, false), ldqa::Error);

  SparseAttention attn(10, 1, 16, {});
  std::vector<float> x(160, 1.5f), out(160);
  std::vector<int32_t> lengths = {11};
  AttentionInputs in;
  in.batch = 1;
  in.q = in.k = in.v = x.data();
  in.out = out.data();
  in.valid_lengths = lengths.data();
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("valid_lengths[0] = 11"));
  in.valid_lengths = nullptr;
  in.dtype = DType::f16;
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("f32"));
  in.dtype = DType::f32;
  in.k = nullptr;
  CHECK_THROWS_AS(attn.run_cpu(in), ldqa::Error);
  if (!SparseAttention::cuda_available()) {
    in.k = x.data();
    CHECK_THROWS_AS(attn.run_cuda(in), ldqa::Error);
  }
}

TEST_CASE("run_cuda refuses misaligned tensors and grids beyond CUDA's limits before any launch",
          "[attention][errors]") {
  // Checked before the backend: the same errors with or without a GPU.
  SparseAttention attn(64, 2, 64, {});
  alignas(16) static uint16_t buffer[2 * 64 * 64 + 8];
  AttentionInputs in;
  in.batch = 1;
  in.dtype = DType::bf16;
  in.q = in.k = in.v = in.out = buffer;
  in.k = buffer + 1;  // a view 2 bytes in: cp.async would fault
  CHECK_THROWS_WITH(attn.run_cuda(in), Catch::Contains("16-byte aligned tensors; k is at an address ending in 2"));
  in.k = buffer;
  in.out = buffer + 4;
  CHECK_THROWS_WITH(attn.run_cuda(in), Catch::Contains("out is at an address ending in 8"));
  in.out = buffer;
  in.batch = 65536;
  CHECK_THROWS_WITH(attn.run_cuda(in), Catch::Contains("at most 65535 sequences"));
  SparseAttention many_heads(8, 70000, 32, {});
  in.batch = 1;
  CHECK_THROWS_WITH(many_heads.run_cuda(in), Catch::Contains("at most 65535 heads"));
}
