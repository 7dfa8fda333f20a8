// The library's Engine: options that reach past the command (threads).
#include <omp.h>

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
