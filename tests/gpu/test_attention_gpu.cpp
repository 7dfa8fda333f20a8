// CUDA backend against the float64 reference (and, at lengths the reference cannot
// afford, against the CPU backend), fp16 and bf16, head_dim 32/64/128, fresh random
// inputs each run, outputs poisoned with NaN before every launch; at head dim 64 on a
// Hopper GPU, the forward's wgmma path too.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "gpu/gpu_support.hpp"
#include "ldqa/error.hpp"
#include "support/attention_grid.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::attention;
using namespace ldqa::test::gpu;

namespace {

struct GpuRun {
  int max_global = -1;
  bool own_workspace = false;
};

// Runs the case on the GPU and returns the output as doubles.
std::vector<double> run_gpu(const test::AttentionCase& c, DType dtype, const GpuRun& opts = {}) {
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  auto q = upload(to_bits(c.q, dtype)), k = upload(to_bits(c.k, dtype)), v = upload(to_bits(c.v, dtype));
  std::unique_ptr<DeviceBuffer> qg, kg, vg;
  if (c.separate_global) {
    qg = upload(to_bits(c.qg, dtype));
    kg = upload(to_bits(c.kg, dtype));
    vg = upload(to_bits(c.vg, dtype));
  }
  auto global_mask = upload(c.global_mask), key_mask = upload(c.key_mask), lengths = upload(c.valid_lengths);
  DeviceBuffer out(c.q.size() * 2);
  CUDA_OK(cudaMemset(out.ptr, 0xFF, c.q.size() * 2));  // NaN in both fp16 and bf16
  AttentionInputs in;
  in.batch = c.batch;
  in.dtype = dtype;
  in.q = q->ptr;
  in.k = k->ptr;
  in.v = v->ptr;
  in.q_global = ptr(qg);
  in.k_global = ptr(kg);
  in.v_global = ptr(vg);
  in.global_mask = static_cast<const uint8_t*>(ptr(global_mask));
  in.max_global = opts.max_global;
  in.valid_lengths = static_cast<const int32_t*>(ptr(lengths));
  in.key_mask = static_cast<const uint8_t*>(ptr(key_mask));
  in.out = out.ptr;
  in.scale = static_cast<float>(c.scale);
  if (opts.own_workspace) {
    DeviceBuffer ws(attn.cuda_workspace_bytes(c.batch, opts.max_global));
    CUDA_OK(cudaMemset(ws.ptr, 0x7F, attn.cuda_workspace_bytes(c.batch, opts.max_global)));  // garbage, not zeros
    attn.run_cuda(in, nullptr, ws.ptr, attn.cuda_workspace_bytes(c.batch, opts.max_global));
    CUDA_OK(cudaDeviceSynchronize());
  } else {
    attn.run_cuda(in);
  }
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<uint16_t> bits(c.q.size());
  CUDA_OK(cudaMemcpy(bits.data(), out.ptr, bits.size() * 2, cudaMemcpyDeviceToHost));
  return from_bits(bits, dtype);
}

// Which rows are wrong (relative error over 5 %), to tell a kernel's failure apart from
// another's: how many, how many of them global rows, and the first few as
// b/h/row (tile:row in the 64-row tile).
std::string wrong_rows(const std::vector<double>& out, const test::ReferenceResult& ref, const test::AttentionCase& c) {
  const int n = c.seq_len, d = c.head_dim;
  int64_t wrong = 0, wrong_global = 0;
  std::string first;
  for (int b = 0; b < c.batch; ++b)
    for (int h = 0; h < c.heads; ++h)
      for (int i = 0; i < n; ++i) {
        const std::size_t row = (static_cast<std::size_t>(b) * c.heads + h) * n + i;
        if (ref.ambiguous[row]) continue;
        double err = 0, norm = 0;
        for (int x = 0; x < d; ++x) {
          const double o = out[row * d + x], r = ref.out[row * d + x];
          err += (o - r) * (o - r);
          norm += r * r;
        }
        if (!(err <= 0.0025 * norm + 1e-12)) {
          ++wrong;
          const bool global = !c.global_mask.empty() && c.global_mask[static_cast<std::size_t>(b) * n + i];
          wrong_global += global;
          if (wrong <= 12)
            first += " " + std::to_string(b) + "/" + std::to_string(h) + "/" + std::to_string(i / 64) + ":" +
                     std::to_string(i % 64) + (global ? "g" : "");
        }
      }
  return std::to_string(wrong) + " wrong rows (" + std::to_string(wrong_global) + " global):" + first;
}

void check_case(test::AttentionCase& c, DType dtype, std::mt19937_64& rng) {
  test::fill_inputs(c, rng, dtype == DType::f16 ? round_f16 : round_bf16);
  const std::string what = describe(c, dtype);
  test::trace_case(what);
  const auto ref = test::reference_attention(c, 2e-4);
  const auto out = run_gpu(c, dtype);
  const auto cmp = test::compare(out, ref, c.head_dim);
  INFO(what << " seed=" << test::test_seed());
  INFO((cmp.relative_error > 1e-2 ? wrong_rows(out, ref, c) : std::string("rows right")));
  CHECK(cmp.nan_count == 0);
  CHECK(cmp.relative_error <= 1e-2);
  CHECK(ref.ambiguous_rows * 20 <= static_cast<int64_t>(ref.ambiguous.size()) + 50);
}

}  // namespace

