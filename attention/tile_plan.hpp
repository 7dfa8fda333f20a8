// Internal: the tile-level plan both backends walk. The sequence is cut into tiles of
// kTile positions; for every query tile the plan lists, sorted, the key tiles that the
// window or the layout can reach, so a kernel touches only those. Global keys that lie
// outside a query tile's listed tiles are visited separately, from a compact list.
#pragma once

#include <cstdint>
#include <vector>

#include "attention/attention.hpp"

#if defined(__CUDACC__)
#define LDQA_HD __host__ __device__ __forceinline__
#else
#define LDQA_HD inline
#endif

namespace ldqa::attention::detail {

constexpr int kTile = 64;

// Per-position flag bits, built from the padding and global inputs.
constexpr uint8_t kValid = 1;
constexpr uint8_t kGlobal = 2;  // set only on valid positions

struct TilePlan {
  int seq_len = 0;
  int num_tiles = 0;
  int plan_heads = 1;  // 1, or the layout's heads (the head index is taken modulo)
  int window = 0;
  int layout_block = 0;               // 0: no layout
  std::vector<int32_t> row_ptr;       // [plan_heads * num_tiles + 1]
  std::vector<int32_t> key_tile;      // sorted per row
  std::vector<uint64_t> layout_bits;  // per entry: which block pairs of the tile pair the layout allows
  // The transpose, for the backward's key-major pass: for every key tile, the query
  // tiles whose row lists it (ascending) and the entry (index into key_tile and
  // layout_bits) that lists it.
  std::vector<int32_t> col_ptr;  // [plan_heads * num_tiles + 1]
  std::vector<int32_t> col_query_tile;
  std::vector<int32_t> col_entry;
};

TilePlan build_tile_plan(int seq_len, int num_heads, const Pattern& pattern);

LDQA_HD bool in_window(int i, int j, int window) {
  const int d = i > j ? i - j : j - i;
  return window >= 0 && d <= window;
}

// Whether the window holds every pair of positions from [a, a + a_count) and
// [b, b + b_count): the kernels' test that a block of queries x keys needs no mask.
LDQA_HD bool window_covers(int a, int a_count, int b, int b_count, int window) {
  const int x = a + a_count - 1 - b, y = b + b_count - 1 - a;
  const int far_x = x < 0 ? -x : x, far_y = y < 0 ? -y : y;
  return window >= 0 && (far_x > far_y ? far_x : far_y) <= window;
}

// il, jl: positions inside the query and key tile.
LDQA_HD bool layout_allows(uint64_t bits, int block, int il, int jl) {
  if (block == 0) return false;
  if (block >= kTile) return (bits & 1u) != 0;
  const int per_tile = kTile / block;
  return ((bits >> ((il / block) * per_tile + jl / block)) & 1u) != 0;
}

// The local-query mask inside a listed tile pair (padding checked by the caller).
LDQA_HD bool local_allows(int i, int j, uint8_t key_flags, int window, uint64_t bits, int block) {
  return in_window(i, j, window) || (key_flags & kGlobal) || layout_allows(bits, block, i % kTile, j % kTile);
}

// Column masks for the kernels' masked steps. Bit c stands for column c of the 64-wide
// tile on the other side (keys for a query row, queries for a key row). Worked out once
// per row and step, they turn the per-element local_allows (a window test, a flag test
// and a layout lookup with two divisions, for each of a thread's 32 scores) into one bit
// test. Element by element equal to local_allows (tests/attention/test_layout.cpp).

// Columns c with in_window(pos, first + c, window).
LDQA_HD uint64_t window_columns(int pos, int first, int window) {
  if (window < 0) return 0;
  const int64_t lo = static_cast<int64_t>(pos) - first - window, hi = static_cast<int64_t>(pos) - first + window;
  if (hi < 0 || lo > kTile - 1) return 0;
  const int from = lo < 0 ? 0 : static_cast<int>(lo), to = hi > kTile - 1 ? kTile - 1 : static_cast<int>(hi);
  const uint64_t upto = to == kTile - 1 ? ~0ull : (1ull << (to + 1)) - 1;
  return upto & (~0ull << from);
}

// Columns the layout allows row `row` (a position inside its tile): a query row's keys
// (query_row, layout_allows(bits, block, row, c) for every c) or a key row's queries
// (layout_allows(bits, block, c, row)).
LDQA_HD uint64_t layout_columns(uint64_t bits, int block, int row, bool query_row) {
  if (block == 0) return 0;
  if (block >= kTile) return (bits & 1u) ? ~0ull : 0;
  const int per_tile = kTile / block, row_block = row / block;
  uint64_t columns = 0;
  for (int b = 0; b < per_tile; ++b) {
    const int bit = query_row ? row_block * per_tile + b : b * per_tile + row_block;
    if ((bits >> bit) & 1u) columns |= ((1ull << block) - 1) << (b * block);
  }
  return columns;
}

// A kernel thread's share of two rows' column masks in one register: the mma.sync
// accumulator layout gives thread `tig` of a quad columns nt * 8 + tig * 2 + {0, 1}
// (nt = 0..7) of rows r = 0, 1; bit r * 16 + nt * 2 + b holds column nt * 8 + tig * 2 + b
// of row r. (Two 64-bit masks kept across the score loop pushed the mma.sync kernels
// into spills.)
LDQA_HD uint32_t thread_columns(uint64_t row0, uint64_t row1, int tig) {
  uint32_t out = 0;
  for (int nt = 0; nt < 8; ++nt) {
    out |= static_cast<uint32_t>((row0 >> (nt * 8 + tig * 2)) & 3u) << (nt * 2);
    out |= static_cast<uint32_t>((row1 >> (nt * 8 + tig * 2)) & 3u) << (16 + nt * 2);
  }
  return out;
}

// Whether score e (0..3) of the thread's column block nt is allowed by thread_columns'
// mask: rows e >> 1, column b = e & 1.
LDQA_HD bool thread_allows(uint32_t mine, int nt, int e) {
  return ((mine >> ((e >> 1) * 16 + nt * 2 + (e & 1))) & 1u) != 0;
}

LDQA_HD bool tile_listed(const int32_t* begin, const int32_t* end, int tile) {
  const int32_t* last = end;
  while (begin < end) {  // lower bound over the sorted row
    const int32_t* mid = begin + (end - begin) / 2;
    if (*mid < tile) {
      begin = mid + 1;
    } else {
      end = mid;
    }
  }
  return begin < last && *begin == tile;
}

}  // namespace ldqa::attention::detail
