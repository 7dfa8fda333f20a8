// The CUDA backward (and the forward's lse) against the float64 reference gradient on
// the forward's grids: fp16 and bf16, head_dim 32/64/128, fresh random inputs and output
// gradients every run (LDQA_TEST_SEED reproduces one), every output poisoned with NaN
// before the launches. Also: reruns are bit-identical, padding gets exactly zero, a
// global count above max_global poisons only its sequence, bad arguments are refused.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>

#include "attention/attention.hpp"
#include "gpu/gpu_support.hpp"
#include "ldqa/error.hpp"
#include "support/attention_grid.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;
using namespace ldqa::test::gpu;

namespace {

struct BackwardResult {
  std::vector<double> out, dq, dk, dv, dqg, dkg, dvg;
  std::vector<float> lse;
  std::vector<uint16_t> raw;  // every gradient's bits, concatenated: for the rerun check
};

struct Buffers {
  std::unique_ptr<DeviceBuffer> q, k, v, qg, kg, vg, global_mask, key_mask, lengths, d_out;
};

std::vector<double> download(const DeviceBuffer& b, std::size_t count, DType dtype, std::vector<uint16_t>* raw) {
  std::vector<uint16_t> bits(count);
  REQUIRE(cudaMemcpy(bits.data(), b.ptr, count * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
  if (raw != nullptr) raw->insert(raw->end(), bits.begin(), bits.end());
  return from_bits(bits, dtype);
}

// Forward with lse, then backward, on the GPU; everything written is poisoned first.
BackwardResult run_backward_gpu(const test::AttentionCase& c, const std::vector<double>& d_out, DType dtype,
                                int max_global = -1) {
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  Buffers in_buf;
  in_buf.q = upload(to_bits(c.q, dtype));
  in_buf.k = upload(to_bits(c.k, dtype));
  in_buf.v = upload(to_bits(c.v, dtype));
  if (c.separate_global) {
    in_buf.qg = upload(to_bits(c.qg, dtype));
    in_buf.kg = upload(to_bits(c.kg, dtype));
    in_buf.vg = upload(to_bits(c.vg, dtype));
  }
  in_buf.global_mask = upload(c.global_mask);
  in_buf.key_mask = upload(c.key_mask);
  in_buf.lengths = upload(c.valid_lengths);
  in_buf.d_out = upload(to_bits(d_out, dtype));
  const std::size_t elems = c.q.size(), rows = static_cast<std::size_t>(c.batch) * c.heads * c.seq_len;
  DeviceBuffer out(elems * 2), lse(rows * 4);
  std::vector<std::unique_ptr<DeviceBuffer>> grads;
  for (int g = 0; g < (c.separate_global ? 6 : 3); ++g) grads.push_back(std::make_unique<DeviceBuffer>(elems * 2));
  CUDA_OK(cudaMemset(out.ptr, 0xFF, elems * 2));  // NaN in fp16, bf16 and float32
  CUDA_OK(cudaMemset(lse.ptr, 0xFF, rows * 4));
  for (auto& g : grads) CUDA_OK(cudaMemset(g->ptr, 0xFF, elems * 2));
  AttentionInputs in;
  in.batch = c.batch;
  in.dtype = dtype;
  in.q = in_buf.q->ptr;
  in.k = in_buf.k->ptr;
  in.v = in_buf.v->ptr;
  in.q_global = ptr(in_buf.qg);
  in.k_global = ptr(in_buf.kg);
  in.v_global = ptr(in_buf.vg);
  in.global_mask = static_cast<const uint8_t*>(ptr(in_buf.global_mask));
  in.max_global = max_global;
  in.valid_lengths = static_cast<const int32_t*>(ptr(in_buf.lengths));
  in.key_mask = static_cast<const uint8_t*>(ptr(in_buf.key_mask));
  in.out = out.ptr;
  in.lse = static_cast<float*>(lse.ptr);
  in.scale = static_cast<float>(c.scale);
  attn.run_cuda(in);
  AttentionGradients grad;
  grad.d_out = in_buf.d_out->ptr;
  grad.d_q = grads[0]->ptr;
  grad.d_k = grads[1]->ptr;
  grad.d_v = grads[2]->ptr;
  grad.d_q_global = c.separate_global ? grads[3]->ptr : nullptr;
  grad.d_k_global = c.separate_global ? grads[4]->ptr : nullptr;
  grad.d_v_global = c.separate_global ? grads[5]->ptr : nullptr;
  attn.backward_cuda(in, grad);
  CUDA_OK(cudaDeviceSynchronize());
  BackwardResult r;
  r.out = download(out, elems, dtype, nullptr);
  r.lse.resize(rows);
  CUDA_OK(cudaMemcpy(r.lse.data(), lse.ptr, rows * 4, cudaMemcpyDeviceToHost));
  std::vector<double>* dst[] = {&r.dq, &r.dk, &r.dv, &r.dqg, &r.dkg, &r.dvg};
  for (std::size_t g = 0; g < grads.size(); ++g) *dst[g] = download(*grads[g], elems, dtype, &r.raw);
  return r;
}

std::vector<double> random_gradient(std::size_t count, std::mt19937_64& rng, double (*round)(double)) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> x(count);
  for (auto& value : x) do
      value = round(dist(rng));
    while (value == 0.0);
  return x;
}

// A 16-bit gradient agrees with the float64 one when its relative error over the whole
// tensor is within `tolerance` and no single row is far off (a missing term for a few
// keys — a global key's gathered part, say — hides in the whole-tensor norm, not in
// its row); where the true gradient is ~0 (window 0: dS = 0 up to rounding) the
// root-mean-square error must be below 16-bit rounding instead.
bool gradient_close(const char* name, const std::vector<double>& got, const std::vector<double>& want, int head_dim,
                    double tolerance) {
  double err = 0, norm = 0, worst_row = 0;
  std::size_t bad = 0;
  const std::size_t rows = want.size() / head_dim;
  std::vector<double> row_err(rows), row_norm(rows);
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) ++bad;
    const double e = (got[i] - want[i]) * (got[i] - want[i]);
    err += e;
    norm += want[i] * want[i];
    row_err[i / head_dim] += e;
    row_norm[i / head_dim] += want[i] * want[i];
  }
  const double mean_row = std::sqrt(norm / static_cast<double>(std::max<std::size_t>(rows, 1)));
  for (std::size_t r = 0; r < rows; ++r)
    worst_row = std::max(worst_row, std::sqrt(row_err[r]) / (std::sqrt(row_norm[r]) + mean_row));
  const double rel = norm > 0 ? std::sqrt(err / norm) : std::sqrt(err);
  const double rms = std::sqrt(err / static_cast<double>(std::max<std::size_t>(want.size(), 1)));
  UNSCOPED_INFO(name << ": relative error " << rel << ", worst row " << worst_row << ", rms " << rms << ", non-finite "
                     << bad);
  if (bad != 0) return false;
  return (rel <= tolerance && worst_row <= 4 * tolerance) || rms <= 2e-3;
}

