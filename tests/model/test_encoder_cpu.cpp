// The C++ CPU encoder against PyTorch: the tiny random model's outputs after the
// embeddings, after each layer, after the final norm and at the logits (float32,
// relative error <= 1e-4), and the shipped model's best spans on SQuAD dev questions.
// Bad model folders fail with the file and tensor named.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>

#include "ldqa/error.hpp"
#include "model/model.hpp"
#include "model_fixtures.hpp"
#include "tokenizer/tokenizer.hpp"

using namespace ldqa;
namespace fs = std::filesystem;

using namespace ldqa::test;

TEST_CASE("cpu encoder matches PyTorch layer by layer on the tiny model", "[model]") {
  const auto encoder = model::Encoder::load(kModels / "fixtures/tiny");
  const auto cases = read_cases(kModels / "fixtures/tiny/cases.safetensors");
  const int layers = encoder.config().layers, h = encoder.config().hidden;
  for (const char* name : {"case0.", "case1."}) {
    const std::string p = name;
    const model::Batch batch = case_batch(cases, p);
    const auto out = encoder.forward_cpu(batch, true);
    REQUIRE(static_cast<int>(out.states.size()) == layers + 2);
    INFO(p);
    CHECK(rel_err(out.states[0], cases.at(p + "embeddings").f32, batch.valid_len, batch.n, h) <= 1e-4);
    for (int l = 0; l < layers; ++l) {
      INFO("layer " << l);
      CHECK(rel_err(out.states[static_cast<std::size_t>(l + 1)], cases.at(p + "layer" + std::to_string(l)).f32,
                    batch.valid_len, batch.n, h) <= 1e-4);
    }
    CHECK(rel_err(out.states.back(), cases.at(p + "final_norm").f32, batch.valid_len, batch.n, h) <= 1e-4);
    CHECK(rel_err(out.start_logits, cases.at(p + "start_logits").f32, batch.valid_len, batch.n, 1) <= 1e-4);
    CHECK(rel_err(out.end_logits, cases.at(p + "end_logits").f32, batch.valid_len, batch.n, 1) <= 1e-4);
  }
}

TEST_CASE("the bundled models find PyTorch's spans on SQuAD dev questions", "[model]") {
  const std::string name = GENERATE(as<std::string>{}, "ldqa-base", "ldqa-small");
  INFO(name);
  const auto encoder = model::Encoder::load(kModels / name);
  std::ifstream in(kModels / "fixtures" / (name + "-squad.json"));
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  for (const auto& c : fixture["cases"]) {
    INFO(c["id"].get<std::string>());
    model::Batch batch;
    batch.batch = 1;
    batch.ids = c["ids"].get<std::vector<int32_t>>();
    batch.n = static_cast<int>(batch.ids.size());
    const int g = c["global_len"].get<int>();
    batch.types.assign(batch.ids.size(), 1);
    std::fill(batch.types.begin(), batch.types.begin() + g, 0);
    batch.valid_len = {batch.n};
    batch.global_len = {g};
    const auto out = encoder.forward_cpu(batch);
    const auto span = model::best_span(out.start_logits.data(), out.end_logits.data(), g, batch.n - g - 1);
    REQUIRE(span);
    CHECK(span->first == c["start_token"].get<int>());
    CHECK(span->last == c["end_token"].get<int>());
    CHECK(std::abs(span->score - c["score"].get<double>()) < 1e-2);
  }
}

TEST_CASE("bad model folders fail with the file and the tensor named", "[model]") {
  TempDir dir;
  const fs::path tiny = kModels / "fixtures/tiny";
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()),
                    Catch::Contains("model config not found: " + (dir.path() / "config.json").string()));
  // truncated weights
  fs::copy_file(tiny / "config.json", dir / "config.json");
  const std::string weights = read_file(tiny / "model-00001-of-00001.safetensors");
  write_file(dir / "model-00001-of-00001.safetensors", weights.substr(0, weights.size() / 2));
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains("outside the file"));
  // a malformed header
  write_file(dir / "model-00001-of-00001.safetensors", std::string("\x10\x00\x00\x00\x00\x00\x00\x00{not json", 17));
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains("malformed safetensors header"));
  // a shape the config does not allow: the file and the tensor are named
  write_file(dir / "model-00001-of-00001.safetensors", weights);
  std::string config = read_file(tiny / "config.json");
  const auto at = config.find("\"vocab_size\": 512");
  REQUIRE(at != std::string::npos);
  config.replace(at, 17, "\"vocab_size\": 513");
  write_file(dir / "config.json", config);
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains("token_embedding.weight has shape [ 512 64 ]"));
  // a missing shard
  fs::remove(dir / "model-00001-of-00001.safetensors");
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains("model weights not found"));
}

