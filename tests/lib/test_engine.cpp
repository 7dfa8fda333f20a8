// The library's Engine: options that reach past the command (threads).
#include <omp.h>

#include <cstdlib>
#include <filesystem>

#include <catch2/catch.hpp>

#include "ldqa/ldqa.hpp"
#include "support/support.hpp"

using namespace ldqa;

TEST_CASE("EngineOptions::threads bounds the CPU reader's threads", "[lib]") {
  test::TempDir dir;
  test::write_file(dir / "docs/a.txt", "The Harrow Point lighthouse was built in 1871 by the harbour board.");
  omp_set_num_threads(4);
  EngineOptions options;
  options.db = dir / "index.db";
  options.device = Device::cpu;
  options.threads = 1;
  options.model = test::kModels / "ldqa-small";
  Engine engine = Engine::open(options);
  IndexRequest request;
  request.paths = {dir / "docs"};
  engine.index(request);
  const auto r = engine.ask("When was the lighthouse built?");
  REQUIRE_FALSE(r.answers.empty());
  CHECK(r.answers.front().text == "1871");
  CHECK(omp_get_max_threads() == 1);
}

namespace {

// The bundled samples indexed once for these tests.
struct Samples {
  test::TempDir dir;
  EngineOptions options;
  Samples() {
    std::filesystem::copy(test::kSourceDir / "data/samples", dir / "docs");
    options.db = dir / "index.db";
    options.device = Device::cpu;
    options.model = test::kModels / "ldqa-small";
    Engine engine = Engine::open(options);
    IndexRequest request;
    request.paths = {dir / "docs"};
    engine.index(request);
  }
};

// Each file type of the samples, a question without an answer there and a blank one
// (an error) between them: more readers than questions would not test the order. Kept
// short: under the sanitizers every question costs ~20 s (3 readers, 2 cores).
const std::vector<std::string> kQuestions = {"When was the lighthouse built?",
                                             "Who is the chief executive of the ferry company?",
                                             "What is the capital of Peru?",
                                             "   ",
                                             "In which year was the museum founded?",
                                             "How much water does the tank hold?",
                                             "Who became keeper after Thomas Marsh died?"};
constexpr std::size_t kBlankQuestion = 3;

}  // namespace

TEST_CASE("ask_many over several CPU readers answers as ask() does, in order", "[lib]") {
  Samples s;
  Engine one = Engine::open(s.options);
  std::vector<AskResult> expected;
  for (const auto& q : kQuestions) {
    try {
      expected.push_back(one.ask(q));
    } catch (const Error&) {
      expected.push_back({});  // the blank question: an error, in both
    }
  }
  for (const auto& devices : {std::vector<DeviceId>{{Device::cpu, 0}},
                              std::vector<DeviceId>{{Device::cpu, 0}, {Device::cpu, 0}, {Device::cpu, 0}}}) {
    EngineOptions o = s.options;
    o.devices = devices;
    Engine many = Engine::open(o);
    int calls = 0;
    const auto got = many.ask_many(kQuestions, {}, [&](int done, int total) {
      ++calls;
      CHECK(total == static_cast<int>(kQuestions.size()));
      CHECK(done <= total);
    });
    INFO(devices.size() << " readers");
    REQUIRE(got.size() == kQuestions.size());
    CHECK(calls == static_cast<int>(kQuestions.size()));
    for (std::size_t i = 0; i < kQuestions.size(); ++i) {
      INFO(kQuestions[i]);
      CHECK(got[i].asked);
      CHECK(got[i].error.empty() == (i != kBlankQuestion));
      REQUIRE(got[i].result.answers.size() == expected[i].answers.size());
      for (std::size_t k = 0; k < expected[i].answers.size(); ++k) {
        CHECK(got[i].result.answers[k].text == expected[i].answers[k].text);
        CHECK(got[i].result.answers[k].score == expected[i].answers[k].score);
        CHECK(got[i].result.answers[k].source.path == expected[i].answers[k].source.path);
        CHECK(got[i].result.answers[k].source.char_start == expected[i].answers[k].source.char_start);
      }
    }
  }
}

TEST_CASE("device lists are parsed at the edge", "[lib]") {
  CHECK(parse_devices("cpu,cpu") == std::vector<DeviceId>{{Device::cpu, 0}, {Device::cpu, 0}});
  CHECK_FALSE(parse_devices("all").empty());
  CHECK_THROWS_WITH(parse_devices("tpu"), Catch::Contains("'tpu' is not cpu, cuda or cuda:N"));
  CHECK_THROWS_WITH(parse_devices("cuda:x"), Catch::Contains("cuda:N"));
  if (cuda_device_count() == 0) CHECK_THROWS_WITH(parse_devices("cuda:0"), Catch::Contains("is not there"));
  CHECK(device_id_name({Device::cuda, 3}) == "cuda:3");
}

TEST_CASE("the bundled model is ldqa-base; LDQA_MODEL overrides it", "[lib]") {
  // The environment is the process's: put back what was there.
  const char* before = std::getenv("LDQA_MODEL");
  const std::string saved = before ? before : "";
  unsetenv("LDQA_MODEL");
  CHECK(std::filesystem::equivalent(bundled_model_dir(), test::kModels / "ldqa-base"));
  setenv("LDQA_MODEL", (test::kModels / "ldqa-small").c_str(), 1);
  CHECK(std::filesystem::equivalent(bundled_model_dir(), test::kModels / "ldqa-small"));
  test::TempDir empty;
  setenv("LDQA_MODEL", empty.path().c_str(), 1);
  CHECK_THROWS_WITH(bundled_model_dir(), Catch::Contains(empty.path().string() + " holds no config.json"));
  if (before)
    setenv("LDQA_MODEL", saved.c_str(), 1);
  else
    unsetenv("LDQA_MODEL");
}
