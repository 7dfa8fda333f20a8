// Retrieval: BM25 over the store's passages (FTS5), and contexts for the reader made
// of the hits and their neighbouring passages. Any question is safe: it is reduced to
// quoted terms, stopwords left out (the index does not hold them either).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/store.hpp"

namespace ldqa::data {

struct Hit {
  int64_t passage_id = 0;
  int64_t document_id = 0;
  std::string path;
  int ordinal = 0;
  double score = 0;  // BM25, higher is better
  Passage passage;
};

struct Context {
  int64_t document_id = 0;
  std::string path;
  std::string title;
  int64_t byte_start = 0, byte_end = 0, char_start = 0, char_end = 0;
  int first_page = 0, last_page = 0;
  std::string text;
  double score = 0;                   // the best hit inside
  int tokens = 0;                     // its length as the token counter given to contexts() sees it
  std::vector<int64_t> hit_passages;  // ids of the hits it contains
};

// The FTS5 query a question becomes ("" when it has no searchable term).
std::string fts_query(std::string_view question);

class Retriever {
 public:
  explicit Retriever(Store& store);
  Retriever(Retriever&&) noexcept;
  ~Retriever();

  // The k best passages by BM25 (bounded cost whatever the index size).
  std::vector<Hit> search(std::string_view question, int k);
  // Per document: hits plus neighbouring passages, merged into contiguous windows of at
  // most `budget` tokens (count_tokens, default: words * 4 / 3 rounded up). Only the
  // passages a window grows into are counted. With total_budget > 0, windows open in
  // the order of their hits' scores across documents until that many tokens are taken
  // (the last one shrinks to what is left; a hit always brings its own passage): what
  // the reader reads per question is bounded whatever the number of hits.
  std::vector<Context> contexts(const std::vector<Hit>& hits, int budget,
                                const std::function<int(std::string_view)>& count_tokens = {}, int total_budget = 0);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ldqa::data
