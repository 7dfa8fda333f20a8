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
