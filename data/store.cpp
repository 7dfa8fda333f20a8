// The SQLite store: schema and migrations, document writes (one transaction each),
// index runs, statistics. Retrieval reads it in retrieval.cpp.
#include <algorithm>
#include <chrono>
#include <thread>
#include <unordered_map>

#include "data/fts_tokenizer.hpp"
#include "data/sqlite.hpp"
#include "data/store.hpp"
#include "ldqa/error.hpp"

namespace ldqa::data {

namespace {

// Migration i brings a database from user_version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE index_runs(
  id INTEGER PRIMARY KEY,
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  roots TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'failed')),
  summary TEXT);
CREATE TABLE documents(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  hash TEXT NOT NULL,
  format TEXT NOT NULL,
  title TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL CHECK (status IN ('indexed', 'failed')),
  error TEXT NOT NULL DEFAULT '',
  chars INTEGER NOT NULL DEFAULT 0,
  passages INTEGER NOT NULL DEFAULT 0,
  replaced INTEGER NOT NULL DEFAULT 0,
  run_id INTEGER REFERENCES index_runs(id) ON DELETE SET NULL,
  indexed_at INTEGER NOT NULL);
CREATE TABLE texts(
  document_id INTEGER PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
  body TEXT NOT NULL);
CREATE TABLE passages(
  id INTEGER PRIMARY KEY,
  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  ordinal INTEGER NOT NULL,
  byte_start INTEGER NOT NULL, byte_end INTEGER NOT NULL,
  char_start INTEGER NOT NULL, char_end INTEGER NOT NULL,
  page INTEGER NOT NULL DEFAULT 0,
  UNIQUE (document_id, ordinal));
-- Porter stemming over unicode61 with diacritics folded: "Résumés" finds "resume".
-- Contentless: the passage text lives once, in texts; deletes pass the old text back.
-- No per-row sizes (columnsize = 0): one B-tree write less per passage; BM25 then skips
-- length normalisation, which matters little for passages of bounded length.
CREATE VIRTUAL TABLE passages_fts USING fts5(body, content = '', columnsize = 0, tokenize = 'porter unicode61 remove_diacritics 2');
-- Bulk-friendly: a larger in-memory term buffer and page size, merges less often.
INSERT INTO passages_fts(passages_fts, rank) VALUES ('hashsize', 33554432);
INSERT INTO passages_fts(passages_fts, rank) VALUES ('pgsz', 4000);
INSERT INTO passages_fts(passages_fts, rank) VALUES ('automerge', 8);
)sql",
    // v2: the index leaves out stopwords and is fed tokens made on the reader threads
    // (data/fts_tokenizer.hpp; this tokenize = is kIndexTokenizer). Rebuilt from the texts.
    R"sql(
DROP TABLE passages_fts;
CREATE VIRTUAL TABLE passages_fts USING fts5(body, content = '', columnsize = 0, tokenize = 'ldqa porter ldqa_stop unicode61 remove_diacritics 2');
INSERT INTO passages_fts(passages_fts, rank) VALUES ('hashsize', 33554432);
INSERT INTO passages_fts(passages_fts, rank) VALUES ('pgsz', 16000);
INSERT INTO passages_fts(passages_fts, rank) VALUES ('automerge', 16);
INSERT INTO passages_fts(rowid, body)
  SELECT p.id, CAST(substr(CAST(t.body AS BLOB), p.byte_start + 1, p.byte_end - p.byte_start) AS TEXT)
  FROM passages p JOIN texts t ON t.document_id = p.document_id;
)sql",
};
constexpr int kMigrationCount = static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));
static_assert(kMigrationCount == kSchemaVersion);

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

DocumentRecord read_record(const sql::Statement& st) {
  return DocumentRecord{.id = st.int64(0),
                        .path = st.text(1),
                        .size = st.int64(2),
                        .mtime_ns = st.int64(3),
                        .hash = st.text(4),
                        .format = st.text(5),
                        .title = st.text(6),
                        .status = st.text(7),
                        .error = st.text(8),
                        .chars = st.int64(9),
                        .passages = st.int64(10),
                        .replaced = st.int64(11)};
}

