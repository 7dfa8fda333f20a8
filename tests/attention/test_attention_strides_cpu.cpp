// Strided tensors on the CPU: every input and output of the forward and the backward
// placed in a larger, NaN-poisoned buffer (a [batch, n, heads, d] buffer, a column block
// of a fused q/k/v projection, padded rows), against the same call on contiguous copies
// (itself checked against the float64 reference); nothing outside a view may be written.
// And the strides the library must refuse.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "support/attention_grid.hpp"
#include "support/strided.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;

namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// How many of the first `count` values of a and b differ in their bits.
int64_t bits_differ(const std::vector<float>& a, const std::vector<float>& b, std::size_t count) {
  int64_t differ = 0;
  for (std::size_t x = 0; x < count; ++x) differ += !same_bits(a[x], b[x]);
  return differ;
}

double as_float32(double x) { return static_cast<double>(static_cast<float>(x)); }

// Every tensor of a call, contiguous (the reference run) or through its view.
struct Run {
  std::map<std::string, std::vector<float>> t;  // by name: out, lse, dq, ...
};

const char* const kOutputs[] = {"out", "dq", "dk", "dv", "dqg", "dkg", "dvg"};

// One forward (+ backward without top-k) of case c; with `views`, every tensor lives in
// its own poisoned buffer (q, k and v in one shared fused buffer when their views are
// fused0..2), and what comes back is gathered out of the views.
Run run_case(const test::AttentionCase& c, const std::vector<double>& d_out,
             const std::map<std::string, test::StridedView>* views, int64_t* written_outside) {
  const test::Float32Case f(c);
  const std::size_t size = c.q.size();
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const bool backward = c.pattern.top_k == 0;
  std::map<std::string, std::vector<float>> buffers;
  std::map<std::string, Strides> strides;
  auto view_of = [&](const std::string& name) -> const test::StridedView* {
    return views == nullptr ? nullptr : &views->at(name);
  };
  // An input: placed into its view's buffer ("qkv" for the fused q, k, v).
  auto input = [&](const std::string& name, const std::vector<float>& contiguous) -> const float* {
    const test::StridedView* v = view_of(name);
    if (v == nullptr) return contiguous.data();
    const std::string key = v->kind.rfind("fused", 0) == 0 && name.size() == 1 ? "qkv" : name;
    auto& buf = buffers[key];
    if (buf.empty()) buf.assign(v->elements, kPoison);
    test::place(buf, *v, contiguous);
    strides[name] = v->strides;
    return buf.data() + v->offset;
  };
  auto output = [&](const std::string& name) -> float* {
    const test::StridedView* v = view_of(name);
    auto& buf = buffers[name];
    buf.assign(v == nullptr ? size : v->elements, kPoison);
    if (v == nullptr) return buf.data();
    strides[name] = v->strides;
    return buf.data() + v->offset;
  };
  const std::vector<float> dO(d_out.begin(), d_out.end());
  std::vector<float> lse(static_cast<std::size_t>(c.batch) * c.heads * c.seq_len, kPoison);
  AttentionInputs in = f.inputs(nullptr, backward ? lse.data() : nullptr);
  in.q = input("q", f.q);
  in.k = input("k", f.k);
  in.v = input("v", f.v);
  if (c.separate_global) {
    in.q_global = input("qg", f.qg);
    in.k_global = input("kg", f.kg);
    in.v_global = input("vg", f.vg);
  }
  in.out = output("out");
  test::set_strides(in, strides);
  attn.run_cpu(in);
  if (backward) {
    AttentionGradients g;
    g.d_out = input("d_out", dO);
    g.d_q = output("dq");
    g.d_k = output("dk");
    g.d_v = output("dv");
    if (c.separate_global) {
      g.d_q_global = output("dqg");
      g.d_k_global = output("dkg");
      g.d_v_global = output("dvg");
    }
    test::set_strides(g, strides);
    attn.backward_cpu(in, g);
  }
  Run r;
  r.t["lse"] = lse;
  for (const char* name : kOutputs) {
    if (!buffers.count(name)) continue;
    const test::StridedView* v = view_of(name);
    r.t[name] = v == nullptr ? buffers[name] : test::gather(buffers[name], *v);
    if (v != nullptr) *written_outside += test::changed_outside(buffers[name], *v, kPoison, same_bits);
  }
  return r;
}

}  // namespace

