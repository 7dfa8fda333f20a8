// Fuzz target: any question -> the FTS5 query it becomes, which SQLite must accept on
// an index made with ldqa's tokenizers (no FTS5 syntax survives from the question).
#include <sqlite3.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "data/fts_tokenizer.hpp"
#include "data/retrieval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static sqlite3* db = [] {
    sqlite3* d = nullptr;
    sqlite3_open(":memory:", &d);
    ldqa::data::register_tokenizers(d);
    sqlite3_exec(d,
                 "CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'porter ldqa_stop unicode61 remove_diacritics 2');"
                 "INSERT INTO t(body) VALUES ('the keeper lit the lamp'), ('résumé of the harbour master');",
                 nullptr, nullptr, nullptr);
    return d;
  }();
  const std::string query = ldqa::data::fts_query(std::string_view(reinterpret_cast<const char*>(data), size));
  if (query.empty()) return 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE t MATCH ?", -1, &st, nullptr) != SQLITE_OK) std::abort();
  sqlite3_bind_text(st, 1, query.data(), static_cast<int>(query.size()), SQLITE_TRANSIENT);
  const int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) std::abort();  // SQLite refused the query
  return 0;
}
