// ldqa's document store: one SQLite file (WAL, foreign keys, versioned schema) with
// documents, their normalised text, passages with exact offsets (data/passages.hpp),
// an FTS5 index over the passages, and a record of index runs. The data flow:
// readers.hpp (bytes -> text) -> passages.hpp -> store.hpp (this) <- indexer.hpp (a
// folder brought up to date); retrieval.hpp reads it back (BM25, contexts).
//
// Errors: ldqa::Error with the failing path or value. Each document is written in one
// transaction, so an interrupted run (crash, kill -9) leaves every document either as
// it was or fully replaced; the next run finishes the job.
//
// Threads: a Store is used by one thread at a time; open one Store per thread. Other
// processes may read while an index run writes (WAL): they see each document either
// before or after its transaction.
//
// The FTS5 index uses ldqa's own tokenizers (data/fts_tokenizer.hpp: stopwords left
// out, terms made on the parsing threads): a connection opened outside Store must call
// register_tokenizers() before it touches passages_fts; the other tables read as usual.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/passages.hpp"

namespace ldqa::data {

inline constexpr int kSchemaVersion = 2;

namespace sql {
class Database;
}

struct DocumentRecord {
  int64_t id = 0;
  std::string path;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  std::string hash;  // SHA-256 hex of the file's bytes
  std::string format;
  std::string title;
  std::string status;  // "indexed" or "failed"
  std::string error;
  int64_t chars = 0;
  int64_t passages = 0;
  int64_t replaced = 0;
};

struct StoreStats {
  int64_t documents = 0, failed = 0, passages = 0, text_bytes = 0, file_bytes = 0;
  int schema_version = 0;
  std::string integrity;  // "ok" or SQLite's report (quick_check)
  std::string last_run_status;
};

class Store {
 public:
  // Opens or creates the database, migrating older schemas forward. Read-only opens
  // never write (and refuse a database that needs a migration).
  static Store open(const std::filesystem::path& db_path, bool read_only = false);
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  ~Store();

  std::optional<DocumentRecord> find(const std::string& path);
  std::vector<DocumentRecord> documents();
  // Replaces (or inserts) a document with its text and passages, in one transaction.
  int64_t put(const DocumentRecord& record, const ExtractedText& text, const std::vector<Passage>& passages,
              int64_t run_id);
  void put_failed(const DocumentRecord& record, int64_t run_id);
  void touch(const std::string& path, int64_t mtime_ns);  // same content, new mtime
  // Groups several documents into one commit (each still all-or-nothing inside it):
  // fewer commits while indexing; a crash loses the open batch, nothing else.
  void begin_batch();
  void commit_batch();
  bool remove(const std::string& path);
  std::string text(int64_t document_id, int64_t byte_start, int64_t byte_end);
  // The page (PDFs; 0 otherwise) of the passage holding a byte offset of a document's text.
  int page_at(int64_t document_id, int64_t byte_offset);

  int64_t begin_run(const std::string& roots);
  void end_run(int64_t run_id, const std::string& status, const std::string& summary_json);

  StoreStats stats();         // scans every text and runs quick_check: for `ldqa stats`, not hot paths
  std::string quick_check();  // "ok" or SQLite's report (reads the whole file)
  int64_t document_count();   // indexed documents, from one count

  // The connection, for data/'s own retrieval (data/retrieval.hpp).
  sql::Database& database();

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ldqa::data