TEST_CASE("cpu attention reads and writes strided views", "[attention][cpu][strides]") {
  std::mt19937_64 rng(test::test_seed() + 30);
  int index = 0;
  for (const char* shape : {"window+global", "separate globals", "layout", "top-k"}) {
    const std::string s = shape;
    auto c = test::strided_case(s, ++index, 257, s == "layout" ? 16 : 32, rng);
    test::fill_inputs(c, rng, as_float32);
    std::vector<double> d_out(c.q.size());
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (auto& x : d_out) x = as_float32(dist(rng)) + 1e-3;
    int64_t unused = 0;
    const Run plain = run_case(c, d_out, nullptr, &unused);
    // The contiguous run is the backend's own, checked against the float64 reference here
    // too, so that agreement below is not agreement with a broken run.
    const auto ref = test::reference_attention(c);
    const auto cmp =
        test::compare(std::vector<double>(plain.t.at("out").begin(), plain.t.at("out").end()), ref, c.head_dim);
    INFO(shape << ": " << c.describe() << " seed=" << test::test_seed());
    REQUIRE(cmp.nan_count == 0);
    REQUIRE(cmp.relative_error < 2e-6);
    for (int round = 0; round < 2; ++round) {
      const auto views = test::strided_views(round, c, /*align=*/3);
      int64_t outside = 0;
      const Run strided = run_case(c, d_out, &views, &outside);
      INFO("round " << round);
      CHECK(outside == 0);
      for (const auto& [name, values] : plain.t) {
        INFO(name);
        REQUIRE(strided.t.count(name) == 1);
        const auto& got = strided.t.at(name);
        REQUIRE(got.size() == values.size());
        CHECK(bits_differ(got, values, values.size()) == 0);  // the same arithmetic in the same order
      }
    }
  }
}

TEST_CASE("strides the library refuses", "[attention][errors][strides]") {
  const int n = 8, heads = 2, d = 32;
  std::vector<float> x(static_cast<std::size_t>(2) * heads * n * d, 1.25f), out(x.size()), lse(2 * heads * n);
  SparseAttention attn(n, heads, d, Pattern{2, nullptr, 0});
  AttentionInputs in;
  in.batch = 2;
  in.q = in.k = in.v = x.data();
  in.out = out.data();
  // Rows of the output written over each other: row stride below head_dim.
  in.out_strides = {heads * n * d, n * d, d - 1};
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("out") && Catch::Contains("overlapping"));
  // Two heads at one place.
  in.out_strides = {heads * n * d, 0, d};
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("overlapping"));
  // A head stride shorter than the rows it holds.
  in.out_strides = {heads * n * d, d, d};
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("overlapping"));
  // An input may repeat (a zero stride), an output may be [batch, n, heads, d].
  in.k_strides = {0, n * d, d};
  in.out_strides = {n * heads * d, d, heads * d};
  CHECK_NOTHROW(attn.run_cpu(in));
  in.q_strides = {heads * n * d, n * d, -d};
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("q") && Catch::Contains("negative"));
  in.q_strides = {};
  // The backward's outputs are checked alike.
  in.lse = lse.data();
  AttentionGradients g;
  std::vector<float> grads(x.size() * 3);
  g.d_out = x.data();
  g.d_q = grads.data();
  g.d_k = grads.data() + x.size();
  g.d_v = grads.data() + 2 * x.size();
  g.d_k_strides = {heads * n * d, n * d, d / 2};
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("d_k") && Catch::Contains("overlapping"));
  g.d_k_strides = {};
  // CUDA copies rows 16 bytes at a time: a stride of an odd number of halves is refused
  // (the check comes before any device is touched, so it runs without one).
  std::vector<uint16_t> halves(x.size() * 2, 0x3c00);
  AttentionInputs h = in;
  h.dtype = DType::bf16;
  h.q = h.k = h.v = halves.data();
  h.out = halves.data() + x.size();
  h.lse = nullptr;
  h.k_strides = {heads * n * d, n * d, d + 4};
  h.out_strides = {};
  CHECK_THROWS_WITH(attn.run_cuda(h), Catch::Contains("k") && Catch::Contains("16 bytes"));
}

