// Attention benchmark: median time over rotating input sets after warm-up, CUDA events
// on the GPU, steady_clock on the CPU. Prints ms, useful TFLOP/s (only pairs the pattern
// allows count: 4 * head_dim FLOPs per pair forward, 10 * head_dim backward) and tokens/s.
// Globals as a prefix by default (where the model puts them: the question).
// --timing back-to-back (CUDA forward): the mean of --reps calls queued between two events
// instead of each call's own events and a synchronisation after it, as a training step
// or bench/attention_torch.py's queued calls keep the GPU busy: the two would differ if the
// GPU's clock rose in the idle gaps between synchronised calls (on an H100 they do not:
// 1.008 against 1.020 ms). What does matter is the run's length: on the GPU pass
// --reps 200 or more for absolute figures; 30 repetitions end before the clock settles
// under sustained load and read ~4 % fast (docs/bench/attention.md, 2026-12-06).
//   ldqa_attention_bench --device cuda --batch 1,8 --n 4096,16384,65536
//   ldqa_attention_bench --device cpu --batch 1 --n 4096,16384 --heads 12 --pass backward
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "bench/args.hpp"
#ifdef LDQA_BENCH_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

using namespace ldqa::attention;

namespace {

struct Options {
  std::string device = "cpu";
  std::vector<int> batches = {1};
  std::vector<int> lengths = {1024, 4096};
  int heads = 12, head_dim = 64, window = 256, globals = 64, reps = 20, sets = 3;
  std::string globals_at = "prefix";
  std::string pass = "forward";
  std::string timing = "per-call";
};

Options parse(int argc, char** argv) {
  Options o;
  ldqa::bench::Args("ldqa_attention_bench [--key value]...")
      .add("--device", &o.device, "cpu or cuda")
      .add("--batch", &o.batches, "batch sizes, comma-separated")
      .add("--n", &o.lengths, "sequence lengths, comma-separated")
      .add("--heads", &o.heads, "heads")
      .add("--d", &o.head_dim, "head dimension")
      .add("--window", &o.window, "one-sided window")
      .add("--globals", &o.globals, "global tokens")
      .add("--globals-at", &o.globals_at, "prefix (the model's question) or scattered (at random)")
      .add("--pass", &o.pass, "forward, or backward (the forward's out and lse given, the backward timed)")
      .add("--reps", &o.reps, "timed repetitions")
      .add("--sets", &o.sets, "input sets rotated through")
      .add("--timing", &o.timing, "per-call (each call synchronised; the median) or back-to-back (cuda forward)")
      .parse(argc, argv);
  return o;
}

// Global positions: the first `count`, or `count` scattered at random (seeded).
std::vector<uint8_t> place_globals(int batch, int n, int count, const std::string& at, std::mt19937_64& rng) {
  if (at != "prefix" && at != "scattered") {
    std::fprintf(stderr, "--globals-at: prefix or scattered, not %s\n", at.c_str());
    std::exit(2);
  }
  std::vector<uint8_t> mask(static_cast<std::size_t>(batch) * n, 0);
  for (int b = 0; b < batch; ++b)
    for (int placed = 0; placed < std::min(count, n);) {
      uint8_t& m = mask[static_cast<std::size_t>(b) * n + (at == "prefix" ? placed : rng() % static_cast<uint64_t>(n))];
      if (!m) {
        m = 1;
        ++placed;
      }
    }
  return mask;
}

double attended_pairs(const std::vector<uint8_t>& mask, int batch, int n, int window) {
  double pairs = 0;
  for (int b = 0; b < batch; ++b) {
    const uint8_t* g = mask.data() + static_cast<std::size_t>(b) * n;
    std::vector<int> globals;
    for (int j = 0; j < n; ++j)
      if (g[j]) globals.push_back(j);
    for (int i = 0; i < n; ++i) {
      if (g[i]) {
        pairs += n;
        continue;
      }
      const int lo = std::max(0, i - window), hi = std::min(n - 1, i + window);
      pairs += hi - lo + 1;
      for (int j : globals) pairs += (j < lo || j > hi) ? 1 : 0;
    }
  }
  return pairs;
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

void report(const char* device, int batch, int n, const Options& o, double pairs, double ms) {
  const double flops_per_pair = (o.pass == "backward" ? 10.0 : 4.0) * o.head_dim;
  const double tflops = flops_per_pair * pairs * o.heads / (ms * 1e-3) / 1e12;
  std::printf("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %.3f | %.3g | %.3g |\n", device, o.pass.c_str(),
              o.globals_at.c_str(), batch, n, o.heads, o.head_dim, o.window, o.globals, ms, tflops,
              batch * static_cast<double>(n) / (ms * 1e-3));
  std::fflush(stdout);
}

void bench_cpu(const Options& o, int batch, int n, std::mt19937_64& rng) {
  const std::size_t count = static_cast<std::size_t>(batch) * o.heads * n * o.head_dim;
  std::uniform_real_distribution<float> dist(-2.f, 2.f);
  std::vector<std::vector<float>> q(o.sets), k(o.sets), v(o.sets);
  for (int s = 0; s < o.sets; ++s)
    for (auto* x : {&q[s], &k[s], &v[s]}) {
      x->resize(count);
      for (auto& value : *x) value = dist(rng);
    }
  std::vector<float> out(count), lse(count / o.head_dim), d_out(q[0]), d_q(count), d_k(count), d_v(count);
  const auto mask = place_globals(batch, n, o.globals, o.globals_at, rng);
  SparseAttention attn(n, o.heads, o.head_dim, Pattern{o.window, nullptr, 0});
  const bool backward = o.pass == "backward";
  std::vector<double> times;
  for (int r = -2; r < o.reps; ++r) {
    const int s = (r + 2) % o.sets;
    AttentionInputs in;
    in.batch = batch;
    in.q = q[s].data();
    in.k = k[s].data();
    in.v = v[s].data();
    in.global_mask = mask.data();
    in.out = out.data();
    in.lse = backward ? lse.data() : nullptr;
    if (backward) attn.run_cpu(in);  // its out and lse, untimed
    const auto t0 = std::chrono::steady_clock::now();
    if (backward) {
      AttentionGradients grad;
      grad.d_out = d_out.data();
      grad.d_q = d_q.data();
      grad.d_k = d_k.data();
      grad.d_v = d_v.data();
      attn.backward_cpu(in, grad);
    } else {
      attn.run_cpu(in);
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (r >= 0) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  report("cpu f32", batch, n, o, attended_pairs(mask, batch, n, o.window), median(times));
}

#ifdef LDQA_BENCH_CUDA
#define CHECK_CUDA(x)                                                      \
  do {                                                                     \
    cudaError_t e_ = (x);                                                  \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

void bench_cuda(const Options& o, int batch, int n, std::mt19937_64& rng) {
  const std::size_t count = static_cast<std::size_t>(batch) * o.heads * n * o.head_dim;
  // A random bf16 pool copied at a different offset into every tensor of every set.
  constexpr std::size_t kPool = std::size_t{1} << 22;
  std::vector<__nv_bfloat16> pool(kPool + 4096);
  std::uniform_real_distribution<float> dist(-2.f, 2.f);
  for (auto& x : pool) x = __float2bfloat16_rn(dist(rng));
  auto fill = [&](void* dst, std::size_t offset) {
    auto* d = static_cast<__nv_bfloat16*>(dst);
    for (std::size_t at = 0; at < count; at += kPool)
      CHECK_CUDA(
          cudaMemcpy(d + at, pool.data() + offset % 4096, std::min(kPool, count - at) * 2, cudaMemcpyHostToDevice));
  };
  // Global rows share the local projections here, as in bench/attention_torch.py's
  // FlexAttention and SDPA (which have no separate global projections).
  const bool backward = o.pass == "backward";
  const int per_set = 3;
  std::vector<void*> tensors;
  for (int s = 0; s < o.sets * per_set; ++s) {
    void* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, count * 2));
    fill(p, static_cast<std::size_t>(s) * 977);
    tensors.push_back(p);
  }
  void *out = nullptr, *mask_dev = nullptr, *workspace = nullptr, *d_out = nullptr, *grads = nullptr;
  float* lse = nullptr;
  CHECK_CUDA(cudaMalloc(&out, count * 2));
  if (backward) {
    CHECK_CUDA(cudaMalloc(&d_out, count * 2));
    fill(d_out, 4001);
    CHECK_CUDA(cudaMalloc(&grads, 3 * count * 2));
    CHECK_CUDA(cudaMalloc(&lse, count / o.head_dim * sizeof(float)));
  }
  const auto mask = place_globals(batch, n, o.globals, o.globals_at, rng);
  CHECK_CUDA(cudaMalloc(&mask_dev, mask.size()));
  CHECK_CUDA(cudaMemcpy(mask_dev, mask.data(), mask.size(), cudaMemcpyHostToDevice));
  SparseAttention attn(n, o.heads, o.head_dim, Pattern{o.window, nullptr, 0});
  const std::size_t ws_bytes =
      std::max(attn.cuda_workspace_bytes(batch, o.globals), attn.cuda_backward_workspace_bytes(batch, o.globals));
  CHECK_CUDA(cudaMalloc(&workspace, ws_bytes));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<double> times;
  // The inputs of set s (the forward's).
  auto inputs_of = [&](int s) {
    void* const* set = tensors.data() + static_cast<std::size_t>(per_set) * s;
    AttentionInputs in;
    in.batch = batch;
    in.dtype = DType::bf16;
    in.q = set[0];
    in.k = set[1];
    in.v = set[2];
    in.global_mask = static_cast<const uint8_t*>(mask_dev);
    in.max_global = o.globals;
    in.out = out;
    in.lse = lse;
    return in;
  };
  if (o.timing == "back-to-back") {
    for (int r = 0; r < 5; ++r) attn.run_cuda(inputs_of(r % o.sets), nullptr, workspace, ws_bytes);  // warm-up
    CHECK_CUDA(cudaEventRecord(start));
    for (int r = 0; r < o.reps; ++r) attn.run_cuda(inputs_of(r % o.sets), nullptr, workspace, ws_bytes);
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(static_cast<double>(ms) / o.reps);
  } else {
    for (int r = -5; r < o.reps; ++r) {
      const AttentionInputs in = inputs_of((r + 5) % o.sets);
      if (backward) {
        attn.run_cuda(in, nullptr, workspace, ws_bytes);  // its out and lse, untimed
        auto* g = static_cast<unsigned char*>(grads);
        AttentionGradients grad;
        grad.d_out = d_out;
        grad.d_q = g;
        grad.d_k = g + count * 2;
        grad.d_v = g + 2 * count * 2;
        CHECK_CUDA(cudaEventRecord(start));
        attn.backward_cuda(in, grad, nullptr, workspace, ws_bytes);
      } else {
        CHECK_CUDA(cudaEventRecord(start));
        attn.run_cuda(in, nullptr, workspace, ws_bytes);
      }
      CHECK_CUDA(cudaEventRecord(stop));
      CHECK_CUDA(cudaEventSynchronize(stop));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      if (r >= 0) times.push_back(ms);
    }
  }
  // The device column names the timed pass's kernels (mma.sync, or Hopper's wgmma).
  const auto pass = backward ? AttentionPass::backward : AttentionPass::forward;
  const std::string device = std::string("cuda bf16 ") + attn.cuda_kernel_path(pass);
  report(device.c_str(), batch, n, o, attended_pairs(mask, batch, n, o.window), median(times));
  for (void* p : tensors) cudaFree(p);
  cudaFree(out);
  cudaFree(d_out);
  cudaFree(grads);
  cudaFree(lse);
  cudaFree(mask_dev);
  cudaFree(workspace);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::mt19937_64 rng(20261128);
  if (o.pass != "forward" && o.pass != "backward") {
    std::fprintf(stderr, "--pass: forward or backward, not %s\n", o.pass.c_str());
    return 2;
  }
  if (o.timing != "per-call" && !(o.timing == "back-to-back" && o.device == "cuda" && o.pass == "forward")) {
    std::fprintf(stderr, "--timing: per-call, or back-to-back with --device cuda --pass forward; not %s\n",
                 o.timing.c_str());
    return 2;
  }
  std::printf("| device | pass | globals at | B | n | H | D | w | globals | %s ms | useful TFLOP/s | tokens/s |\n",
              o.timing == "back-to-back" ? "mean back-to-back" : "median");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int batch : o.batches)
    for (int n : o.lengths) {
      if (o.device == "cpu") {
        bench_cpu(o, batch, n, rng);
      } else {
#ifdef LDQA_BENCH_CUDA
        bench_cuda(o, batch, n, rng);
#else
        std::fprintf(stderr, "built without CUDA\n");
        return 2;
#endif
      }
    }
  return 0;
}