// adjust_inputs, when given, changes the random inputs before the run (it rounds what it
// writes to the dtype).
void check_backward(test::AttentionCase& c, DType dtype, std::mt19937_64& rng,
                    const std::function<void(test::AttentionCase&, double (*)(double))>& adjust_inputs = {}) {
  auto round = dtype == DType::f16 ? round_f16 : round_bf16;
  test::fill_inputs(c, rng, round);
  if (adjust_inputs) adjust_inputs(c, round);
  const auto d_out = random_gradient(c.q.size(), rng, round);
  const std::string what = describe(c, dtype);
  test::trace_case(what + " backward");
  const auto ref = test::reference_attention(c);
  const auto got = run_backward_gpu(c, d_out, dtype);
  // delta from the output the kernel stored (16-bit), as the kernel reads it
  const auto want = test::reference_attention_backward(c, d_out, &got.out);
  INFO(what << " seed=" << test::test_seed());
  CHECK(test::compare(got.out, ref, c.head_dim).relative_error <= 1e-2);
  int64_t lse_mismatch = 0;
  for (std::size_t row = 0; row < ref.lse.size(); ++row)
    if (std::isfinite(ref.lse[row]) ? !(std::abs(got.lse[row] - ref.lse[row]) <= 2e-3 * (1 + std::abs(ref.lse[row])))
                                    : got.lse[row] != -std::numeric_limits<float>::infinity())
      ++lse_mismatch;
  CHECK(lse_mismatch == 0);
  const double tol = dtype == DType::f16 ? 1e-2 : 3e-2;
  CHECK(gradient_close("dq", got.dq, want.dq, c.head_dim, tol));
  CHECK(gradient_close("dk", got.dk, want.dk, c.head_dim, tol));
  CHECK(gradient_close("dv", got.dv, want.dv, c.head_dim, tol));
  if (c.separate_global) {
    CHECK(gradient_close("dqg", got.dqg, want.dqg, c.head_dim, tol));
    CHECK(gradient_close("dkg", got.dkg, want.dkg, c.head_dim, tol));
    CHECK(gradient_close("dvg", got.dvg, want.dvg, c.head_dim, tol));
  }
  CHECK(test::padding_nonzeros(c, {&got.dq, &got.dk, &got.dv, &got.dqg, &got.dkg, &got.dvg}) == 0);  // padding: nothing
}

}  // namespace

