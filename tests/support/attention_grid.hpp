// The grids every attention backend is checked on against the float64 reference
// (tests/attention/reference.hpp): the CPU and GPU tests sweep the same points and
// differ only in how they run a case, its head size and precision, and how often they
// sample the long lengths.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attention/reference.hpp"

namespace ldqa::test {

// Calls f with every combination of one element from each list, the first list outermost.
template <typename F>
void for_each_combination(F&& f) {
  f();
}
template <typename F, typename List, typename... Lists>
void for_each_combination(F&& f, const List& first, const Lists&... rest) {
  for (const auto& x : first) for_each_combination([&](const auto&... xs) { f(x, xs...); }, rest...);
}

// One grid point: which case to build. `index` counts every point, sampled or not, so
// that per-point choices (head size, precision, scale) spread over the grid.
struct GridPoint {
  int index = 0;
  int n = 0, window = 0;
  std::string globals, padding;
  bool separate = false;     // window + global: separate global projections
  int block = 0, kind = -1;  // layouts: block size, DeepSpeed kind (0 Fixed .. 3 BSLongformer)
  int top_k = 0;             // top-k grid
  bool with_layout = false;  // top-k grid: over a BigBird layout too
};

inline constexpr int kBeyondLength = -2;  // a window longer than the sequence (n + 5)

// Window + global attention: every length, window, global set, padding and projection
// mode. Lengths of 1000 and more are sampled, one point in `every_long` (one in
// `every_longest` from 4000), but the heaviest corner (every position global, holes,
// separate projections, window 256) always runs.
template <typename Visit>
void sweep_window_global(std::mt19937_64& rng, int every_long, int every_longest, Visit&& visit) {
  int index = 0;
  const std::vector<int> lengths = {1, 2, 7, 63, 64, 65, 257, 1000, 4099};
  const std::vector<int> windows = {0, 1, 3, 64, 256, kBeyondLength};
  const std::vector<std::string> globals = {"none", "first", "first17", "scattered17", "all"};
  const std::vector<std::string> paddings = {"none", "lengths", "mask"};
  for_each_combination(
      [&](int n, int w, const std::string& g, const std::string& pad, bool separate) {
        ++index;
        const bool corner = g == "all" && pad == "mask" && separate && w == 256;
        if (n >= 1000 && !corner && rng() % static_cast<unsigned>(n >= 4000 ? every_longest : every_long) != 0) return;
        GridPoint p;
        p.index = index;
        p.n = n;
        p.window = w == kBeyondLength ? n + 5 : w;
        p.globals = g;
        p.padding = pad;
        p.separate = separate;
        visit(p);
      },
      lengths, windows, globals, paddings, std::vector<bool>{false, true});
}

// Block-sparse layouts: the four DeepSpeed kinds at three lengths and block sizes, with
// and without a window, with and without scattered globals (1000 sampled, one point in
// `every_long`).
template <typename Visit>
void sweep_layouts(std::mt19937_64& rng, int every_long, Visit&& visit) {
  int index = 0;
  for_each_combination(
      [&](int n, int block, int kind, int w, const std::string& g) {
        ++index;
        if (n == 1000 && rng() % static_cast<unsigned>(every_long) != 0) return;
        GridPoint p;
        p.index = index;
        p.n = n;
        p.block = block;
        p.kind = kind;
        p.window = w;
        p.globals = g;
        visit(p);
      },
      std::vector<int>{63, 257, 1000}, std::vector<int>{16, 64, 128}, std::vector<int>{0, 1, 2, 3},
      std::vector<int>{-1, 3}, std::vector<std::string>{"none", "scattered17"});
}

// Top-k: k of 1, 8 and every key, with windows, global sets and a BigBird layout
// (1000 sampled, one point in `every_long`).
template <typename Visit>
void sweep_topk(std::mt19937_64& rng, int every_long, Visit&& visit) {
  int index = 0;
  for_each_combination(
      [&](int n, int k, int w, const std::string& g, bool with_layout) {
        ++index;
        if (n == 1000 && rng() % static_cast<unsigned>(every_long) != 0) return;
        GridPoint p;
        p.index = index;
        p.n = n;
        p.top_k = k == 0 ? n : k;
        p.window = w;
        p.globals = g;
        p.with_layout = with_layout;
        visit(p);
      },
      std::vector<int>{7, 65, 257, 1000}, std::vector<int>{1, 8, 0}, std::vector<int>{0, 3, 64},
      std::vector<std::string>{"none", "first17", "scattered17"}, std::vector<bool>{false, true});
}

// The case a point stands for. Window + global: batch 2, 2 heads, every seventh point
// with a scale other than 1/sqrt(head_dim). Layouts: batch 2, 3 heads, separate global
// projections for the Variable and BSLongformer kinds. Top-k: batch 2, 2 heads,
// separate projections, random padding. Fresh global sets and padding each time.
inline AttentionCase make_case(const GridPoint& p, int head_dim, std::mt19937_64& rng) {
  AttentionCase c;
  c.batch = 2;
  c.heads = p.kind >= 0 ? 3 : 2;
  c.seq_len = p.n;
  c.head_dim = head_dim;
  c.pattern.window = p.window;
  c.pattern.top_k = p.top_k;
  if (p.kind >= 0) c.pattern.layout = make_test_layout(p.kind, p.n, p.block, c.heads, rng());
  if (p.with_layout) {
    attention::BigBirdLayoutConfig cfg;
    c.pattern.layout =
        std::make_shared<attention::BlockLayout>(attention::make_bigbird_layout(p.n, 16, c.heads, cfg, rng(), true));
  }
  c.separate_global = p.kind >= 0 ? p.kind % 2 == 1 : (p.top_k > 0 || p.separate);
  c.global_mask = make_global_set(p.globals, c.batch, p.n, rng);
  make_padding(p.top_k > 0 ? (rng() % 2 ? "mask" : "lengths") : (p.padding.empty() ? "none" : p.padding), c, rng);
  if (p.kind < 0 && p.top_k == 0 && p.index % 7 == 0) c.scale = 0.3;
  return c;
}

}  // namespace ldqa::test
