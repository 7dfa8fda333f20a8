// Layout builders against hand-worked layouts, and the tile plan's covering property.
#include <catch2/catch.hpp>
#include <iterator>
#include <limits>
#include <random>
#include <set>

#include "attention/attention.hpp"
#include "attention/reference.hpp"
#include "attention/tile_plan.hpp"
#include "support/support.hpp"

using namespace ldqa::attention;

namespace {
std::set<std::pair<int, int>> pairs_of(const BlockLayout& layout, int head) {
  std::set<std::pair<int, int>> out;
  for (int r = 0; r < layout.num_blocks(); ++r)
    for (int c = 0; c < layout.num_blocks(); ++c)
      if (layout.allows(head, r, c)) out.emplace(r, c);
  return out;
}
}  // namespace

TEST_CASE("bigbird layout: sliding window, global row and column", "[layout]") {
  BigBirdLayoutConfig cfg;
  cfg.num_random_blocks = 0;
  const BlockLayout layout = make_bigbird_layout(8 * 16 - 3, 16, 4, cfg, 1, false);
  REQUIRE(layout.num_blocks() == 8);
  std::set<std::pair<int, int>> expected;
  for (int r = 0; r < 8; ++r)
    for (int c = 0; c < 8; ++c)
      if (r == 0 || c == 0 || std::abs(r - c) <= 1) expected.emplace(r, c);
  CHECK(pairs_of(layout, 0) == expected);
  CHECK(pairs_of(layout, 3) == expected);  // shared by every head
}

TEST_CASE("fixed layout: local squares and per-window global columns", "[layout]") {
  FixedLayoutConfig cfg;
  cfg.num_local_blocks = 4;
  cfg.num_global_blocks = 1;
  const BlockLayout layout = make_fixed_layout(10 * 32, 32, 1, cfg);
  std::set<std::pair<int, int>> expected;
  for (int r = 0; r < 10; ++r)
    for (int c = 0; c < 10; ++c)
      if (r / 4 == c / 4 || c == 3 || c == 7 || c == 9) expected.emplace(r, c);
  CHECK(pairs_of(layout, 0) == expected);
}

TEST_CASE("variable layout: growing local windows, global ranges, horizontal rows", "[layout]") {
  VariableLayoutConfig cfg;
  cfg.num_random_blocks = 0;
  cfg.local_window_blocks = {1, 2};
  cfg.global_block_indices = {5};
  cfg.global_block_end_indices = {7};
  cfg.horizontal_global = true;
  const BlockLayout layout = make_variable_layout(9 * 16, 16, 2, cfg, 3, false);
  auto window = [](int b) { return b == 0 ? 0 : 1 + (b - 1) / 2; };
  std::set<std::pair<int, int>> expected;
  for (int r = 0; r < 9; ++r)
    for (int c = 0; c < 9; ++c)
      if (window(r) == window(c) || c == 5 || c == 6 || r == 5 || r == 6) expected.emplace(r, c);
  CHECK(pairs_of(layout, 1) == expected);
}

TEST_CASE("bslongformer layout: sliding window plus global blocks both ways", "[layout]") {
  BSLongformerLayoutConfig cfg;
  cfg.num_sliding_window_blocks = 5;
  cfg.global_block_indices = {4};
  const BlockLayout layout = make_bslongformer_layout(12 * 64, 64, 8, cfg);
  std::set<std::pair<int, int>> expected;
  for (int r = 0; r < 12; ++r)
    for (int c = 0; c < 12; ++c)
      if (std::abs(r - c) <= 2 || r == 4 || c == 4) expected.emplace(r, c);
  CHECK(pairs_of(layout, 5) == expected);
}

TEST_CASE("random blocks are seeded, distinct per row and per head", "[layout]") {
  BigBirdLayoutConfig cfg;
  cfg.num_random_blocks = 3;
  cfg.num_sliding_window_blocks = 1;
  cfg.num_global_blocks = 0;
  const auto a = make_bigbird_layout(64 * 16, 16, 4, cfg, 42, true);
  const auto b = make_bigbird_layout(64 * 16, 16, 4, cfg, 42, true);
  const auto c = make_bigbird_layout(64 * 16, 16, 4, cfg, 43, true);
  CHECK(pairs_of(a, 2) == pairs_of(b, 2));
  CHECK(pairs_of(a, 2) != pairs_of(c, 2));
  CHECK(pairs_of(a, 0) != pairs_of(a, 1));
  for (int r = 0; r < 64; ++r) {  // the diagonal plus 3 distinct random blocks (one may hit the diagonal)
    const auto count = a.row_end(0, r) - a.row_begin(0, r);
    CHECK(count >= 3);
    CHECK(count <= 4);
  }
}

