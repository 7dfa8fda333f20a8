// The backward: the float64 reference gradient against finite differences of the
// float64 reference forward, then the CPU backward (and the forward's lse) against the
// reference on the same grids as the forward, fresh random inputs every run
// (LDQA_TEST_SEED reproduces one), gradients poisoned before every call.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <tuple>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"
#include "support/attention_grid.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;

namespace {

double as_float32(double x) { return static_cast<double>(static_cast<float>(x)); }

std::vector<double> random_like(std::size_t count, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> x(count);
  for (auto& value : x) do
      value = as_float32(dist(rng));
    while (value == 0.0);
  return x;
}

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
}

// A gradient agrees when its relative error is small or, where the true gradient is
// itself (near) zero (a window of 0: every row attends to itself alone, dS = 0 up to
// float32 rounding), when its root-mean-square error is below float32 rounding of the
// terms that cancel.
bool gradient_close(const std::vector<float>& got, const std::vector<double>& want) {
  const double rel = relative_error(got, want);
  double sq = 0;
  for (std::size_t i = 0; i < want.size(); ++i) sq += (got[i] - want[i]) * (got[i] - want[i]);
  const double rms = want.empty() ? 0 : std::sqrt(sq / static_cast<double>(want.size()));
  UNSCOPED_INFO("relative error " << rel << ", rms error " << rms);
  return std::isfinite(rel) && (rel < 2e-5 || rms < 1e-6);
}

struct CpuGrads {
  std::vector<float> out, lse, dq, dk, dv, dqg, dkg, dvg;
};

// Forward with lse, then backward, every output poisoned first.
CpuGrads run_forward_backward(const test::AttentionCase& c, const std::vector<double>& d_out) {
  const test::Float32Case tensors(c);
  const std::vector<float> dO(d_out.begin(), d_out.end());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CpuGrads r;
  r.out.assign(c.q.size(), nan);
  r.lse.assign(static_cast<std::size_t>(c.batch) * c.heads * c.seq_len, nan);
  for (auto* x : {&r.dq, &r.dk, &r.dv}) x->assign(c.q.size(), nan);
  if (c.separate_global)
    for (auto* x : {&r.dqg, &r.dkg, &r.dvg}) x->assign(c.q.size(), nan);
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const AttentionInputs in = tensors.inputs(r.out.data(), r.lse.data());
  attn.run_cpu(in);
  AttentionGradients grads;
  grads.d_out = dO.data();
  grads.d_q = r.dq.data();
  grads.d_k = r.dk.data();
  grads.d_v = r.dv.data();
  grads.d_q_global = c.separate_global ? r.dqg.data() : nullptr;
  grads.d_k_global = c.separate_global ? r.dkg.data() : nullptr;
  grads.d_v_global = c.separate_global ? r.dvg.data() : nullptr;
  attn.backward_cpu(in, grads);
  return r;
}

void check_backward(test::AttentionCase& c, std::mt19937_64& rng) {
  test::fill_inputs(c, rng, as_float32);
  const auto d_out = random_like(c.q.size(), rng);
  const auto ref = test::reference_attention(c);
  const auto want = test::reference_attention_backward(c, d_out);
  const auto got = run_forward_backward(c, d_out);
  INFO(c.describe() << " seed=" << test::test_seed());
  CHECK(relative_error(got.out, ref.out) < 2e-6);
  // lse: equal where finite, -inf exactly where the reference has none
  int64_t lse_mismatch = 0;
  for (std::size_t row = 0; row < ref.lse.size(); ++row)
    if (std::isfinite(ref.lse[row]) ? !(std::abs(got.lse[row] - ref.lse[row]) <= 1e-5 * (1 + std::abs(ref.lse[row])))
                                    : got.lse[row] != -std::numeric_limits<float>::infinity())
      ++lse_mismatch;
  CHECK(lse_mismatch == 0);
  CHECK(gradient_close(got.dq, want.dq));
  CHECK(gradient_close(got.dk, want.dk));
  CHECK(gradient_close(got.dv, want.dv));
  if (c.separate_global) {
    CHECK(gradient_close(got.dqg, want.dqg));
    CHECK(gradient_close(got.dkg, want.dkg));
    CHECK(gradient_close(got.dvg, want.dvg));
  }
  // Padding gets exactly nothing: no query gradient, no key or value gradient.
  CHECK(test::padding_nonzeros(c, {&got.dq, &got.dk, &got.dv, &got.dqg, &got.dkg, &got.dvg}) == 0);
}

// sum(reference_out * d_out) for finite differences.
double objective(const test::AttentionCase& c, const std::vector<double>& d_out) {
  const auto ref = test::reference_attention(c);
  double total = 0;
  for (std::size_t i = 0; i < d_out.size(); ++i) total += ref.out[i] * d_out[i];
  return total;
}

}  // namespace

