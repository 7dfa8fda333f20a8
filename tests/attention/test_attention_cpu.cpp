// CPU backend against the float64 reference on the grid, fresh random inputs
// every run (LDQA_TEST_SEED reproduces one).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "reference.hpp"

using namespace ldqa;
using namespace ldqa::attention;

namespace {

double as_float32(double x) { return static_cast<double>(static_cast<float>(x)); }

std::vector<float> to_float(const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); }

test::Comparison run_cpu_case(const test::AttentionCase& c, const test::ReferenceResult& ref) {
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const auto q = to_float(c.q), k = to_float(c.k), v = to_float(c.v);
  const auto qg = to_float(c.qg), kg = to_float(c.kg), vg = to_float(c.vg);
  std::vector<float> out(c.q.size(), std::numeric_limits<float>::quiet_NaN());  // poison
  AttentionInputs in;
  in.batch = c.batch;
  in.q = q.data();
  in.k = k.data();
  in.v = v.data();
  if (c.separate_global) {
    in.q_global = qg.data();
    in.k_global = kg.data();
    in.v_global = vg.data();
  }
  in.global_mask = c.global_mask.empty() ? nullptr : c.global_mask.data();
  in.valid_lengths = c.valid_lengths.empty() ? nullptr : c.valid_lengths.data();
  in.key_mask = c.key_mask.empty() ? nullptr : c.key_mask.data();
  in.out = out.data();
  in.scale = static_cast<float>(c.scale);
  attn.run_cpu(in);
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

const std::vector<int> kLengths = {1, 2, 7, 63, 64, 65, 257, 1000, 4099};
const std::vector<std::string> kGlobalSets = {"none", "first", "first17", "scattered17", "all"};
const std::vector<std::string> kPaddings = {"none", "lengths", "mask"};

std::vector<int> windows_for(int n) { return {0, 1, 3, 64, 256, n + 5}; }

}  // namespace

TEST_CASE("cpu window+global attention matches the float64 reference", "[attention][cpu]") {
  std::mt19937_64 rng(test::test_seed());
  for (int n : kLengths) {
    // The whole grid below 1000 positions; for the long ones a fresh random sample of
    // it each run, plus the heaviest corner (every position global, holes, separate
    // projections) always.
    const bool sample = n >= 1000;
    int case_index = 0;
    for (int w : windows_for(n))
      for (const auto& globals : kGlobalSets)
        for (const auto& padding : kPaddings)
          for (bool separate : {false, true}) {
            ++case_index;
            const bool corner = globals == "all" && padding == "mask" && separate && w == 256;
            if (sample && !corner && rng() % (n >= 4000 ? 45 : 12) != 0) continue;
            test::AttentionCase c;
            c.batch = 2;
            c.heads = 2;
            c.seq_len = n;
            c.head_dim = (case_index % 3 == 0) ? 64 : 16;
            c.pattern.window = w;
            c.separate_global = separate;
            c.global_mask = test::make_global_set(globals, c.batch, n, rng);
            test::make_padding(padding, c, rng);
            if (case_index % 7 == 0) c.scale = 0.3;
            check_case(c, rng);
          }
  }
}

TEST_CASE("cpu block-sparse layouts match the float64 reference", "[attention][cpu][layout]") {
  std::mt19937_64 rng(test::test_seed() + 1);
  for (int n : {63, 257, 1000})
    for (int block : {16, 64, 128})
      for (int kind = 0; kind < 4; ++kind)
        for (int w : {-1, 3})
          for (const char* globals : {"none", "scattered17"})
            for (const char* padding : {"none", "mask"}) {
              if (n == 1000 && rng() % 4 != 0) continue;
              test::AttentionCase c;
              c.batch = 2;
              c.heads = 3;
              c.seq_len = n;
              c.head_dim = 16;
              c.pattern.window = w;
              const uint64_t seed = rng();
              c.pattern.layout = test::make_test_layout(kind, n, block, c.heads, seed);
              c.separate_global = kind % 2 == 1;
              c.global_mask = test::make_global_set(globals, c.batch, n, rng);
              test::make_padding(padding, c, rng);
              check_case(c, rng);
            }
}

TEST_CASE("cpu top-k attention is exact", "[attention][cpu][topk]") {
  std::mt19937_64 rng(test::test_seed() + 2);
  for (int n : {7, 65, 257, 1000})
    for (int top_k : {1, 8, n})
      for (int w : {0, 3, 64})
        for (const char* globals : {"none", "first17", "scattered17"})
          for (bool with_layout : {false, true}) {
            if (n == 1000 && rng() % 5 != 0) continue;
            test::AttentionCase c;
            c.batch = 2;
            c.heads = 2;
            c.seq_len = n;
            c.head_dim = 32;
            c.pattern.window = w;
            c.pattern.top_k = top_k;
            if (with_layout) {
              BigBirdLayoutConfig cfg;
              c.pattern.layout = std::make_shared<BlockLayout>(make_bigbird_layout(n, 16, c.heads, cfg, rng(), true));
            }
            c.separate_global = true;
            c.global_mask = test::make_global_set(globals, c.batch, n, rng);
            test::make_padding(rng() % 2 ? "mask" : "lengths", c, rng);
            check_case(c, rng);
          }
}

TEST_CASE("top-k with k >= every candidate equals plain attention", "[attention][cpu][topk]") {
  std::mt19937_64 rng(test::test_seed() + 3);
  test::AttentionCase c;
  c.batch = 1;
  c.heads = 2;
  c.seq_len = 300;
  c.head_dim = 16;
  c.pattern.window = 5;
  c.global_mask = test::make_global_set("scattered17", 1, c.seq_len, rng);
  test::fill_inputs(c, rng, as_float32);
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
  test::AttentionCase c;
  c.batch = 1;
  c.heads = 1;
  c.seq_len = 96;
  c.head_dim = 8;
  c.pattern.window = -1;  // only the layout: block 1 sees nothing
  c.pattern.layout = std::make_shared<BlockLayout>(32, std::vector<std::vector<std::vector<int>>>{{{0}, {}, {0, 2}}});
  test::fill_inputs(c, rng, as_float32);
  const auto ref = test::reference_attention(c);
  const auto cmp = run_cpu_case(c, ref);
  CHECK(cmp.nan_count == 0);
  CHECK(cmp.relative_error < 2e-6);
  for (int i = 32; i < 64; ++i) CHECK(ref.out[static_cast<std::size_t>(i) * 8] == 0.0);
}

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