TEST_CASE("tile plan lists every tile a local query can reach, and local_pairs counts them", "[layout][plan]") {
  std::mt19937_64 rng(ldqa::test::test_seed());
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 700);
    const int heads = 2;
    Pattern pattern;
    pattern.window = static_cast<int>(rng() % 200) - 1;
    const int block = 8 << (rng() % 6);  // 8..256
    if (trial % 2 == 0) {
      BigBirdLayoutConfig cfg;
      cfg.num_random_blocks = 2;
      pattern.layout = std::make_shared<BlockLayout>(make_bigbird_layout(n, block, heads, cfg, rng(), true));
    }
    const SparseAttention attn(n, heads, 16, pattern);
    const auto plan = detail::build_tile_plan(n, heads, pattern);
    int64_t brute_pairs = 0;
    for (int h = 0; h < heads; ++h) {
      const int row_base = (h % plan.plan_heads) * plan.num_tiles;
      for (int i = 0; i < n; ++i) {
        const int row = row_base + i / detail::kTile;
        for (int j = 0; j < n; ++j) {
          const bool allowed = (pattern.window >= 0 && std::abs(i - j) <= pattern.window) ||
                               (pattern.layout && pattern.layout->allows(h, i / block, j / block));
          // The plan's own mask must agree with the definition inside listed tiles...
          bool planned = false;
          for (int e = plan.row_ptr[row]; e < plan.row_ptr[row + 1]; ++e)
            if (plan.key_tile[e] == j / detail::kTile)
              planned = detail::local_allows(i, j, 0, plan.window, plan.layout_bits[e], plan.layout_block);
          INFO("n=" << n << " w=" << pattern.window << " block=" << block << " i=" << i << " j=" << j);
          REQUIRE(planned == allowed);  // ...and no allowed pair may lie outside them
          brute_pairs += allowed ? 1 : 0;
        }
      }
      // rows are sorted and unique
      for (int t = 0; t < plan.num_tiles; ++t)
        for (int e = plan.row_ptr[row_base + t] + 1; e < plan.row_ptr[row_base + t + 1]; ++e)
          REQUIRE(plan.key_tile[e - 1] < plan.key_tile[e]);
      // The transpose lists exactly the row entries, each once, query tiles ascending.
      int64_t listed = 0;
      for (int u = 0; u < plan.num_tiles; ++u) {
        for (int c = plan.col_ptr[row_base + u]; c < plan.col_ptr[row_base + u + 1]; ++c) {
          const int t = plan.col_query_tile[c], e = plan.col_entry[c];
          REQUIRE(e >= plan.row_ptr[row_base + t]);
          REQUIRE(e < plan.row_ptr[row_base + t + 1]);
          REQUIRE(plan.key_tile[e] == u);
          if (c > plan.col_ptr[row_base + u]) REQUIRE(plan.col_query_tile[c - 1] < t);
          ++listed;
        }
      }
      CHECK(listed == plan.row_ptr[row_base + plan.num_tiles] - plan.row_ptr[row_base]);
    }
    CHECK(attn.local_pairs() == brute_pairs);
  }
}

TEST_CASE("the kernels' column masks equal local_allows element by element", "[layout][plan]") {
  std::mt19937_64 rng(ldqa::test::test_seed() + 11);
  std::uniform_int_distribution<int> tile(0, 40), offset(0, detail::kTile - 1), window(-1, 300);
  const int blocks[] = {0, 8, 16, 32, 64, 128, 1024};  // 0: no layout; 8..1024 as BlockLayout allows
  int allowed = 0, refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const int row_tile = tile(rng), col_tile = tile(rng);
    const int pos = row_tile * detail::kTile + offset(rng), first = col_tile * detail::kTile;
    const int w = trial % 50 == 0 ? std::numeric_limits<int>::max() : window(rng);
    const int block = blocks[rng() % std::size(blocks)];
    const uint64_t bits = rng() & rng();  // about a quarter of the block pairs
    INFO("pos " << pos << ", columns from " << first << ", window " << w << ", block " << block << ", bits " << bits);
    // A query row against key columns (forward, dQ) and a key row against query columns
    // (dK/dV); the key's global flag is the kernels' separate term, so 0 here.
    const uint64_t keys =
        detail::window_columns(pos, first, w) | detail::layout_columns(bits, block, pos % detail::kTile, true);
    const uint64_t queries =
        detail::window_columns(pos, first, w) | detail::layout_columns(bits, block, pos % detail::kTile, false);
    for (int c = 0; c < detail::kTile; ++c) {
      INFO("column " << c);
      const bool key_ok = detail::local_allows(pos, first + c, detail::kValid, w, bits, block);
      REQUIRE(((keys >> c) & 1u) == (key_ok ? 1u : 0u));
      const bool query_ok = detail::local_allows(first + c, pos, detail::kValid, w, bits, block);
      REQUIRE(((queries >> c) & 1u) == (query_ok ? 1u : 0u));
      (key_ok ? allowed : refused) += 1;
    }
  }
  CHECK(allowed > 10000);
  CHECK(refused > 10000);
  // A thread's share of two rows' masks in one register: the mma.sync accumulator
  // layout's columns nt * 8 + tig * 2 + (e & 1) of row e >> 1.
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t rows[2] = {rng(), rng()};
    for (int tig = 0; tig < 4; ++tig) {
      const uint32_t mine = detail::thread_columns(rows[0], rows[1], tig);
      for (int nt = 0; nt < 8; ++nt)
        for (int e = 0; e < 4; ++e)
          REQUIRE(detail::thread_allows(mine, nt, e) == (((rows[e >> 1] >> (nt * 8 + tig * 2 + (e & 1))) & 1u) != 0));
    }
  }
}

TEST_CASE("window_covers says exactly whether every pair of two position ranges is in the window", "[layout][plan]") {
  std::mt19937_64 rng(ldqa::test::test_seed() + 7);
  std::uniform_int_distribution<int> pos(0, 400), count(1, 70), window(-1, 300);
  int covered = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const int a = pos(rng), na = count(rng), b = pos(rng), nb = count(rng), w = window(rng);
    bool all = true;
    for (int i = a; i < a + na && all; ++i)
      for (int j = b; j < b + nb && all; ++j) all = detail::in_window(i, j, w);
    INFO("a " << a << " + " << na << ", b " << b << " + " << nb << ", window " << w);
    REQUIRE(detail::window_covers(a, na, b, nb, w) == all);
    covered += all;
  }
  CHECK(covered > 100);  // both answers were exercised
}