TEST_CASE("gpu: a CUDA device is usable", "[gpu]") { REQUIRE(SparseAttention::cuda_available()); }

TEST_CASE("gpu window+global attention matches the float64 reference", "[gpu][attention]") {
  std::mt19937_64 rng(test::test_seed());
  test::sweep_window_global(rng, 8, 30, [&](const test::GridPoint& p) {
    if (skipped_in_small_mode(p)) return;
    auto c = test::make_case(p, p.index % 3 == 0 ? 32 : (p.index % 3 == 1 ? 64 : 128), rng);
    check_case(c, p.index % 2 ? DType::f16 : DType::bf16, rng);
  });
}

TEST_CASE("gpu block-sparse layouts match the float64 reference", "[gpu][layout]") {
  std::mt19937_64 rng(test::test_seed() + 1);
  test::sweep_layouts(rng, 1, [&](test::GridPoint p) {
    if (skipped_in_small_mode(p)) return;
    p.padding = p.index % 3 == 0 ? "mask" : "none";
    auto c = test::make_case(p, p.index % 2 ? 64 : 32, rng);
    check_case(c, p.index % 2 ? DType::bf16 : DType::f16, rng);
  });
}

TEST_CASE("gpu top-k attention is exact", "[gpu][topk]") {
  std::mt19937_64 rng(test::test_seed() + 2);
  test::sweep_topk(rng, 4, [&](const test::GridPoint& p) {
    if (skipped_in_small_mode(p)) return;
    auto c = test::make_case(p, p.index % 3 == 0 ? 32 : (p.index % 3 == 1 ? 64 : 128), rng);
    check_case(c, p.index % 2 ? DType::f16 : DType::bf16, rng);
  });
}

// Hopper's wgmma path for the forward (head dim 64), forced on for the test's duration;
// on a compute capability 9.0 device the build must take it (the sm_90a units are built
// by default), elsewhere the case has nothing to run. The whole binary can also run with
// LDQA_ATTENTION_KERNEL=wgmma set, which sends every head-dim-64 forward and backward
// (the encoder's included) through it. One case per grid, so that a parallel run
// (scripts/device-attention.sh tests) runs them side by side: each grid spends tens of
// seconds in the float64 reference.
TEST_CASE("gpu: the wgmma forward (Hopper) matches the float64 reference on the window+global grid",
          "[gpu][attention][wgmma]") {
  const ForceWgmmaPath force;
  if (!force.applies()) return;
  std::mt19937_64 rng(test::test_seed() + 8);
  test::sweep_window_global(rng, 4, 15, [&](const test::GridPoint& p) {
    if (skipped_in_small_mode(p)) return;
    auto c = test::make_case(p, 64, rng);
    check_case(c, p.index % 2 ? DType::f16 : DType::bf16, rng);
  });
}

