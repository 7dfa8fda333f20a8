// The CUDA encoder against PyTorch's float32 fixture (bf16 tolerance) and against the
// CPU encoder on the shipped model: random batches with padding and odd lengths, a
// 128k-token document in one pass, the reader's answers on both devices.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "ldqa/error.hpp"
#include "model/model.hpp"
#include "model_fixtures.hpp"

using namespace ldqa;
using namespace ldqa::test;

namespace {

constexpr double kBf16States = 3e-2;  // bf16 weights/activations over a few layers

const model::Encoder& shipped_encoder() {
  static const model::Encoder encoder = model::Encoder::load(kModels / "ldqa-small");
  return encoder;
}

model::Batch random_batch(const model::Config& c, std::mt19937& rng, int batch, int n, std::vector<int> valid,
                          std::vector<int> global) {
  model::Batch b;
  b.batch = batch;
  b.n = n;
  std::uniform_int_distribution<int> id(5, c.vocab_size - 1);
  for (int r = 0; r < batch; ++r)
    for (int p = 0; p < n; ++p) {
      b.ids.push_back(p < valid[static_cast<std::size_t>(r)] ? id(rng) : c.pad_id);
      b.types.push_back(p < global[static_cast<std::size_t>(r)] ? 0 : 1);
    }
  b.valid_len.assign(valid.begin(), valid.end());
  b.global_len.assign(global.begin(), global.end());
  return b;
}

}  // namespace

TEST_CASE("cuda encoder matches PyTorch on the tiny model within bf16 tolerance", "[model_gpu]") {
  REQUIRE(resolve_device(Device::automatic) == Device::cuda);
  const auto encoder = model::Encoder::load(kModels / "fixtures/tiny");
  const auto cases = read_cases(kModels / "fixtures/tiny/cases.safetensors");
  const int layers = encoder.config().layers, h = encoder.config().hidden;
  for (const std::string p : {"case0.", "case1."}) {
    INFO(p);
    const model::Batch batch = case_batch(cases, p);
    const auto out = encoder.forward_cuda(batch, true);
    REQUIRE(static_cast<int>(out.states.size()) == layers + 2);
    CHECK(rel_err(out.states[0], cases.at(p + "embeddings").f32, batch.valid_len, batch.n, h) <= kBf16States);
    for (int l = 0; l < layers; ++l) {
      INFO("layer " << l);
      CHECK(rel_err(out.states[static_cast<std::size_t>(l + 1)], cases.at(p + "layer" + std::to_string(l)).f32,
                    batch.valid_len, batch.n, h) <= kBf16States);
    }
    CHECK(rel_err(out.states.back(), cases.at(p + "final_norm").f32, batch.valid_len, batch.n, h) <= kBf16States);
    CHECK(rel_err(out.start_logits, cases.at(p + "start_logits").f32, batch.valid_len, batch.n, 1) <= kBf16States);
    CHECK(rel_err(out.end_logits, cases.at(p + "end_logits").f32, batch.valid_len, batch.n, 1) <= kBf16States);
  }
}

TEST_CASE("cuda encoder keeps a bounded number of attention plans, and answers the same after eviction",
          "[model_gpu]") {
  const auto encoder = model::Encoder::load(kModels / "fixtures/tiny");
  const auto cases = read_cases(kModels / "fixtures/tiny/cases.safetensors");
  const model::Batch batch = case_batch(cases, "case0.");
  const auto first = encoder.forward_cuda(batch);
  for (int n = 40; n < 100; ++n) {  // 60 other lengths, each a plan of its own
    model::Batch other;
    other.batch = 1;
    other.n = n;
    other.ids.assign(static_cast<std::size_t>(n), 7);
    other.ids[0] = 2;
    other.types.assign(static_cast<std::size_t>(n), 1);
    other.valid_len = {n};
    other.global_len = {3};
    encoder.forward_cuda(other);
  }
  CHECK(encoder.cuda_cached_lengths() <= 32);
  const auto again = encoder.forward_cuda(batch);  // its plan was dropped: made again
  CHECK(again.start_logits == first.start_logits);
  CHECK(again.end_logits == first.end_logits);
}

