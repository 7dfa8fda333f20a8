// Test helpers: SQL on a raw SQLite connection (the index's tokenizers registered, as
// Store::open does), its rows as text: values joined by "|", one line per row.
#pragma once

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "data/fts_tokenizer.hpp"

namespace ldqa::test {

inline int exec_rows(sqlite3* raw, const std::string& sql, std::string& rows, std::string& message) {
  auto cb = [](void* o, int n, char** values, char**) {
    auto* s = static_cast<std::string*>(o);
    for (int i = 0; i < n; ++i) *s += std::string(values[i] ? values[i] : "NULL") + (i + 1 < n ? "|" : "\n");
    return 0;
  };
  char* err = nullptr;
  const int rc = sqlite3_exec(raw, sql.c_str(), cb, &rows, &err);
  message = err ? err : "";
  sqlite3_free(err);
  return rc;
}

// On a connection the test holds (temporary tables live as long as it).
inline std::string sql_rows(sqlite3* raw, const std::string& sql) {
  std::string rows, message;
  const int rc = exec_rows(raw, sql, rows, message);
  INFO(sql << ": " << message);
  REQUIRE(rc == SQLITE_OK);
  return rows;
}

// On a fresh connection to `db`, closed before returning.
inline std::string query_all(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
  data::register_tokenizers(raw);
  std::string rows, message;
  const int rc = exec_rows(raw, sql, rows, message);
  sqlite3_close(raw);
  INFO(sql << ": " << message);
  REQUIRE(rc == SQLITE_OK);
  return rows;
}

}  // namespace ldqa::test
