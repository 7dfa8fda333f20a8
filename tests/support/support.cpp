#include "support/support.hpp"

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

}  // namespace ldqa::test
