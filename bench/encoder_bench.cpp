// Encoder benchmark: the shipped model's forward pass (embeddings to span logits) on
// random token ids with a 48-token global prefix, after a warm-up pass; median of
// `reps` passes. Prints one JSON object per (length, batch): latency, tokens/s and the
// workspace the CUDA path held, and how many passes it holds as CUDA graphs (A/B:
// LDQA_CUDA_GRAPHS=0).
//   ldqa_encoder_bench --model models/ldqa-small --device cuda --n 4096,16384,65536 --batch 1,8
//   ldqa_encoder_bench --model models/ldqa-small --device cpu --n 1024,4096 --batch 1 --reps 3
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/args.hpp"
#include "ldqa/error.hpp"
#include "model/model.hpp"

int main(int argc, char** argv) try {
  std::string model_dir = "models/ldqa-small", device = "cuda";
  std::vector<int> lengths{4096, 16384, 65536}, batches{1, 8};
  int reps = 5, globals = 48;
  ldqa::bench::Args("ldqa_encoder_bench [--key value]...")
      .add("--model", &model_dir, "model folder")
      .add("--device", &device, "cpu or cuda")
      .add("--n", &lengths, "sequence lengths, comma-separated")
      .add("--batch", &batches, "batch sizes, comma-separated")
      .add("--reps", &reps, "timed repetitions")
      .parse(argc, argv);
  const auto encoder = ldqa::model::Encoder::load(model_dir);
  const auto dev = ldqa::parse_device(device);
  const auto& c = encoder.config();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> id(5, c.vocab_size - 1);
  for (int n : lengths)
    for (int b : batches) {
      ldqa::model::Batch batch;
      batch.batch = b;
      batch.n = n;
      for (int r = 0; r < b; ++r)
        for (int p = 0; p < n; ++p) {
          batch.ids.push_back(p == 0 ? c.cls_id : id(rng));
          batch.types.push_back(p < globals ? 0 : 1);
        }
      batch.valid_len.assign(static_cast<std::size_t>(b), n);
      batch.global_len.assign(static_cast<std::size_t>(b), globals);
      // Warm-up: weights, workspaces, plans; on CUDA the second pass of a shape captures
      // its graph (LDQA_CUDA_GRAPHS=0: none), so the timed passes are replays.
      for (int w = 0; w < 2; ++w) encoder.forward(batch, dev);
      std::vector<double> times;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto out = encoder.forward(batch, dev);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (out.start_logits.empty()) return 1;
      }
      std::sort(times.begin(), times.end());
      const double median = times[times.size() / 2];
      std::printf(
          "{\"impl\": \"ldqa-%s\", \"n\": %d, \"batch\": %d, \"ms\": %.3f, \"tokens_per_s\": %.0f, "
          "\"workspace_mib\": %.1f, \"cuda_graphs\": %zu}\n",
          device.c_str(), n, b, median * 1e3, n * static_cast<double>(b) / median,
          static_cast<double>(encoder.cuda_workspace_bytes()) / (1 << 20), encoder.cuda_graphs());
      std::fflush(stdout);
    }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ldqa_encoder_bench: %s\n", e.what());
  return 1;
}
