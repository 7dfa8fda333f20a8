// Passages: the units of retrieval. Paragraphs (blank-line separated) grouped up to a
// word target, long ones cut at sentence or word boundaries; [byte_start, byte_end)
// into the text (always on character boundaries) and [char_start, char_end) in code
// points; never across a page.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/readers.hpp"

namespace ldqa::data {

struct PassageOptions {
  int target_words = 200;  // paragraphs are grouped up to about this many words
  int max_words = 350;     // a longer paragraph is cut at sentence or word boundaries
};

struct Passage {
  int ordinal = 0;
  int64_t byte_start = 0, byte_end = 0;
  int64_t char_start = 0, char_end = 0;
  int page = 0;  // 0 when the document has no pages
  // The passage's index terms, made on the thread that parsed it (data/fts_tokenizer.hpp);
  // without them the writer tokenizes.
  std::optional<std::string> index_tokens;
};

// The passage's bytes in the text it was split from.
inline std::string_view passage_text(std::string_view text, const Passage& p) {
  return text.substr(static_cast<std::size_t>(p.byte_start), static_cast<std::size_t>(p.byte_end - p.byte_start));
}

// Whitespace-separated words (space, tab, newline): the unit of passage sizes.
int count_words(std::string_view text);

std::vector<Passage> split_passages(std::string_view text, const std::vector<PageSpan>& pages,
                                    const PassageOptions& options);

}  // namespace ldqa::data