TEST_CASE("the float64 reference gradient matches finite differences", "[attention][cpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 10);
  for (int variant = 0; variant < 4; ++variant) {
    auto c = test::case_of_shape(2, 2, variant < 2 ? 11 : 40, 4, 2);
    c.separate_global = variant % 2 == 1;
    if (variant >= 2) c.pattern.layout = test::make_test_layout(2, c.seq_len, 8, c.heads, rng());
    c.global_mask = test::make_global_set("scattered17", c.batch, c.seq_len, rng);
    if (variant < 2) c.global_mask = test::make_global_set("first", c.batch, c.seq_len, rng);
    test::make_padding(variant == 1 ? "lengths" : "mask", c, rng);
    c.scale = variant == 3 ? 0.4 : 0.0;
    test::fill_inputs(c, rng, [](double x) { return x; });
    const auto d_out = random_like(c.q.size(), rng);
    const auto grads = test::reference_attention_backward(c, d_out);
    const std::tuple<const char*, std::vector<double>*, const std::vector<double>*> inputs[] = {
        {"q", &c.q, &grads.dq},    {"k", &c.k, &grads.dk},    {"v", &c.v, &grads.dv},
        {"qg", &c.qg, &grads.dqg}, {"kg", &c.kg, &grads.dkg}, {"vg", &c.vg, &grads.dvg}};
    int checked = 0;
    for (const auto& [name, x, dx] : inputs) {
      if (x->empty()) continue;
      for (int probe = 0; probe < 40; ++probe) {
        const std::size_t at = rng() % x->size();
        const double saved = (*x)[at], eps = 1e-6;
        (*x)[at] = saved + eps;
        const double up = objective(c, d_out);
        (*x)[at] = saved - eps;
        const double down = objective(c, d_out);
        (*x)[at] = saved;
        const double numeric = (up - down) / (2 * eps);
        INFO(c.describe() << " d" << name << " at " << at);
        CHECK(std::abs(numeric - (*dx)[at]) <= 1e-6 * (1 + std::abs(numeric)));
        ++checked;
      }
    }
    CHECK(checked >= 120);
  }
}

TEST_CASE("cpu window+global backward matches the float64 reference gradient", "[attention][cpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 11);
  test::sweep_window_global(rng, 40, 200, [&](const test::GridPoint& p) {
    // The float64 reference is quadratic where every position is global: at 4099 that
    // corner alone would take most of a sanitizer run (1000 keeps it covered).
    if (p.n >= 4000 && p.globals == "all") return;
    auto c = test::make_case(p, p.index % 3 == 0 ? 64 : 16, rng);
    check_backward(c, rng);
  });
}

TEST_CASE("cpu block-sparse backward matches the float64 reference gradient", "[attention][cpu][layout][backward]") {
  std::mt19937_64 rng(test::test_seed() + 12);
  test::sweep_layouts(rng, 8, [&](test::GridPoint p) {
    p.padding = p.index % 2 ? "mask" : "none";
    auto c = test::make_case(p, 16, rng);
    check_backward(c, rng);
  });
}

TEST_CASE("the backward refuses what it cannot differentiate or lacks", "[attention][errors][backward]") {
  std::vector<float> x(4 * 16, 1.25f), out(x.size()), lse(4), grads(x.size() * 6);
  AttentionInputs in;
  in.batch = 1;
  in.q = in.k = in.v = x.data();
  in.out = out.data();
  in.lse = lse.data();
  AttentionGradients g;
  g.d_out = x.data();
  g.d_q = grads.data();
  g.d_k = grads.data() + x.size();
  g.d_v = grads.data() + 2 * x.size();
  SparseAttention topk(4, 1, 16, Pattern{1, nullptr, 2});
  CHECK_THROWS_WITH(topk.backward_cpu(in, g), Catch::Contains("top-k") && Catch::Contains("top_k = 2"));
  SparseAttention attn(4, 1, 16, Pattern{1, nullptr, 0});
  in.lse = nullptr;
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("lse"));
  in.lse = lse.data();
  in.q_global = in.k_global = in.v_global = x.data();
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("d_q_global"));
  in.v_global = nullptr;
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("all three"));
  in.q_global = in.k_global = nullptr;
  g.d_k_global = grads.data() + 4 * x.size();
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("no separate global projections"));
  g.d_k_global = nullptr;
  g.d_v = nullptr;
  CHECK_THROWS_WITH(attn.backward_cpu(in, g), Catch::Contains("d_v"));
  // Top-k on CUDA writes no lse (it has no backward): refused, never left unwritten.
  SparseAttention attn32(4, 1, 32, Pattern{1, nullptr, 2});
  std::vector<float> x32(4 * 32, 1.25f), out32(x32.size());
  AttentionInputs in32;
  in32.batch = 1;
  in32.dtype = DType::bf16;
  in32.q = in32.k = in32.v = x32.data();
  in32.out = out32.data();
  in32.lse = lse.data();
  CHECK_THROWS_WITH(attn32.run_cuda(in32), Catch::Contains("no lse for top-k"));
  CHECK_THROWS_WITH(attn32.backward_cuda(in32, g), Catch::Contains("top-k"));
}