TEST_CASE("gpu window+global backward matches the float64 reference gradient", "[gpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 20);
  test::sweep_window_global(rng, 8, 30, [&](const test::GridPoint& p) {
    if (skipped_in_small_mode(p)) return;
    auto c = test::make_case(p, p.index % 3 == 0 ? 32 : (p.index % 3 == 1 ? 64 : 128), rng);
    check_backward(c, p.index % 2 ? DType::f16 : DType::bf16, rng);
  });
}

TEST_CASE("gpu block-sparse backward matches the float64 reference gradient", "[gpu][backward][layout]") {
  std::mt19937_64 rng(test::test_seed() + 21);
  test::sweep_layouts(rng, 1, [&](test::GridPoint p) {
    if (skipped_in_small_mode(p)) return;
    p.padding = p.index % 3 == 0 ? "mask" : "none";
    auto c = test::make_case(p, p.index % 2 ? 64 : 32, rng);
    check_backward(c, p.index % 2 ? DType::bf16 : DType::f16, rng);
  });
}

// The backward's wgmma kernels (Hopper, head dim 64), forced on (see the forward's cases
// in test_attention_gpu.cpp): the window+global and layout grids at head dim 64, one case
// per grid.
TEST_CASE("gpu: the wgmma backward (Hopper) matches the float64 reference gradient on the window+global grid",
          "[gpu][backward][wgmma]") {
  const ForceWgmmaPath force;
  if (!force.applies()) return;
  std::mt19937_64 rng(test::test_seed() + 25);
  test::sweep_window_global(rng, 8, 30, [&](const test::GridPoint& p) {
    if (skipped_in_small_mode(p)) return;
    auto c = test::make_case(p, 64, rng);
    check_backward(c, p.index % 2 ? DType::f16 : DType::bf16, rng);
  });
}

TEST_CASE("gpu: the wgmma backward (Hopper) matches the float64 reference gradient on the block-sparse layouts",
          "[gpu][backward][layout][wgmma]") {
  const ForceWgmmaPath force;
  if (!force.applies()) return;
  std::mt19937_64 rng(test::test_seed() + 26);
  test::sweep_layouts(rng, 1, [&](test::GridPoint p) {
    if (skipped_in_small_mode(p)) return;
    p.padding = p.index % 3 == 0 ? "mask" : "none";
    auto c = test::make_case(p, 64, rng);
    check_backward(c, p.index % 2 ? DType::bf16 : DType::f16, rng);
  });
}

