#include "attention/tile_plan.hpp"

#include <algorithm>

#include "ldqa/error.hpp"

namespace ldqa::attention::detail {

TilePlan build_tile_plan(int seq_len, int num_heads, const Pattern& pattern) {
  TilePlan plan;
  plan.seq_len = seq_len;
  plan.num_tiles = (seq_len + kTile - 1) / kTile;
  plan.window = pattern.window;
  const BlockLayout* layout = pattern.layout.get();
  if (layout != nullptr) {
    const int block = layout->block_size();
    if (layout->num_heads() != 1 && layout->num_heads() != num_heads)
      fail("layout has ", layout->num_heads(), " heads; the attention has ", num_heads, " (need 1 or equal)");
    if (layout->num_blocks() != (seq_len + block - 1) / block)
      fail("layout has ", layout->num_blocks(), " blocks of ", block, " but seq_len ", seq_len, " needs ",
           (seq_len + block - 1) / block);
    plan.layout_block = block;
    plan.plan_heads = layout->num_heads();
  }
  plan.row_ptr.reserve(static_cast<std::size_t>(plan.plan_heads) * plan.num_tiles + 1);
  plan.row_ptr.push_back(0);
  std::vector<std::pair<int32_t, uint64_t>> row;  // (key tile, layout bits)
  for (int h = 0; h < plan.plan_heads; ++h) {
    for (int t = 0; t < plan.num_tiles; ++t) {
      row.clear();
      const int64_t first_row = static_cast<int64_t>(t) * kTile;
      const int64_t last_row = std::min<int64_t>(seq_len, first_row + kTile) - 1;
      if (pattern.window >= 0) {
        const int64_t lo = std::max<int64_t>(0, first_row - pattern.window) / kTile;
        const int64_t hi = std::min<int64_t>(seq_len - 1, last_row + pattern.window) / kTile;
        for (int64_t u = lo; u <= hi; ++u) row.emplace_back(static_cast<int32_t>(u), 0);
      }
      if (layout != nullptr) {
        const int block = plan.layout_block;
        for (int64_t qb = first_row / block; qb <= last_row / block; ++qb) {
          for (const int32_t* kb = layout->row_begin(h, static_cast<int>(qb));
               kb != layout->row_end(h, static_cast<int>(qb)); ++kb) {
            const int64_t key_first = static_cast<int64_t>(*kb) * block;
            const int64_t key_last = std::min<int64_t>(seq_len, key_first + block) - 1;
            for (int64_t u = key_first / kTile; u <= key_last / kTile; ++u) {
              uint64_t bits = 1;
              if (block < kTile) {  // mark the (query sub-block, key sub-block) pair
                const int per_tile = kTile / block;
                const int qi = static_cast<int>(qb - first_row / block);
                const int ki = static_cast<int>(*kb - u * per_tile);
                bits = uint64_t{1} << (qi * per_tile + ki);
              }
              row.emplace_back(static_cast<int32_t>(u), bits);
            }
          }
        }
      }
      std::sort(row.begin(), row.end(), [](auto& a, auto& b) { return a.first < b.first; });
      for (std::size_t i = 0; i < row.size(); ++i) {
        if (!plan.key_tile.empty() && static_cast<int64_t>(plan.key_tile.size()) > plan.row_ptr.back() &&
            plan.key_tile.back() == row[i].first) {
          plan.layout_bits.back() |= row[i].second;  // merge duplicates of one tile
        } else {
          plan.key_tile.push_back(row[i].first);
          plan.layout_bits.push_back(row[i].second);
        }
      }
      plan.row_ptr.push_back(static_cast<int32_t>(plan.key_tile.size()));
    }
  }
  if (plan.key_tile.size() > static_cast<std::size_t>(INT32_MAX)) fail("tile plan too large: ", plan.key_tile.size());
  // The transpose by counting sort: rows are visited in ascending query tile, so each
  // column lists its query tiles ascending.
  const std::size_t columns = static_cast<std::size_t>(plan.plan_heads) * plan.num_tiles;
  plan.col_ptr.assign(columns + 1, 0);
  for (int h = 0; h < plan.plan_heads; ++h)
    for (int t = 0; t < plan.num_tiles; ++t)
      for (int32_t e = plan.row_ptr[h * plan.num_tiles + t]; e < plan.row_ptr[h * plan.num_tiles + t + 1]; ++e)
        ++plan.col_ptr[static_cast<std::size_t>(h) * plan.num_tiles + plan.key_tile[e] + 1];
  for (std::size_t c = 0; c < columns; ++c) plan.col_ptr[c + 1] += plan.col_ptr[c];
  plan.col_query_tile.resize(plan.key_tile.size());
  plan.col_entry.resize(plan.key_tile.size());
  std::vector<int32_t> fill(plan.col_ptr.begin(), plan.col_ptr.end() - 1);
  for (int h = 0; h < plan.plan_heads; ++h)
    for (int t = 0; t < plan.num_tiles; ++t)
      for (int32_t e = plan.row_ptr[h * plan.num_tiles + t]; e < plan.row_ptr[h * plan.num_tiles + t + 1]; ++e) {
        const int32_t at = fill[static_cast<std::size_t>(h) * plan.num_tiles + plan.key_tile[e]]++;
        plan.col_query_tile[at] = t;
        plan.col_entry[at] = e;
      }
  return plan;
}

}  // namespace ldqa::attention::detail
