#include "support/support.hpp"

#include <cstdio>
#include <random>

namespace ldqa::test {

uint64_t test_seed() {
  static const uint64_t seed = [] {
    if (const char* env = std::getenv("LDQA_TEST_SEED")) return static_cast<uint64_t>(std::strtoull(env, nullptr, 10));
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  return seed;
}

void trace_case(const std::string& what) {
  static const bool enabled = std::getenv("LDQA_TEST_TRACE") != nullptr;
  if (!enabled) return;
  std::fprintf(stderr, "case: %s\n", what.c_str());
  std::fflush(stderr);
}

}  // namespace ldqa::test