// The forward's online softmax moves a row's running maximum only when it grows by more
// than 2^8 (the wgmma kernel's lazy rescaling, forward_kernel.cuh): keys scaled along
// the sequence make each row's maximum grow from step to step, by less than that in
// some steps and by more in others (head 0: growing gains; head 1: shrinking ones, so
// the first step holds the maximum and later steps stay below it; head 2: gains that
// rise and fall every 100 keys). Output, lse and gradients against the float64 reference,
// on both dtypes, with globals (their rows walk every key tile) and padding.
TEST_CASE("gpu: rows whose maximum grows along the keys match the float64 reference (output, lse, gradients)",
          "[gpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 27);
  for (const DType dtype : {DType::bf16, DType::f16}) {
    auto c = test::case_of_shape(2, 3, 777, 64, 150);
    c.global_mask = test::make_global_set("first17", c.batch, c.seq_len, rng);
    test::make_padding(dtype == DType::bf16 ? "mask" : "none", c, rng);
    check_backward(c, dtype, rng, [](test::AttentionCase& x, double (*round)(double)) {
      const int n = x.seq_len, d = x.head_dim;
      for (int b = 0; b < x.batch; ++b)
        for (int h = 0; h < x.heads; ++h)
          for (int j = 0; j < n; ++j) {
            const double t = static_cast<double>(j) / n;
            const double gain = h == 0 ? 0.2 + 4.0 * t : (h == 1 ? 4.2 - 4.0 * t : 0.3 + 3.0 * ((j / 100) % 2));
            const std::size_t at = ((static_cast<std::size_t>(b) * x.heads + h) * n + j) * d;
            for (int e = 0; e < d; ++e) x.k[at + e] = round(x.k[at + e] * gain);
          }
    });
  }
}

TEST_CASE("gpu backward: reruns are bit-identical", "[gpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 22);
  auto c = test::case_of_shape(2, 3, 1500, 64, 100);
  c.pattern.layout = test::make_test_layout(2, c.seq_len, 64, c.heads, rng());
  c.separate_global = true;
  c.global_mask = test::make_global_set("scattered17", c.batch, c.seq_len, rng);
  test::make_padding("mask", c, rng);
  test::fill_inputs(c, rng, round_bf16);
  const auto d_out = random_gradient(c.q.size(), rng, round_bf16);
  const auto first = run_backward_gpu(c, d_out, DType::bf16);
  const auto second = run_backward_gpu(c, d_out, DType::bf16);
  CHECK(first.raw == second.raw);
  c.separate_global = false;
  const auto shared_first = run_backward_gpu(c, d_out, DType::bf16);
  const auto shared_second = run_backward_gpu(c, d_out, DType::bf16);
  CHECK(shared_first.raw == shared_second.raw);
}

TEST_CASE("gpu backward: a max_global bound below the real count poisons that sequence only", "[gpu][backward]") {
  std::mt19937_64 rng(test::test_seed() + 23);
  auto c = test::case_of_shape(2, 1, 200, 32, 8);
  c.global_mask.assign(2 * 200, 0);
  for (int i = 0; i < 10; ++i) c.global_mask[i * 7] = 1;        // sequence 0: 10 globals
  for (int i = 0; i < 3; ++i) c.global_mask[200 + i * 50] = 1;  // sequence 1: 3 globals
  test::fill_inputs(c, rng, round_f16);
  const auto d_out = random_gradient(c.q.size(), rng, round_f16);
  const auto got = run_backward_gpu(c, d_out, DType::f16, 5);
  const auto want = test::reference_attention_backward(c, d_out);
  const std::size_t per_sequence = c.q.size() / 2;
  for (const auto* x : {&got.dq, &got.dk, &got.dv}) {
    int64_t nan_first = 0;
    for (std::size_t i = 0; i < per_sequence; ++i) nan_first += std::isnan((*x)[i]) ? 1 : 0;
    CHECK(nan_first == static_cast<int64_t>(per_sequence));
  }
  const std::vector<double> second_dq(got.dq.begin() + per_sequence, got.dq.end()),
      want_dq(want.dq.begin() + per_sequence, want.dq.end());
  const std::vector<double> second_dk(got.dk.begin() + per_sequence, got.dk.end()),
      want_dk(want.dk.begin() + per_sequence, want.dk.end());
  CHECK(gradient_close("dq", second_dq, want_dq, c.head_dim, 1e-2));
  CHECK(gradient_close("dk", second_dk, want_dk, c.head_dim, 1e-2));
}