namespace {

// A copy of a model folder with one config value replaced (`"key": old` -> `"key": value`).
void with_config_value(const fs::path& from, const fs::path& to, const std::string& key, const std::string& value) {
  std::string config = read_file(from / "config.json");
  const auto at = config.find("\"" + key + "\": ");
  REQUIRE(at != std::string::npos);
  const auto start = at + key.size() + 4;
  config.replace(start, config.find_first_of(",\n}", start) - start, value);
  write_file(to / "config.json", config);
}

// Overwrites every value of one tensor in a safetensors file with `bits` (raw, per element).
void fill_tensor(const fs::path& file, const std::string& name, uint32_t bits) {
  std::string raw = read_file(file);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  const auto header = nlohmann::json::parse(raw.substr(8, n));
  const auto& t = header.at(name);
  const std::size_t width = t.at("dtype") == "F32" ? 4 : 2;
  const auto begin = t.at("data_offsets")[0].get<std::size_t>(), end = t.at("data_offsets")[1].get<std::size_t>();
  for (std::size_t i = 8 + n + begin; i < 8 + n + end; i += width) std::memcpy(raw.data() + i, &bits, width);
  write_file(file, raw);
}

}  // namespace

TEST_CASE("broken model values are refused: non-finite weights, impossible config values", "[model]") {
  TempDir dir;
  const fs::path tiny = kModels / "fixtures/tiny";
  const std::string shard = "model-00001-of-00001.safetensors";
  for (const auto& [key, value, message] : {std::tuple{"layer_norm_eps", "-1e-05", "layer_norm_eps"},
                                            {"layer_norm_eps", "0", "layer_norm_eps"},
                                            {"window", "0", "window 0"},
                                            {"rotary_base", "0.5", "rotary_base"},
                                            {"cls_id", "600", "cls_id 600"},
                                            {"max_question_tokens", "5000", "max_question_tokens"}}) {
    INFO(key << " = " << value);
    fs::copy_file(tiny / shard, dir / shard, fs::copy_options::overwrite_existing);
    with_config_value(tiny, dir.path(), key, value);
    CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains(message));
  }
  // NaN weights: the tensor and its file are named
  fs::copy_file(tiny / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  fill_tensor(dir / shard, "layers.1.ffn_in.weight", 0x7FC00000u);  // f32 NaN
  CHECK_THROWS_WITH(model::Encoder::load(dir.path()), Catch::Contains("layers.1.ffn_in.weight holds 8192 NaN"));
}

TEST_CASE("the reader refuses non-finite scores", "[model][reader]") {
  // Finite but huge span weights overflow the logits to infinity: a broken model must
  // not answer with confidence.
  TempDir dir;
  for (const auto& entry : fs::directory_iterator(kModels / "ldqa-small"))
    fs::copy_file(entry.path(), dir / entry.path().filename().string());
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    if (entry.path().extension() != ".safetensors") continue;
    const std::string raw = read_file(entry.path());
    if (raw.find("\"span.weight\"") != std::string::npos)
      fill_tensor(entry.path(), "span.weight", 0x7F00u);  // bf16 1.7e38
  }
  const auto reader = model::Reader::load(dir.path());
  model::ReaderOptions options;
  options.device = model::Device::cpu;
  const std::vector<std::string_view> contexts{"The lighthouse was built in 1871 on the point."};
  CHECK_THROWS_WITH(reader.answer({model::Question{"When was the lighthouse built?", {0}}}, contexts, options),
                    Catch::Contains("non-finite"));
}

TEST_CASE("encoder inputs are checked", "[model]") {
  const auto encoder = model::Encoder::load(kModels / "fixtures/tiny");
  model::Batch batch;
  batch.batch = 1;
  batch.n = 3;
  batch.ids = {2, 700, 3};
  batch.types = {0, 1, 1};
  batch.valid_len = {3};
  batch.global_len = {1};
  CHECK_THROWS_WITH(encoder.forward_cpu(batch), Catch::Contains("token id 700 outside the vocabulary"));
  batch.ids = {2, 7, 3};
  batch.types = {0, 1};
  CHECK_THROWS_WITH(encoder.forward_cpu(batch), Catch::Contains("do not match"));
  // one token: a valid output
  batch.n = 1;
  batch.ids = {2};
  batch.types = {0};
  batch.global_len = {1};
  batch.valid_len = {1};
  const auto out = encoder.forward_cpu(batch);
  CHECK(std::isfinite(out.start_logits[0]));
}
