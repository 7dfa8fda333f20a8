// BlockLayout storage and the DeepSpeed-style layout builders.
#include <algorithm>

#include "attention/attention.hpp"
#include "ldqa/error.hpp"

namespace ldqa::attention {

namespace {

using Rows = std::vector<std::vector<int>>;  // [query block] -> key blocks

int blocks_for(int seq_len, int block_size) {
  if (seq_len < 1) fail("layout: seq_len must be >= 1, got ", seq_len);
  if (block_size < 8 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
    fail("layout: block_size must be a power of two in [8, 1024], got ", block_size);
  return (seq_len + block_size - 1) / block_size;
}

// splitmix64: a fixed generator, so seeded layouts are identical on every platform.
struct SeededDraw {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // `count` distinct values from [0, range), partial Fisher-Yates.
  std::vector<int> sample(int range, int count) {
    std::vector<int> pool(range);
    for (int i = 0; i < range; ++i) pool[i] = i;
    count = std::min(count, range);
    for (int i = 0; i < count; ++i) {
      const int pick = i + static_cast<int>(next() % static_cast<uint64_t>(range - i));
      std::swap(pool[i], pool[pick]);
    }
    pool.resize(count);
    return pool;
  }
};

void add_square(Rows& rows, int begin, int end) {  // all pairs inside [begin, end)
  for (int r = begin; r < end; ++r)
    for (int c = begin; c < end; ++c) rows[r].push_back(c);
}

void add_column(Rows& rows, int col) {
  for (auto& row : rows) row.push_back(col);
}

void add_row(Rows& rows, int row) {
  const int num_blocks = static_cast<int>(rows.size());
  for (int c = 0; c < num_blocks; ++c) rows[row].push_back(c);
}

// Global blocks given as indices, or as [start, end) ranges when ends are given.
std::vector<int> global_blocks(const std::vector<int>& starts, const std::vector<int>& ends, int num_blocks) {
  if (!ends.empty() && ends.size() != starts.size())
    fail("layout: ", starts.size(), " global block starts but ", ends.size(), " ends");
  std::vector<int> out;
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const int start = starts[i];
    if (start < 0) fail("layout: negative global block index ", start);
    const int end = ends.empty() ? start + 1 : ends[i];
    if (end <= start) fail("layout: global block range [", start, ", ", end, ") is empty");
    for (int b = start; b < std::min(end, num_blocks); ++b) out.push_back(b);
  }
  return out;
}

void add_sliding(Rows& rows, int num_sliding_window_blocks) {
  if (num_sliding_window_blocks < 1) fail("layout: num_sliding_window_blocks must be >= 1");
  const int half = num_sliding_window_blocks / 2;
  const int num_blocks = static_cast<int>(rows.size());
  for (int r = 0; r < num_blocks; ++r)
    for (int c = std::max(0, r - half); c < std::min(num_blocks, r + half + 1); ++c) rows[r].push_back(c);
}

void add_random(Rows& rows, int num_random_blocks, SeededDraw& draw) {
  if (num_random_blocks < 0) fail("layout: num_random_blocks must be >= 0, got ", num_random_blocks);
  const int num_blocks = static_cast<int>(rows.size());
  for (auto& row : rows)
    for (int c : draw.sample(num_blocks, num_random_blocks)) row.push_back(c);
}

}  // namespace

BlockLayout::BlockLayout(int block_size, std::vector<std::vector<std::vector<int>>> rows)
    : block_size_(block_size), num_heads_(static_cast<int>(rows.size())) {
  if (block_size < 8 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
    fail("BlockLayout: block_size must be a power of two in [8, 1024], got ", block_size);
  if (rows.empty()) fail("BlockLayout: no heads");
  num_blocks_ = static_cast<int>(rows[0].size());
  if (num_blocks_ == 0) fail("BlockLayout: no query blocks");
  row_ptr_.push_back(0);
  for (int h = 0; h < num_heads_; ++h) {
    if (static_cast<int>(rows[h].size()) != num_blocks_)
      fail("BlockLayout: head ", h, " has ", rows[h].size(), " query blocks, head 0 has ", num_blocks_);
    for (auto& row : rows[h]) {
      std::sort(row.begin(), row.end());
      row.erase(std::unique(row.begin(), row.end()), row.end());
      for (int c : row) {
        if (c < 0 || c >= num_blocks_) fail("BlockLayout: key block ", c, " outside [0, ", num_blocks_, ")");
        cols_.push_back(c);
      }
      row_ptr_.push_back(static_cast<int64_t>(cols_.size()));
    }
  }
}

const int32_t* BlockLayout::row_begin(int head, int query_block) const {
  return cols_.data() + row_ptr_[static_cast<std::size_t>(head % num_heads_) * num_blocks_ + query_block];
}

const int32_t* BlockLayout::row_end(int head, int query_block) const {
  return cols_.data() + row_ptr_[static_cast<std::size_t>(head % num_heads_) * num_blocks_ + query_block + 1];
}

bool BlockLayout::allows(int head, int query_block, int key_block) const {
  if (num_heads_ == 0 || query_block < 0 || query_block >= num_blocks_) return false;
  return std::binary_search(row_begin(head, query_block), row_end(head, query_block), key_block);
}

BlockLayout make_fixed_layout(int seq_len, int block_size, int num_heads, const FixedLayoutConfig& cfg) {
  const int num_blocks = blocks_for(seq_len, block_size);
  if (cfg.num_local_blocks < 1) fail("fixed layout: num_local_blocks must be >= 1");
  if (cfg.num_global_blocks < 1 || cfg.num_global_blocks > cfg.num_local_blocks)
    fail("fixed layout: num_global_blocks ", cfg.num_global_blocks, " must be in [1, num_local_blocks]");
  if (cfg.num_different_global_patterns < 1 ||
      cfg.num_different_global_patterns * cfg.num_global_blocks > cfg.num_local_blocks)
    fail("fixed layout: num_different_global_patterns ", cfg.num_different_global_patterns,
         " * num_global_blocks exceeds num_local_blocks");
  const int heads = cfg.num_different_global_patterns > 1 ? num_heads : 1;
  std::vector<Rows> all(heads, Rows(num_blocks));
  for (int h = 0; h < heads; ++h) {
    Rows& rows = all[h];
    for (int i = 0; i < num_blocks; i += cfg.num_local_blocks)
      add_square(rows, i, std::min(i + cfg.num_local_blocks, num_blocks));
    // The last num_global_blocks of each local window (shifted per pattern) are global.
    const int first = cfg.num_local_blocks - (1 + h % cfg.num_different_global_patterns) * cfg.num_global_blocks;
    const int full_end = num_blocks - num_blocks % cfg.num_local_blocks;
    std::vector<int> globals;
    for (int i = first; i < full_end; i += cfg.num_local_blocks)
      for (int g = i; g < i + cfg.num_global_blocks; ++g) globals.push_back(g);
    if (full_end < num_blocks) {  // a partial last window still gets its global blocks
      const int start = std::max(0, std::min(full_end + first, num_blocks - cfg.num_global_blocks));
      for (int g = start; g < std::min(start + cfg.num_global_blocks, num_blocks); ++g) globals.push_back(g);
    }
    for (int g : globals) {
      add_column(rows, g);
      if (cfg.horizontal_global) add_row(rows, g);
    }
  }
  return BlockLayout(block_size, std::move(all));
}

BlockLayout make_variable_layout(int seq_len, int block_size, int num_heads, const VariableLayoutConfig& cfg,
                                 uint64_t seed, bool different_per_head) {
  const int num_blocks = blocks_for(seq_len, block_size);
  if (cfg.local_window_blocks.empty()) fail("variable layout: local_window_blocks is empty");
  for (int size : cfg.local_window_blocks)
    if (size < 1) fail("variable layout: local window of ", size, " blocks");
  const int heads = different_per_head ? num_heads : 1;
  SeededDraw draw{seed};
  std::vector<Rows> all(heads, Rows(num_blocks));
  const std::vector<int> globals = global_blocks(cfg.global_block_indices, cfg.global_block_end_indices, num_blocks);
  for (int h = 0; h < heads; ++h) {
    Rows& rows = all[h];
    add_random(rows, cfg.num_random_blocks, draw);
    int start = 0;
    for (int size : cfg.local_window_blocks) {
      const int end = std::min(start + size, num_blocks);
      add_square(rows, start, end);
      start = end;
    }
    for (int i = start; i < num_blocks; i += cfg.local_window_blocks.back())
      add_square(rows, i, std::min(i + cfg.local_window_blocks.back(), num_blocks));
    for (int g : globals) {
      add_column(rows, g);
      if (cfg.horizontal_global) add_row(rows, g);
    }
  }
  return BlockLayout(block_size, std::move(all));
}

BlockLayout make_bigbird_layout(int seq_len, int block_size, int num_heads, const BigBirdLayoutConfig& cfg,
                                uint64_t seed, bool different_per_head) {
  const int num_blocks = blocks_for(seq_len, block_size);
  if (cfg.num_global_blocks < 0) fail("bigbird layout: num_global_blocks must be >= 0");
  const int heads = different_per_head ? num_heads : 1;
  SeededDraw draw{seed};
  std::vector<Rows> all(heads, Rows(num_blocks));
  for (int h = 0; h < heads; ++h) {
    Rows& rows = all[h];
    add_random(rows, cfg.num_random_blocks, draw);
    add_sliding(rows, cfg.num_sliding_window_blocks);
    for (int g = 0; g < std::min(cfg.num_global_blocks, num_blocks); ++g) {
      add_row(rows, g);
      add_column(rows, g);
    }
  }
  return BlockLayout(block_size, std::move(all));
}

BlockLayout make_bslongformer_layout(int seq_len, int block_size, int num_heads, const BSLongformerLayoutConfig& cfg) {
  (void)num_heads;  // one layout serves every head
  const int num_blocks = blocks_for(seq_len, block_size);
  Rows rows(num_blocks);
  add_sliding(rows, cfg.num_sliding_window_blocks);
  for (int g : global_blocks(cfg.global_block_indices, cfg.global_block_end_indices, num_blocks)) {
    add_row(rows, g);
    add_column(rows, g);
  }
  return BlockLayout(block_size, std::vector<Rows>{std::move(rows)});
}

}  // namespace ldqa::attention