TEST_CASE("gpu backward matches the cpu backward on a 20k-token sequence", "[gpu][backward][long]") {
  std::mt19937_64 rng(test::test_seed() + 24);
  auto c = test::case_of_shape(1, 2, 20011, 64, 256);
  c.separate_global = true;
  c.global_mask = test::make_global_set("first17", 1, c.seq_len, rng);
  for (int i = 0; i < 40; ++i) c.global_mask[rng() % c.seq_len] = 1;
  c.valid_lengths = {c.seq_len - 5};
  test::fill_inputs(c, rng, round_bf16);
  const auto d_out = random_gradient(c.q.size(), rng, round_bf16);
  const auto gpu = run_backward_gpu(c, d_out, DType::bf16, 64);
  // The CPU backward in float32 on the same (rounded) inputs.
  const test::Float32Case tensors(c);
  const std::vector<float> dO(d_out.begin(), d_out.end());
  std::vector<float> out(c.q.size()), lse(static_cast<std::size_t>(c.heads) * c.seq_len);
  std::vector<std::vector<float>> g(6, std::vector<float>(c.q.size()));
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  const AttentionInputs in = tensors.inputs(out.data(), lse.data());
  attn.run_cpu(in);
  AttentionGradients grads;
  grads.d_out = dO.data();
  grads.d_q = g[0].data();
  grads.d_k = g[1].data();
  grads.d_v = g[2].data();
  grads.d_q_global = g[3].data();
  grads.d_k_global = g[4].data();
  grads.d_v_global = g[5].data();
  attn.backward_cpu(in, grads);
  const std::vector<double>* got[] = {&gpu.dq, &gpu.dk, &gpu.dv, &gpu.dqg, &gpu.dkg, &gpu.dvg};
  const char* names[] = {"dq", "dk", "dv", "dqg", "dkg", "dvg"};
  INFO("seed=" << test::test_seed());
  for (int x = 0; x < 6; ++x)
    CHECK(gradient_close(names[x], *got[x], std::vector<double>(g[x].begin(), g[x].end()), c.head_dim, 3e-2));
}

TEST_CASE("gpu backward: bad arguments are refused before any launch", "[gpu][backward][errors]") {
  SparseAttention attn(100, 2, 64, {});
  DeviceBuffer buf(100 * 2 * 64 * 2 * 8), lse(100 * 2 * 4);
  auto* base = static_cast<unsigned char*>(buf.ptr);
  const std::size_t tensor = 100 * 2 * 64 * 2;
  AttentionInputs in;
  in.batch = 1;
  in.dtype = DType::bf16;
  in.q = in.k = in.v = base;
  in.out = base + tensor;
  AttentionGradients g;
  g.d_out = base + 2 * tensor;
  g.d_q = base + 3 * tensor;
  g.d_k = base + 4 * tensor;
  g.d_v = base + 5 * tensor;
  CHECK_THROWS_WITH(attn.backward_cuda(in, g), Catch::Contains("lse"));
  in.lse = static_cast<float*>(lse.ptr);
  g.d_out = base + 2 * tensor + 2;
  CHECK_THROWS_WITH(attn.backward_cuda(in, g), Catch::Contains("d_out is at an address ending in 2"));
  g.d_out = base + 2 * tensor;
  const std::size_t need = attn.cuda_backward_workspace_bytes(1, 0);
  DeviceBuffer ws(need);
  CHECK_THROWS_WITH(attn.backward_cuda(in, g, nullptr, ws.ptr, need - 1), Catch::Contains("this call needs"));
  in.q_global = base;
  CHECK_THROWS_WITH(attn.backward_cuda(in, g), Catch::Contains("all three"));
}