constexpr const char* kRecordColumns =
    "id, path, size, mtime_ns, hash, format, title, status, error, chars, passages, replaced";

}  // namespace

struct Store::Impl {
  sql::Database db;
  bool read_only;
  // Prepared once per connection: the indexer runs these for every document.
  std::unordered_map<std::string, std::unique_ptr<sql::Statement>> statements;
  Impl(const std::string& path, sql::Database::Mode mode)
      : db(path, mode), read_only(mode != sql::Database::Mode::read_write) {}

  sql::Statement& cached(const std::string& text) {
    auto& slot = statements[text];
    if (!slot) slot = std::make_unique<sql::Statement>(db.prepare(text));
    slot->reset();
    return *slot;
  }

  void delete_passages(int64_t document_id) {
    // Contentless FTS5: each row is removed by giving back the text it indexed. The
    // document's text is read once and cut here (a substr() per passage in SQL re-read
    // the whole text for each: quadratic in the document's size).
    auto& body = cached("SELECT body FROM texts WHERE document_id = ?");
    body.bind(1, document_id);
    const std::string text = body.step() ? body.text(0) : std::string();
    body.reset();
    auto& old = cached("SELECT id, byte_start, byte_end FROM passages WHERE document_id = ?");
    old.bind(1, document_id);
    auto& del = cached("INSERT INTO passages_fts(passages_fts, rowid, body) VALUES ('delete', ?, ?)");
    while (old.step()) {
      const auto start =
          static_cast<std::size_t>(std::clamp<int64_t>(old.int64(1), 0, static_cast<int64_t>(text.size())));
      const auto end =
          static_cast<std::size_t>(std::clamp<int64_t>(old.int64(2), 0, static_cast<int64_t>(text.size())));
      del.bind(1, old.int64(0)).bind_static(2, std::string_view(text).substr(start, end - std::min(start, end))).run();
    }
    old.reset();
    cached("DELETE FROM passages WHERE document_id = ?").bind(1, document_id).run();
  }

