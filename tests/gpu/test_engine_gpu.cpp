// The library on one GPU: questions spread over devices (here the one CUDA device,
// through the multi-device path) get the answers that one-by-one asking gives.
#include <catch2/catch.hpp>
#include <cmath>

#include "ldqa/ldqa.hpp"
#include "support/support.hpp"

using namespace ldqa;

TEST_CASE("gpu: ask_many on cuda:0 answers as ask() on the GPU does", "[gpu][lib]") {
  REQUIRE(cuda_device_count() > 0);
  test::TempDir dir;
  std::filesystem::copy(test::kSourceDir / "data/samples", dir / "docs");
  EngineOptions options;
  options.db = dir / "index.db";
  options.device = Device::cuda;
  options.model = test::kModels / "ldqa-small";
  const std::vector<std::string> questions = {"When was the lighthouse built?",        "Who is the chief executive?",
                                              "How much water does the tank hold?",    "What is the capital of Peru?",
                                              "In which year was the museum founded?", "How tall is the tower?"};
  Engine one = Engine::open(options);
  IndexRequest request;
  request.paths = {dir / "docs"};
  one.index(request);
  REQUIRE(one.device() == "cuda");
  options.devices = parse_devices("cuda:0");
  Engine many = Engine::open(options);
  const auto got = many.ask_many(questions);
  REQUIRE(got.size() == questions.size());
  for (std::size_t i = 0; i < questions.size(); ++i) {
    INFO(questions[i]);
    const auto expected = one.ask(questions[i]);
    REQUIRE(got[i].error.empty());
    REQUIRE(got[i].result.answers.size() == expected.answers.size());
    for (std::size_t k = 0; k < expected.answers.size(); ++k) {
      CHECK(got[i].result.answers[k].text == expected.answers[k].text);
      CHECK(got[i].result.answers[k].source.char_start == expected.answers[k].source.char_start);
      CHECK(std::abs(got[i].result.answers[k].score - expected.answers[k].score) < 1e-3);
    }
  }
}
