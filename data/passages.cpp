// Passage splitting: paragraphs (blank-line separated) grouped up to a word target,
// long paragraphs cut at sentence or word boundaries; offsets point exactly into the
// text, and never cross a page.
#include <algorithm>

#include "data/passages.hpp"
#include "util/utf8.hpp"

namespace ldqa::data {

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t'; }

struct Span {
  int64_t start, end;
  int words;
};

int count_words(std::string_view text, int64_t start, int64_t end) {
  return data::count_words(text.substr(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start)));
}

// Paragraphs of [begin, end): runs of text between blank lines, trimmed.
std::vector<Span> paragraphs(std::string_view text, int64_t begin, int64_t end) {
  std::vector<Span> out;
  int64_t i = begin;
  while (i < end) {
    while (i < end && is_space(text[static_cast<std::size_t>(i)])) ++i;
    if (i >= end) break;
    int64_t j = i;
    int64_t last_text = i;
    while (j < end) {
      if (text[static_cast<std::size_t>(j)] == '\n') {
        int64_t k = j + 1;  // a blank line (only spaces) ends the paragraph
        while (k < end && (text[static_cast<std::size_t>(k)] == ' ' || text[static_cast<std::size_t>(k)] == '\t')) ++k;
        if (k >= end || text[static_cast<std::size_t>(k)] == '\n') break;
      }
      if (!is_space(text[static_cast<std::size_t>(j)])) last_text = j;
      ++j;
    }
    out.push_back({i, last_text + 1, count_words(text, i, last_text + 1)});
    i = j;
  }
  return out;
}

// Cuts one long paragraph into pieces of at most max_words words, preferring to end a
// piece after a sentence (". ", "! ", "? ") in its second half.
void cut_long(std::string_view text, const Span& para, int max_words, std::vector<Span>& out) {
  int64_t start = para.start;
  while (start < para.end) {
    int words = 0;
    bool in_word = false;
    int64_t i = start, word_end = start, sentence_end = -1;
    for (; i < para.end; ++i) {
      const char c = text[static_cast<std::size_t>(i)];
      const bool space = is_space(c);
      if (!space && !in_word) {
        if (words == max_words) break;
        ++words;
      }
      if (!space) word_end = i + 1;
      if ((c == '.' || c == '!' || c == '?') && i + 1 < para.end && is_space(text[static_cast<std::size_t>(i) + 1]) &&
          words * 2 >= max_words)
        sentence_end = i + 1;
      in_word = !space;
    }
    int64_t end = (i < para.end && sentence_end > start) ? sentence_end : word_end;
    out.push_back({start, end, count_words(text, start, end)});
    start = end;
    while (start < para.end && is_space(text[static_cast<std::size_t>(start)])) ++start;
  }
}

}  // namespace

int count_words(std::string_view text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = is_space(c);
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

std::vector<Passage> split_passages(std::string_view text, const std::vector<PageSpan>& pages,
                                    const PassageOptions& options) {
  std::vector<Passage> out;
  std::vector<PageSpan> ranges = pages;
  if (ranges.empty()) ranges.push_back({0, 0, static_cast<int64_t>(text.size())});
  const int target = std::max(1, options.target_words);
  const int max_words = std::max(target, options.max_words);
  // Code-point offsets by one forward scan (passages come in increasing order).
  int64_t scan_byte = 0, scan_char = 0;
  auto char_at = [&](int64_t byte) {
    for (; scan_byte < byte; ++scan_byte)
      if (!utf8::is_continuation(text[static_cast<std::size_t>(scan_byte)])) ++scan_char;
    return scan_char;
  };
  for (const PageSpan& range : ranges) {
    std::vector<Span> pieces;
    for (const Span& p : paragraphs(text, range.byte_start, range.byte_end)) {
      if (p.words > max_words) {
        cut_long(text, p, max_words, pieces);
      } else {
        pieces.push_back(p);
      }
    }
    std::size_t i = 0;
    while (i < pieces.size()) {
      Span group = pieces[i++];
      while (i < pieces.size() && group.words + pieces[i].words <= target) {
        group.end = pieces[i].end;
        group.words += pieces[i++].words;
      }
      Passage passage;
      passage.ordinal = static_cast<int>(out.size());
      passage.byte_start = group.start;
      passage.byte_end = group.end;
      passage.char_start = char_at(group.start);
      passage.char_end = char_at(group.end);
      passage.page = range.page;
      out.push_back(passage);
    }
  }
  return out;
}

}  // namespace ldqa::data
