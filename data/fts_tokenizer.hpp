// Internal: the passage index's FTS5 tokenizers.
//
// The index reads text as `porter` over `ldqa_stop` over `unicode61 remove_diacritics 2`:
// diacritics folded, English function words dropped (no query asks for them, and they
// were ~40% of the postings), Porter stems. That chain runs where the text is parsed,
// on the reader threads (IndexTokenizer), and the single writer only replays its output
// through the outermost tokenizer `ldqa` (ReplayScope): tokenizing had been a large
// share of the one thread every index run waits on. Any other tokenization (queries,
// the deletes of contentless rows, migrations) goes through the chain itself, so both
// paths give the same tokens by construction; tests compare them.
#pragma once

#include <sqlite3.h>

#include <memory>
#include <string>
#include <string_view>

namespace ldqa::data {

// The passage index's `tokenize =` argument (its schema must say the same).
inline constexpr std::string_view kIndexTokenizer = "ldqa porter ldqa_stop unicode61 remove_diacritics 2";

// `word` lower-cased (FTS5's unicode61 output, or a question term).
bool is_stopword(std::string_view word);

// Registers `ldqa_stop` (drops stopwords from the tokenizer its arguments name;
// positions count the kept tokens) and `ldqa` (replays a ReplayScope's tokens, else
// tokenizes with the chain its arguments name) on this connection. Every connection
// that reads or writes the passage index needs them. Throws ldqa::Error.
void register_tokenizers(sqlite3* db);

// The chain of kIndexTokenizer below `ldqa`, on a private in-memory connection: one per
// thread. tokenize() returns the tokens in the compact form ReplayScope takes.
class IndexTokenizer {
 public:
  IndexTokenizer();
  ~IndexTokenizer();
  IndexTokenizer(const IndexTokenizer&) = delete;
  IndexTokenizer& operator=(const IndexTokenizer&) = delete;
  std::string tokenize(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// While it lives, the next document tokenization on this thread of a text of
// `text_bytes` bytes emits `tokens` (from IndexTokenizer::tokenize of that text).
class ReplayScope {
 public:
  ReplayScope(std::string_view tokens, std::size_t text_bytes);
  ~ReplayScope();
  ReplayScope(const ReplayScope&) = delete;
  ReplayScope& operator=(const ReplayScope&) = delete;
};

}  // namespace ldqa::data