  int64_t upsert(const DocumentRecord& r, int64_t run_id) {
    auto& st = cached(
        "INSERT INTO documents(path, size, mtime_ns, hash, format, title, status, error, chars, passages, replaced,"
        " run_id, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        " ON CONFLICT(path) DO UPDATE SET size = ?2, mtime_ns = ?3, hash = ?4, format = ?5, title = ?6, status = ?7,"
        " error = ?8, chars = ?9, passages = ?10, replaced = ?11, run_id = ?12, indexed_at = ?13 RETURNING id");
    st.bind(1, r.path).bind(2, r.size).bind(3, r.mtime_ns).bind(4, r.hash).bind(5, r.format).bind(6, r.title);
    st.bind(7, r.status).bind(8, r.error).bind(9, r.chars).bind(10, r.passages).bind(11, r.replaced);
    if (run_id > 0) {
      st.bind(12, run_id);
    } else {
      st.bind_null(12);
    }
    st.bind(13, now_seconds());
    if (!st.step()) fail("store: upsert of ", r.path, " returned no id");
    const int64_t id = st.int64(0);
    st.reset();
    return id;
  }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
sql::Database& Store::database() { return impl_->db; }
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::filesystem::path& db_path, bool read_only) {
  if (!read_only) {
    const auto dir = db_path.parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) fail("database folder ", dir.string(), " does not exist");
  } else if (!std::filesystem::exists(db_path)) {
    fail("no index at ", db_path.string(), " (run `ldqa index` first)");
  }
  // A read-only open of a WAL database needs its -shm file; on read-only media (a CD,
  // a read-only mount) it cannot be made, and the database is read as immutable.
  std::unique_ptr<Impl> impl;
  int version = 0;
  for (auto mode :
       {read_only ? sql::Database::Mode::read_only : sql::Database::Mode::read_write, sql::Database::Mode::immutable}) {
    try {
      impl = std::make_unique<Impl>(db_path.string(), mode);
      register_tokenizers(impl->db.handle());
      impl->db.exec("PRAGMA foreign_keys = ON");
      if (read_only) impl->db.exec("PRAGMA mmap_size = 1073741824");  // readers only: the writer gains nothing
      impl->db.exec("PRAGMA temp_store = MEMORY");
      version = impl->db.user_version();
      break;
    } catch (const Error&) {
      if (!read_only || mode == sql::Database::Mode::immutable) throw;
    }
  }
  sql::Database& db = impl->db;
  if (version > kSchemaVersion)
    fail("database ", db_path.string(), " has schema version ", version, ", newer than this ldqa (", kSchemaVersion,
         ")");
  if (read_only) {
    if (version < kSchemaVersion)
      fail("database ", db_path.string(), " has schema version ", version, "; open it for writing once to migrate");
    return Store(std::move(impl));
  }
  if (version == 0) db.exec("PRAGMA page_size = 16384");  // only takes effect before the first table
  // Switching to WAL needs the database to itself, and SQLite does not wait for that:
  // two first runs at once would have one fail. Wait for the other (up to ~10 s).
  for (int attempt = 0;; ++attempt) {
    try {
      auto mode = db.prepare("PRAGMA journal_mode = WAL");
      if (mode.step() && mode.text(0) == "wal") break;
    } catch (const Error&) {
      if (attempt >= 1000) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  db.exec("PRAGMA wal_autocheckpoint = 4000");
  db.exec("PRAGMA synchronous = NORMAL");  // WAL: a crash loses at most the last commits, never consistency
  db.exec("PRAGMA cache_size = -65536");
  // Migrations: one writer at a time (BEGIN IMMEDIATE), the version read again inside
  // the transaction, so that two first runs on a new database do not both create it.
  for (;;) {
    sql::Transaction tx(db);
    const int v = db.user_version();
    if (v >= kSchemaVersion) break;
    db.exec(kMigrations[v]);
    db.exec("PRAGMA user_version = " + std::to_string(v + 1));
    tx.commit();
  }
  return Store(std::move(impl));
}

std::optional<DocumentRecord> Store::find(const std::string& path) {
  auto& st = impl_->cached(std::string("SELECT ") + kRecordColumns + " FROM documents WHERE path = ?");
  st.bind(1, path);
  if (!st.step()) return std::nullopt;
  DocumentRecord r = read_record(st);
  st.reset();
  return r;
}

std::vector<DocumentRecord> Store::documents() {
  auto st = impl_->db.prepare(std::string("SELECT ") + kRecordColumns + " FROM documents ORDER BY path");
  std::vector<DocumentRecord> out;
  while (st.step()) out.push_back(read_record(st));
  return out;
}

int64_t Store::put(const DocumentRecord& record, const ExtractedText& text, const std::vector<Passage>& passages,
                   int64_t run_id) {
  sql::Database& db = impl_->db;
  sql::Transaction tx(db);
  DocumentRecord r = record;
  r.status = "indexed";
  r.error.clear();
  r.format = text.format;
  r.title = text.title;
  r.passages = static_cast<int64_t>(passages.size());
  r.replaced = text.replaced;
  r.chars = passages.empty() ? 0 : passages.back().char_end;
  const int64_t id = impl_->upsert(r, run_id);
  impl_->delete_passages(id);
  impl_->cached("INSERT OR REPLACE INTO texts(document_id, body) VALUES (?, ?)")
      .bind(1, id)
      .bind_static(2, text.text)
      .run();
  auto& ins = impl_->cached(
      "INSERT INTO passages(document_id, ordinal, byte_start, byte_end, char_start, char_end, page)"
      " VALUES (?, ?, ?, ?, ?, ?, ?)");
  auto& fts = impl_->cached("INSERT INTO passages_fts(rowid, body) VALUES (?, ?)");
  for (const Passage& p : passages) {
    ins.bind(1, id).bind(2, p.ordinal).bind(3, p.byte_start).bind(4, p.byte_end).bind(5, p.char_start);
    ins.bind(6, p.char_end).bind(7, p.page).run();
    const int64_t pid = db.last_insert_rowid();
    const std::string_view body = passage_text(text.text, p);
    std::optional<ReplayScope> replay;
    if (p.index_tokens) replay.emplace(*p.index_tokens, body.size());
    fts.bind(1, pid).bind_static(2, body).run();
  }
  tx.commit();
  return id;
}

void Store::put_failed(const DocumentRecord& record, int64_t run_id) {
  sql::Transaction tx(impl_->db);
  DocumentRecord r = record;
  r.status = "failed";
  r.passages = 0;
  const int64_t id = impl_->upsert(r, run_id);
  impl_->delete_passages(id);
  impl_->db.prepare("DELETE FROM texts WHERE document_id = ?").bind(1, id).run();
  tx.commit();
}

void Store::begin_batch() { impl_->db.exec("BEGIN IMMEDIATE"); }

void Store::commit_batch() { impl_->db.exec("COMMIT"); }

void Store::touch(const std::string& path, int64_t mtime_ns) {
  impl_->cached("UPDATE documents SET mtime_ns = ? WHERE path = ?").bind(1, mtime_ns).bind(2, path).run();
}

bool Store::remove(const std::string& path) {
  sql::Transaction tx(impl_->db);
  auto st = impl_->db.prepare("SELECT id FROM documents WHERE path = ?");
  st.bind(1, path);
  if (!st.step()) return false;
  const int64_t id = st.int64(0);
  st.reset();
  impl_->delete_passages(id);
  impl_->db.prepare("DELETE FROM documents WHERE id = ?").bind(1, id).run();
  tx.commit();
  return true;
}

std::string Store::text(int64_t document_id, int64_t byte_start, int64_t byte_end) {
  auto st = impl_->db.prepare("SELECT substr(CAST(body AS BLOB), ? + 1, ?) FROM texts WHERE document_id = ?");
  st.bind(1, byte_start).bind(2, byte_end - byte_start).bind(3, document_id);
  if (!st.step()) fail("store: no text for document ", document_id);
  return st.text(0);
}

int Store::page_at(int64_t document_id, int64_t byte_offset) {
  auto st = impl_->db.prepare(
      "SELECT page FROM passages WHERE document_id = ? AND byte_start <= ? ORDER BY byte_start DESC LIMIT 1");
  st.bind(1, document_id).bind(2, byte_offset);
  return st.step() ? static_cast<int>(st.int64(0)) : 0;
}

int64_t Store::begin_run(const std::string& roots) {
  sql::Transaction tx(impl_->db);
  impl_->db.exec("UPDATE index_runs SET status = 'interrupted' WHERE status = 'running'");
  impl_->db.prepare("INSERT INTO index_runs(started_at, roots, status) VALUES (?, ?, 'running')")
      .bind(1, now_seconds())
      .bind(2, roots)
      .run();
  const int64_t id = impl_->db.last_insert_rowid();
  tx.commit();
  return id;
}

void Store::end_run(int64_t run_id, const std::string& status, const std::string& summary_json) {
  impl_->db.prepare("UPDATE index_runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?")
      .bind(1, now_seconds())
      .bind(2, status)
      .bind(3, summary_json)
      .bind(4, run_id)
      .run();
}

int64_t Store::document_count() {
  auto st = impl_->db.prepare("SELECT count(*) FROM documents WHERE status = 'indexed'");
  st.step();
  return st.int64(0);
}

std::string Store::quick_check() {
  std::string report;
  auto qc = impl_->db.prepare("PRAGMA quick_check");
  while (qc.step()) report += (report.empty() ? "" : "; ") + qc.text(0);
  return report;
}

StoreStats Store::stats() {
  StoreStats s;
  sql::Database& db = impl_->db;
  auto one = [&](const char* q) {
    auto st = db.prepare(q);
    st.step();
    return st.int64(0);
  };
  s.documents = document_count();
  s.failed = one("SELECT count(*) FROM documents WHERE status = 'failed'");
  s.passages = one("SELECT count(*) FROM passages");
  s.text_bytes = one("SELECT coalesce(sum(length(CAST(body AS BLOB))), 0) FROM texts");
  s.file_bytes = one("SELECT coalesce(sum(size), 0) FROM documents");
  s.schema_version = db.user_version();
  s.integrity = quick_check();
  auto run = db.prepare("SELECT status FROM index_runs ORDER BY id DESC LIMIT 1");
  if (run.step()) s.last_run_status = run.text(0);
  return s;
}

}  // namespace ldqa::data