TEST_CASE("cuda and cpu encoders agree on the shipped model: padding, odd lengths, repeated calls", "[model_gpu]") {
  const auto& encoder = shipped_encoder();
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  struct Shape {
    int batch, n;
    std::vector<int> valid, global;
  };
  // Sizes grow then shrink, so workspaces are reused from a larger size class.
  const std::vector<Shape> shapes{{3, 1000, {1000, 517, 1}, {12, 40, 1}},
                                  {1, 4099, {4099}, {65}},
                                  {2, 77, {77, 30}, {5, 30}},
                                  {5, 333, {333, 332, 100, 2, 64}, {1, 20, 99, 2, 64}}};
  for (const auto& s : shapes) {
    INFO("batch " << s.batch << " n " << s.n);
    const auto batch = random_batch(encoder.config(), rng, s.batch, s.n, s.valid, s.global);
    const auto gpu = encoder.forward_cuda(batch);
    const auto cpu = encoder.forward_cpu(batch);
    CHECK(rel_err(gpu.start_logits, cpu.start_logits, batch.valid_len, batch.n, 1) <= kBf16States);
    CHECK(rel_err(gpu.end_logits, cpu.end_logits, batch.valid_len, batch.n, 1) <= kBf16States);
    const auto again = encoder.forward_cuda(batch);
    CHECK(again.start_logits == gpu.start_logits);  // deterministic
  }
}

// LDQA_CUDA_GRAPHS for the encoders this scope loads and first runs (read then),
// restored after.
struct GraphsSetting {
  std::string before;
  bool had = false;
  explicit GraphsSetting(const char* value) {
    if (const char* v = std::getenv("LDQA_CUDA_GRAPHS")) {
      had = true;
      before = v;
    }
    setenv("LDQA_CUDA_GRAPHS", value, 1);
  }
  ~GraphsSetting() {
    if (had)
      setenv("LDQA_CUDA_GRAPHS", before.c_str(), 1);
    else
      unsetenv("LDQA_CUDA_GRAPHS");
  }
};

TEST_CASE("cuda encoder replays a shape's passes as a CUDA graph, answering exactly as eager passes do",
          "[model_gpu]") {
  auto load_and_start = [](const char* graphs) {
    const GraphsSetting setting(graphs);
    auto encoder = model::Encoder::load(kModels / "ldqa-small");
    std::mt19937 warm(1);
    encoder.forward_cuda(random_batch(encoder.config(), warm, 1, 64, {64}, {3}));  // reads the setting
    return encoder;
  };
  const model::Encoder captured = load_and_start("1"), eager = load_and_start("0");
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const auto& c = captured.config();
  auto same = [&](const model::Batch& batch) {
    const auto a = captured.forward_cuda(batch), b = eager.forward_cuda(batch);
    CHECK(a.start_logits == b.start_logits);
    CHECK(a.end_logits == b.end_logits);
  };
  // One shape (3 x 640, global capacity 48 after rounding), new ids and lengths on every
  // pass: the first runs eagerly, the second is captured, the rest replay, and each must
  // read its own inputs.
  const std::vector<std::vector<int>> valid{{640, 517, 1}, {600, 640, 333}, {1, 2, 640}, {640, 640, 640}};
  const std::vector<std::vector<int>> global{{12, 40, 1}, {33, 7, 45}, {1, 2, 48}, {17, 17, 17}};
  for (std::size_t i = 0; i < valid.size(); ++i) {
    INFO("pass " << i);
    same(random_batch(c, rng, 3, 640, valid[i], global[i]));
  }
  CHECK(captured.cuda_graphs() == 1);  // the 1 x 64 warm-up ran once: not captured
  CHECK(eager.cuda_graphs() == 0);
  // A larger shape grows every workspace: the first shape's graph then holds old
  // addresses and must be captured again, not replayed.
  for (int i = 0; i < 2; ++i) same(random_batch(c, rng, 2, 4096, {4096, 3000}, {60, 20}));
  for (int i = 0; i < 3; ++i) same(random_batch(c, rng, 3, 640, {640, 100, 639}, {9, 47, 30}));
  CHECK(captured.cuda_graphs() == 2);
  // Passes that keep their states are never captured, and agree too.
  const auto batch = random_batch(c, rng, 3, 640, {640, 640, 5}, {40, 3, 5});
  const auto a = captured.forward_cuda(batch, true), b = eager.forward_cuda(batch, true);
  REQUIRE(a.states.size() == b.states.size());
  for (std::size_t l = 0; l < a.states.size(); ++l) CHECK(a.states[l] == b.states[l]);
  CHECK(a.start_logits == b.start_logits);
}