TEST_CASE("gpu: the wgmma forward (Hopper) matches the float64 reference on the block-sparse layouts",
          "[gpu][layout][wgmma]") {
  const ForceWgmmaPath force;
  if (!force.applies()) return;
  std::mt19937_64 rng(test::test_seed() + 9);
  test::sweep_layouts(rng, 1, [&](test::GridPoint p) {
    if (skipped_in_small_mode(p)) return;
    p.padding = p.index % 3 == 0 ? "mask" : "none";
    auto c = test::make_case(p, 64, rng);
    check_case(c, p.index % 2 ? DType::bf16 : DType::f16, rng);
  });
}

// The two variables choose each pass's kernels: LDQA_ATTENTION_KERNEL both passes,
// LDQA_ATTENTION_BACKWARD_KERNEL the backward's over it; wgmma only at head dim 64 on a
// compute capability 9.0 device, where it is both passes' default. A value other than
// default, wgmma and mma.sync is refused with its name.
TEST_CASE("gpu: LDQA_ATTENTION_KERNEL and LDQA_ATTENTION_BACKWARD_KERNEL choose each pass's kernels", "[gpu][wgmma]") {
  const SavedEnvironment restore{"LDQA_ATTENTION_KERNEL", "LDQA_ATTENTION_BACKWARD_KERNEL"};
  // (sequence length, heads, head dim, pattern)
  const attention::SparseAttention d64(64, 1, 64, attention::Pattern{4, nullptr, 0});
  const attention::SparseAttention d32(64, 1, 32, attention::Pattern{4, nullptr, 0});
  const std::string hopper = hopper_device() ? "wgmma" : "mma.sync";
  auto paths = [&](const attention::SparseAttention& a) {
    return std::string(a.cuda_kernel_path(attention::AttentionPass::forward)) + "/" +
           a.cuda_kernel_path(attention::AttentionPass::backward);
  };
  unsetenv("LDQA_ATTENTION_KERNEL");
  unsetenv("LDQA_ATTENTION_BACKWARD_KERNEL");
  CHECK(paths(d64) == hopper + "/" + hopper);            // the defaults
  CHECK(std::string(d64.cuda_kernel_path()) == hopper);  // the forward's
  CHECK(paths(d32) == "mma.sync/mma.sync");
  setenv("LDQA_ATTENTION_KERNEL", "default", 1);
  CHECK(paths(d64) == hopper + "/" + hopper);
  setenv("LDQA_ATTENTION_BACKWARD_KERNEL", "mma.sync", 1);  // the backward's fallback alone
  CHECK(paths(d64) == hopper + "/mma.sync");
  unsetenv("LDQA_ATTENTION_BACKWARD_KERNEL");
  setenv("LDQA_ATTENTION_KERNEL", "wgmma", 1);
  CHECK(paths(d64) == hopper + "/" + hopper);
  CHECK(paths(d32) == "mma.sync/mma.sync");
  setenv("LDQA_ATTENTION_BACKWARD_KERNEL", "mma.sync", 1);
  CHECK(paths(d64) == hopper + "/mma.sync");
  setenv("LDQA_ATTENTION_KERNEL", "mma.sync", 1);  // the fallback, forced
  setenv("LDQA_ATTENTION_BACKWARD_KERNEL", "wgmma", 1);
  CHECK(paths(d64) == "mma.sync/" + hopper);
  setenv("LDQA_ATTENTION_KERNEL", "wgmm", 1);  // a typo: refused, naming variable and value
  CHECK_THROWS_WITH(d64.cuda_kernel_path(attention::AttentionPass::forward),
                    Catch::Contains("LDQA_ATTENTION_KERNEL='wgmm'"));
  CHECK(std::string(d64.cuda_kernel_path(attention::AttentionPass::backward)) == hopper);  // its own variable
  setenv("LDQA_ATTENTION_BACKWARD_KERNEL", "WGMMA", 1);
  CHECK_THROWS_WITH(d64.cuda_kernel_path(attention::AttentionPass::backward),
                    Catch::Contains("LDQA_ATTENTION_BACKWARD_KERNEL='WGMMA'"));
}