// The model's globals are a prefix, so it projects Q_g for those rows only: q_global (and
// d_q_global) of q_global_rows rows, contiguous with their own default strides. The same
// forward and backward, bit for bit, as with a full-length q_global; nothing written past
// d_q_global's rows; a global row beyond them refused.
TEST_CASE("cpu attention takes q_global of the global prefix's rows only", "[attention][cpu][strides]") {
  std::mt19937_64 rng(test::test_seed() + 31);
  auto c = test::strided_case("separate globals", 7, 203, 32, rng);
  const std::vector<int> prefix{17, 5, 11, 2};
  const int rows = 17;
  for (int b = 0; b < c.batch; ++b)
    for (int i = 0; i < c.seq_len; ++i)
      c.global_mask[static_cast<std::size_t>(b) * c.seq_len + i] = i < prefix[static_cast<std::size_t>(b) % 4];
  test::fill_inputs(c, rng, as_float32);
  std::vector<double> d_out(c.q.size());
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (auto& x : d_out) x = as_float32(dist(rng)) + 1e-3;
  INFO(c.describe() << " seed=" << test::test_seed());
  int64_t unused = 0;
  const Run full = run_case(c, d_out, nullptr, &unused);

  const test::Float32Case f(c);
  const SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const std::size_t per_head = static_cast<std::size_t>(c.seq_len) * c.head_dim;
  const std::size_t short_head = static_cast<std::size_t>(rows) * c.head_dim;
  const std::size_t heads = static_cast<std::size_t>(c.batch) * c.heads;
  // [batch, heads, rows, d] at the start of a full-length buffer, NaN after: a read
  // past its rows shows in the output.
  std::vector<float> qg_rows(c.q.size(), kPoison);
  for (std::size_t bh = 0; bh < heads; ++bh)
    std::copy_n(f.qg.begin() + static_cast<std::ptrdiff_t>(bh * per_head), short_head,
                qg_rows.begin() + static_cast<std::ptrdiff_t>(bh * short_head));
  std::vector<float> out(c.q.size(), kPoison), lse(heads * c.seq_len, kPoison);
  AttentionInputs in = f.inputs(out.data(), lse.data());
  in.q_global = qg_rows.data();
  in.q_global_rows = rows;
  attn.run_cpu(in);
  std::map<std::string, std::vector<float>> g;
  for (const char* name : {"dq", "dk", "dv", "dkg", "dvg"}) g[name].assign(c.q.size(), kPoison);
  // d_q_global's rows in a full-length buffer whose rest must stay poisoned: a write past
  // its rows fails a check rather than corrupting the heap.
  g["dqg"].assign(c.q.size(), kPoison);
  const std::vector<float> dO(d_out.begin(), d_out.end());
  AttentionGradients grads;
  grads.d_out = dO.data();
  grads.d_q = g["dq"].data();
  grads.d_k = g["dk"].data();
  grads.d_v = g["dv"].data();
  grads.d_q_global = g["dqg"].data();
  grads.d_k_global = g["dkg"].data();
  grads.d_v_global = g["dvg"].data();
  attn.backward_cpu(in, grads);

  CHECK(bits_differ(out, full.t.at("out"), out.size()) == 0);
  CHECK(bits_differ(lse, full.t.at("lse"), lse.size()) == 0);
  for (const char* name : {"dq", "dk", "dv", "dkg", "dvg"}) {
    INFO(name);
    CHECK(bits_differ(g[name], full.t.at(name), c.q.size()) == 0);
  }
  int64_t dqg_differ = 0, beyond_nonzero = 0, past_end = 0;
  const auto& full_dqg = full.t.at("dqg");
  for (std::size_t bh = 0; bh < heads; ++bh)
    for (std::size_t x = 0; x < per_head; ++x) {
      const float want = full_dqg[bh * per_head + x];
      if (x < short_head)
        dqg_differ += !same_bits(g["dqg"][bh * short_head + x], want);
      else
        beyond_nonzero += want != 0.0f;  // the full-length run's rows past the prefix: zeros
    }
  for (std::size_t x = heads * short_head; x < g["dqg"].size(); ++x) past_end += !std::isnan(g["dqg"][x]);
  CHECK(dqg_differ == 0);
  CHECK(beyond_nonzero == 0);
  CHECK(past_end == 0);

  // A real global row the short q_global does not hold; a padded one is no global.
  std::vector<uint8_t> mask = c.global_mask;
  in.global_mask = mask.data();
  int last = c.seq_len - 1;
  while (!test::is_valid(c, 0, last)) --last;
  REQUIRE(last >= rows);
  mask[static_cast<std::size_t>(last)] = 1;
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("q_global_rows") && Catch::Contains("sequence 0"));
  CHECK_THROWS_WITH(attn.backward_cpu(in, grads), Catch::Contains("q_global_rows"));
  mask = c.global_mask;
  in.q_global_rows = c.seq_len + 1;
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("q_global_rows") && Catch::Contains("outside"));
  in.q_global_rows = -1;
  CHECK_THROWS_WITH(attn.run_cpu(in), Catch::Contains("q_global_rows"));
  AttentionInputs no_globals = f.inputs(out.data());
  no_globals.q_global = no_globals.k_global = no_globals.v_global = nullptr;
  no_globals.q_global_rows = rows;
  CHECK_THROWS_WITH(attn.run_cpu(no_globals), Catch::Contains("without q_global"));
}