TEST_CASE("a 128k-token document runs in one pass with memory linear in its length", "[model_gpu]") {
  const auto& encoder = shipped_encoder();
  std::mt19937 rng(3);
  std::size_t bytes_per_token[2] = {0, 0};
  int k = 0;
  for (int n : {32768, 131072}) {
    const auto batch = random_batch(encoder.config(), rng, 1, n, {n}, {48});
    const auto out = encoder.forward_cuda(batch);
    bool finite = true;
    for (int i = 0; i < n; ++i)
      finite = finite && std::isfinite(out.start_logits[static_cast<std::size_t>(i)]) &&
               std::isfinite(out.end_logits[static_cast<std::size_t>(i)]);
    CHECK(finite);
    bytes_per_token[k++] = encoder.cuda_workspace_bytes() / static_cast<std::size_t>(n);
    if (n == 32768) {  // checked against the CPU where it stays affordable
      const auto cpu = encoder.forward_cpu(batch);
      CHECK(rel_err(out.start_logits, cpu.start_logits, batch.valid_len, n, 1) <= kBf16States);
    }
  }
  INFO("workspace bytes per token: " << bytes_per_token[0] << " at 32k, " << bytes_per_token[1] << " at 128k");
  CHECK(bytes_per_token[1] <= bytes_per_token[0]);
}

TEST_CASE("the reader answers the fixture questions the same on cuda and cpu", "[model_gpu]") {
  const std::string name = GENERATE(as<std::string>{}, "ldqa-base", "ldqa-small");  // both bundled models
  INFO(name);
  const model::Reader reader = model::Reader::load(kModels / name);
  std::ifstream in(kModels / "fixtures" / (name + "-squad.json"));
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  std::vector<std::string> contexts;
  std::vector<model::Question> questions;
  std::string document;
  for (const auto& c : fixture["cases"]) {
    contexts.push_back(c["context"].get<std::string>());
    questions.push_back(model::Question{c["question"].get<std::string>(), {static_cast<int>(contexts.size() - 1)}});
  }
  model::ReaderOptions options;
  options.max_len = 384;
  options.overlap = 128;
  const std::vector<std::string_view> views(contexts.begin(), contexts.end());
  options.device = model::Device::cuda;
  const auto gpu = reader.answer(questions, views, options);
  options.device = model::Device::cpu;
  const auto cpu = reader.answer(questions, views, options);
  int same = 0;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    REQUIRE(!gpu[i].empty());
    const auto& c = fixture["cases"][i];
    const auto text = contexts[i].substr(static_cast<std::size_t>(gpu[i][0].byte_start),
                                         static_cast<std::size_t>(gpu[i][0].byte_end - gpu[i][0].byte_start));
    same += text == c["text"].get<std::string>();
    CHECK(std::abs(gpu[i][0].score - cpu[i][0].score) < 0.25);
  }
  CHECK(same == static_cast<int>(questions.size()));
}