// A bad kernel variable is refused before the call writes anything: the explicit
// workspace, the output and the gradients keep their bytes (the preparation pass, the
// first launch, would have written the workspace's flag rows).
TEST_CASE("gpu: a bad kernel variable is refused before the call writes anything", "[gpu][errors]") {
  const SavedEnvironment restore{"LDQA_ATTENTION_KERNEL", "LDQA_ATTENTION_BACKWARD_KERNEL"};
  const SparseAttention attn(100, 2, 64, attention::Pattern{8, nullptr, 0});
  const std::size_t tensor = std::size_t{100} * 2 * 64 * 2;  // one bf16 [1, 2, 100, 64]
  const std::size_t ws_bytes = std::max(attn.cuda_workspace_bytes(1, 0), attn.cuda_backward_workspace_bytes(1, 0));
  DeviceBuffer buf(6 * tensor), lse(100 * 2 * sizeof(float)), ws(ws_bytes);
  REQUIRE(cudaMemset(buf.ptr, 0x3C, 6 * tensor) == cudaSuccess);  // bf16 0x3C3C: 0.0115
  REQUIRE(cudaMemset(lse.ptr, 0x3C, 100 * 2 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemset(ws.ptr, 0xA5, ws_bytes) == cudaSuccess);
  auto untouched = [](const DeviceBuffer& b, std::size_t bytes, unsigned char byte) {
    std::vector<unsigned char> host(bytes);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaMemcpy(host.data(), b.ptr, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    return std::all_of(host.begin(), host.end(), [byte](unsigned char x) { return x == byte; });
  };
  auto* base = static_cast<unsigned char*>(buf.ptr);
  AttentionInputs in;
  in.batch = 1;
  in.dtype = DType::bf16;
  in.q = in.k = in.v = base;
  in.out = base + tensor;
  in.lse = static_cast<float*>(lse.ptr);
  unsetenv("LDQA_ATTENTION_BACKWARD_KERNEL");
  setenv("LDQA_ATTENTION_KERNEL", "fastest", 1);
  CHECK_THROWS_WITH(attn.run_cuda(in, nullptr, ws.ptr, ws_bytes), Catch::Contains("LDQA_ATTENTION_KERNEL='fastest'"));
  CHECK(untouched(ws, ws_bytes, 0xA5));
  CHECK(untouched(buf, 6 * tensor, 0x3C));
  CHECK(untouched(lse, 100 * 2 * sizeof(float), 0x3C));
  unsetenv("LDQA_ATTENTION_KERNEL");
  setenv("LDQA_ATTENTION_BACKWARD_KERNEL", "fastest", 1);
  AttentionGradients g;
  g.d_out = base + 2 * tensor;
  g.d_q = base + 3 * tensor;
  g.d_k = base + 4 * tensor;
  g.d_v = base + 5 * tensor;
  CHECK_THROWS_WITH(attn.backward_cuda(in, g, nullptr, ws.ptr, ws_bytes),
                    Catch::Contains("LDQA_ATTENTION_BACKWARD_KERNEL='fastest'"));
  CHECK(untouched(ws, ws_bytes, 0xA5));
  CHECK(untouched(buf, 6 * tensor, 0x3C));
}

TEST_CASE("gpu: explicit workspace (filled with garbage) gives the same result", "[gpu]") {
  std::mt19937_64 rng(test::test_seed() + 3);
  auto c = test::case_of_shape(3, 2, 777, 64, 40);
  c.separate_global = true;
  c.global_mask = test::make_global_set("scattered17", c.batch, c.seq_len, rng);
  test::make_padding("lengths", c, rng);
  test::fill_inputs(c, rng, round_bf16);
  const auto pooled = run_gpu(c, DType::bf16, {17, false});
  const auto owned = run_gpu(c, DType::bf16, {17, true});
  CHECK(pooled == owned);
  const auto cmp = test::compare(owned, test::reference_attention(c), c.head_dim);
  CHECK(cmp.relative_error <= 1e-2);
}

TEST_CASE("gpu: a max_global bound below the real count poisons that sequence only", "[gpu]") {
  std::mt19937_64 rng(test::test_seed() + 4);
  auto c = test::case_of_shape(2, 1, 200, 32, 8);
  c.global_mask.assign(2 * 200, 0);
  for (int i = 0; i < 10; ++i) c.global_mask[i * 7] = 1;        // sequence 0: 10 globals
  for (int i = 0; i < 3; ++i) c.global_mask[200 + i * 50] = 1;  // sequence 1: 3 globals
  test::fill_inputs(c, rng, round_f16);
  const auto out = run_gpu(c, DType::f16, {5, false});
  const auto ref = test::reference_attention(c);
  int64_t nan_first = 0;
  for (std::size_t x = 0; x < 200 * 32; ++x) nan_first += std::isnan(out[x]) ? 1 : 0;
  CHECK(nan_first == 200 * 32);
  double err = 0, norm = 0;
  for (std::size_t x = 200 * 32; x < out.size(); ++x) {
    err += (out[x] - ref.out[x]) * (out[x] - ref.out[x]);
    norm += ref.out[x] * ref.out[x];
  }
  CHECK(std::sqrt(err / norm) <= 1e-2);
}

TEST_CASE("gpu matches the cpu backend on a 65k-token sequence", "[gpu][long]") {
  std::mt19937_64 rng(test::test_seed() + 5);
  for (DType dtype : {DType::bf16, DType::f16}) {
    auto c = test::case_of_shape(1, 2, 65537, 64, 256);
    c.separate_global = true;
    c.global_mask = test::make_global_set("scattered17", 1, c.seq_len, rng);
    for (int i = 0; i < 64; ++i) c.global_mask[rng() % c.seq_len] = 1;
    c.valid_lengths = {c.seq_len - 3};
    test::fill_inputs(c, rng, dtype == DType::f16 ? round_f16 : round_bf16);
    const auto gpu = run_gpu(c, dtype);
    SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
    std::vector<float> q(c.q.begin(), c.q.end()), k(c.k.begin(), c.k.end()), v(c.v.begin(), c.v.end());
    std::vector<float> qg(c.qg.begin(), c.qg.end()), kg(c.kg.begin(), c.kg.end()), vg(c.vg.begin(), c.vg.end());
    std::vector<float> out(q.size(), std::numeric_limits<float>::quiet_NaN());
    AttentionInputs in;
    in.batch = 1;
    in.q = q.data();
    in.k = k.data();
    in.v = v.data();
    in.q_global = qg.data();
    in.k_global = kg.data();
    in.v_global = vg.data();
    in.global_mask = c.global_mask.data();
    in.valid_lengths = c.valid_lengths.data();
    in.out = out.data();
    attn.run_cpu(in);
    double err = 0, norm = 0;
    int64_t bad = 0;
    for (std::size_t x = 0; x < out.size(); ++x) {
      if (!std::isfinite(gpu[x]) || !std::isfinite(out[x])) ++bad;
      err += (gpu[x] - out[x]) * (gpu[x] - out[x]);
      norm += static_cast<double>(out[x]) * out[x];
    }
    INFO("seed=" << test::test_seed());
    CHECK(bad == 0);
    CHECK(std::sqrt(err / norm) <= 1e-2);
  }
}

TEST_CASE("gpu: a valid length outside [0, n] poisons that sequence, as the CPU backend refuses it", "[gpu]") {
  std::mt19937_64 rng(test::test_seed() + 6);
  for (int bad : {-1, 97}) {
    auto c = test::case_of_shape(2, 2, 96, 64, 8);
    c.global_mask = test::make_global_set("first17", 2, 96, rng);
    c.valid_lengths = {bad, 80};
    test::fill_inputs(c, rng, round_bf16);
    const auto out = run_gpu(c, DType::bf16);
    INFO("valid length " << bad);
    const std::size_t per_sequence = 2 * 96 * 64;
    int64_t nan_first = 0, nan_second = 0;
    for (std::size_t x = 0; x < per_sequence; ++x) nan_first += std::isnan(out[x]) ? 1 : 0;
    for (std::size_t x = per_sequence; x < 2 * per_sequence; ++x) nan_second += std::isnan(out[x]) ? 1 : 0;
    CHECK(nan_first == static_cast<int64_t>(per_sequence));
    CHECK(nan_second == 0);
  }
}

TEST_CASE("gpu: an explicit workspace is checked for its size; calls capture in a CUDA graph", "[gpu]") {
  std::mt19937_64 rng(test::test_seed() + 7);
  auto c = test::case_of_shape(2, 2, 300, 64, 16);
  c.separate_global = true;
  c.global_mask = test::make_global_set("first17", 2, 300, rng);
  test::fill_inputs(c, rng, round_bf16);
  SparseAttention attn(c.seq_len, c.heads, c.head_dim, c.pattern);
  auto q = upload(to_bits(c.q, DType::bf16)), k = upload(to_bits(c.k, DType::bf16)),
       v = upload(to_bits(c.v, DType::bf16));
  auto qg = upload(to_bits(c.qg, DType::bf16)), kg = upload(to_bits(c.kg, DType::bf16)),
       vg = upload(to_bits(c.vg, DType::bf16));
  auto mask = upload(c.global_mask);
  DeviceBuffer direct(c.q.size() * 2), captured(c.q.size() * 2);
  AttentionInputs in;
  in.batch = c.batch;
  in.dtype = DType::bf16;
  in.q = q->ptr;
  in.k = k->ptr;
  in.v = v->ptr;
  in.q_global = qg->ptr;
  in.k_global = kg->ptr;
  in.v_global = vg->ptr;
  in.global_mask = static_cast<const uint8_t*>(mask->ptr);
  in.max_global = 17;
  in.valid_lengths = nullptr;
  in.key_mask = nullptr;
  in.out = direct.ptr;
  in.scale = 0.f;
  const std::size_t need = attn.cuda_workspace_bytes(c.batch, 17);
  DeviceBuffer ws(need);
  CHECK_THROWS_WITH(attn.run_cuda(in, nullptr, ws.ptr, need - 1), Catch::Contains("this call needs"));
  attn.run_cuda(in, nullptr, ws.ptr, need);  // the first call on this device sets things up
  CUDA_OK(cudaDeviceSynchronize());
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_OK(cudaMemset(captured.ptr, 0xFF, c.q.size() * 2));
  in.out = captured.ptr;
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  attn.run_cuda(in, stream, ws.ptr, need);  // nothing allocated or configured per call
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  std::vector<uint16_t> a(c.q.size()), b(c.q.size());
  CUDA_OK(cudaMemcpy(a.data(), direct.ptr, a.size() * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(b.data(), captured.ptr, b.size() * 2, cudaMemcpyDeviceToHost));
  CHECK(a == b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_CASE("gpu: bad arguments are refused before any launch", "[gpu][errors]") {
  SparseAttention attn(100, 2, 48, {});
  DeviceBuffer buf(100 * 2 * 48 * 2);
  AttentionInputs in;
  in.batch = 1;
  in.dtype = DType::bf16;
  in.q = in.k = in.v = buf.ptr;
  in.out = buf.ptr;
  CHECK_THROWS_WITH(attn.run_cuda(in), Catch::Contains("head_dim 32, 64 or 128, got 48"));
  SparseAttention ok(100, 2, 64, {});
  in.dtype = DType::f32;
  CHECK_THROWS_WITH(ok.run_cuda(in), Catch::Contains("f16 or bf16"));
  in.dtype = DType::f16;
  in.max_global = 101;
  CHECK_THROWS_WITH(ok.run_cuda(in), Catch::Contains("max_global 101"));
}
