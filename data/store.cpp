// The SQLite store: schema and migrations, document writes (one transaction each),
// index runs, BM25 retrieval and context building.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <unordered_map>
#include <unordered_set>

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
  DocumentRecord r;
  r.id = st.int64(0);
  r.path = st.text(1);
  r.size = st.int64(2);
  r.mtime_ns = st.int64(3);
  r.hash = st.text(4);
  r.format = st.text(5);
  r.title = st.text(6);
  r.status = st.text(7);
  r.error = st.text(8);
  r.chars = st.int64(9);
  r.passages = st.int64(10);
  r.replaced = st.int64(11);
  return r;
}

constexpr const char* kRecordColumns =
    "id, path, size, mtime_ns, hash, format, title, status, error, chars, passages, replaced";

}  // namespace

struct Store::Impl {
  sql::Database db;
  bool read_only;
  // Prepared once per connection: the indexer runs these for every document.
  std::unordered_map<std::string, std::unique_ptr<sql::Statement>> statements;
  Impl(const std::string& path, bool ro) : db(path, ro), read_only(ro) {}

  sql::Statement& cached(const std::string& text) {
    auto& slot = statements[text];
    if (!slot) slot = std::make_unique<sql::Statement>(db.prepare(text));
    slot->reset();
    return *slot;
  }

  void delete_passages(int64_t document_id) {
    // Contentless FTS5: each row is removed by giving back the text it indexed.
    auto& old = cached(
        "SELECT p.id, substr(CAST(t.body AS BLOB), p.byte_start + 1, p.byte_end - p.byte_start) FROM passages p"
        " JOIN texts t ON t.document_id = p.document_id WHERE p.document_id = ?");
    old.bind(1, document_id);
    auto& del = cached("INSERT INTO passages_fts(passages_fts, rowid, body) VALUES ('delete', ?, ?)");
    while (old.step()) del.bind(1, old.int64(0)).bind(2, old.text_view(1)).run();
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
  auto impl = std::make_unique<Impl>(db_path.string(), read_only);
  sql::Database& db = impl->db;
  register_tokenizers(db.handle());
  db.exec("PRAGMA foreign_keys = ON");
  if (read_only) db.exec("PRAGMA mmap_size = 1073741824");  // readers only: the writer gains nothing
  db.exec("PRAGMA temp_store = MEMORY");
  const int version = db.user_version();
  if (version > kSchemaVersion)
    fail("database ", db_path.string(), " has schema version ", version, ", newer than this ldqa (", kSchemaVersion,
         ")");
  if (read_only) {
    if (version < kSchemaVersion)
      fail("database ", db_path.string(), " has schema version ", version, "; open it for writing once to migrate");
    return Store(std::move(impl));
  }
  if (version == 0) db.exec("PRAGMA page_size = 16384");  // only takes effect before the first table
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA wal_autocheckpoint = 4000");
  db.exec("PRAGMA synchronous = NORMAL");  // WAL: a crash loses at most the last commits, never consistency
  db.exec("PRAGMA cache_size = -65536");
  for (int v = version; v < kSchemaVersion; ++v) {
    sql::Transaction tx(db);
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

namespace {

// Terms are runs of ASCII letters/digits or non-ASCII bytes, lower-cased, de-duplicated;
// stopwords are dropped (the index does not hold them either), so a question of
// stopwords alone has no terms and finds nothing.
std::vector<std::string> question_terms(std::string_view question) {
  std::vector<std::string> terms, kept;
  std::string term;
  auto flush = [&] {
    if (!term.empty() && std::find(terms.begin(), terms.end(), term) == terms.end()) terms.push_back(term);
    term.clear();
  };
  for (char ch : question) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      term.push_back(static_cast<char>(std::tolower(c)));
    } else {
      flush();
    }
  }
  flush();
  for (const auto& t : terms)
    if (!is_stopword(t)) kept.push_back(t);
  if (kept.size() > 32) kept.resize(32);
  return kept;
}

// Each term quoted, so no FTS5 syntax (quotes, AND/OR/NOT/NEAR, *, ^, -, :, parentheses)
// survives from the question.
std::string or_query(const std::vector<std::string>& terms) {
  std::string query;
  for (const auto& t : terms) {
    if (!query.empty()) query += " OR ";
    query += '"' + t + '"';
  }
  return query;
}

}  // namespace

std::string Store::fts_query(std::string_view question) { return or_query(question_terms(question)); }

std::vector<Hit> Store::search(std::string_view question, int k) {
  std::vector<Hit> hits;
  std::vector<std::string> terms = question_terms(question);
  if (terms.empty() || k <= 0) return hits;
  sql::Database& db = impl_->db;
  // Each term's document frequency, counted only up to what a query may afford (FTS5
  // stops reading the doclist there): a common word costs no more than a rare one.
  constexpr std::size_t kMaxTerms = 6;
  constexpr int64_t kMaxPostings = 4000;
  std::vector<int64_t> df(terms.size(), 0);
  auto& count = impl_->cached("SELECT count(*) FROM (SELECT 1 FROM passages_fts WHERE passages_fts MATCH ? LIMIT ?)");
  for (std::size_t i = 0; i < terms.size(); ++i) {
    count.bind(1, '"' + terms[i] + '"').bind(2, kMaxPostings + 1);
    if (count.step()) df[i] = count.int64(0);
    count.reset();
  }
  std::vector<std::size_t> order(terms.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return df[a] < df[b]; });
  // The rarest terms decide: at most kMaxTerms, each in at most kMaxPostings passages and
  // together in at most twice that. BM25 then ranks a bounded candidate set whatever the
  // size of the index; common terms would add little to the ranking and most of the
  // cost. Only a question made of common words alone searches one of them.
  std::vector<std::string> kept;
  int64_t postings = 0;
  for (std::size_t i : order) {
    if (df[i] == 0 || df[i] > kMaxPostings || kept.size() >= kMaxTerms) continue;
    if (!kept.empty() && postings + df[i] > 2 * kMaxPostings) break;
    kept.push_back(terms[i]);
    postings += df[i];
  }
  if (kept.empty())
    for (std::size_t i : order)
      if (df[i] > 0) {
        kept.push_back(terms[i]);
        break;
      }
  if (kept.empty()) return hits;
  auto st = db.prepare(
      "WITH top AS (SELECT rowid AS id, rank FROM passages_fts WHERE passages_fts MATCH ?1 ORDER BY rank LIMIT ?2)"
      " SELECT p.id, top.rank, p.document_id, p.ordinal, p.byte_start, p.byte_end, p.char_start, p.char_end, p.page,"
      " d.path FROM top JOIN passages p ON p.id = top.id JOIN documents d ON d.id = p.document_id ORDER BY top.rank");
  st.bind(1, or_query(kept)).bind(2, k);
  while (st.step()) {
    Hit h;
    h.passage_id = st.int64(0);
    h.score = -st.real(1);  // FTS5's bm25 is lower-is-better
    h.document_id = st.int64(2);
    h.ordinal = static_cast<int>(st.int64(3));
    h.passage = {h.ordinal, st.int64(4), st.int64(5), st.int64(6), st.int64(7), static_cast<int>(st.int64(8)), {}};
    h.path = st.text(9);
    hits.push_back(std::move(h));
  }
  return hits;
}

std::vector<Context> Store::build_contexts(const std::vector<Hit>& hits, int budget,
                                           const std::function<int(std::string_view)>& count_tokens) {
  auto tokens = [&](std::string_view s) { return count_tokens ? count_tokens(s) : (count_words(s) * 4 + 2) / 3; };
  std::map<int64_t, std::vector<const Hit*>> by_document;
  for (const Hit& h : hits) by_document[h.document_id].push_back(&h);
  std::vector<Context> out;
  for (auto& [doc_id, doc_hits] : by_document) {
    auto meta = impl_->db.prepare(
        "SELECT d.path, d.title, t.body FROM documents d JOIN texts t ON t.document_id = d.id"
        " WHERE d.id = ?");
    meta.bind(1, doc_id);
    if (!meta.step()) continue;  // re-indexed or removed since the search
    const std::string path = meta.text(0), title = meta.text(1), body = meta.text(2);
    std::vector<Passage> passages;
    auto ps = impl_->db.prepare(
        "SELECT ordinal, byte_start, byte_end, char_start, char_end, page FROM passages"
        " WHERE document_id = ? ORDER BY ordinal");
    ps.bind(1, doc_id);
    while (ps.step())
      passages.push_back({static_cast<int>(ps.int64(0)),
                          ps.int64(1),
                          ps.int64(2),
                          ps.int64(3),
                          ps.int64(4),
                          static_cast<int>(ps.int64(5)),
                          {}});
    const int n = static_cast<int>(passages.size());
    std::vector<int> cost(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
      cost[static_cast<std::size_t>(i)] = tokens(
          std::string_view(body).substr(static_cast<std::size_t>(passages[static_cast<std::size_t>(i)].byte_start),
                                        static_cast<std::size_t>(passages[static_cast<std::size_t>(i)].byte_end -
                                                                 passages[static_cast<std::size_t>(i)].byte_start)));
    std::sort(doc_hits.begin(), doc_hits.end(), [](const Hit* a, const Hit* b) { return a->score > b->score; });
    struct Window {
      int first, last;
      double score;
      std::vector<int64_t> ids;
    };
    std::vector<Window> windows;
    for (const Hit* h : doc_hits) {
      if (h->ordinal < 0 || h->ordinal >= n) continue;
      auto inside = std::find_if(windows.begin(), windows.end(),
                                 [&](const Window& w) { return w.first <= h->ordinal && h->ordinal <= w.last; });
      if (inside != windows.end()) {
        inside->ids.push_back(h->passage_id);
        continue;
      }
      Window w{h->ordinal, h->ordinal, h->score, {h->passage_id}};
      int used = cost[static_cast<std::size_t>(h->ordinal)];
      for (bool grew = true; grew;) {  // neighbours, alternating sides, within the budget
        grew = false;
        if (w.first > 0 && used + cost[static_cast<std::size_t>(w.first - 1)] <= budget) {
          used += cost[static_cast<std::size_t>(--w.first)];
          grew = true;
        }
        if (w.last + 1 < n && used + cost[static_cast<std::size_t>(w.last + 1)] <= budget) {
          used += cost[static_cast<std::size_t>(++w.last)];
          grew = true;
        }
      }
      windows.push_back(std::move(w));
    }
    // Merge windows that overlap or touch (their union may exceed the budget slightly
    // only when both were already full; kept as one contiguous text).
    std::sort(windows.begin(), windows.end(), [](const Window& a, const Window& b) { return a.first < b.first; });
    std::vector<Window> merged;
    for (auto& w : windows) {
      if (!merged.empty() && w.first <= merged.back().last + 1) {
        merged.back().last = std::max(merged.back().last, w.last);
        merged.back().score = std::max(merged.back().score, w.score);
        merged.back().ids.insert(merged.back().ids.end(), w.ids.begin(), w.ids.end());
      } else {
        merged.push_back(std::move(w));
      }
    }
    for (auto& w : merged) {
      const Passage& a = passages[static_cast<std::size_t>(w.first)];
      const Passage& b = passages[static_cast<std::size_t>(w.last)];
      Context c;
      c.document_id = doc_id;
      c.path = path;
      c.title = title;
      c.byte_start = a.byte_start;
      c.byte_end = b.byte_end;
      c.char_start = a.char_start;
      c.char_end = b.char_end;
      c.first_page = a.page;
      c.last_page = b.page;
      c.text = body.substr(static_cast<std::size_t>(a.byte_start), static_cast<std::size_t>(b.byte_end - a.byte_start));
      c.score = w.score;
      c.hit_passages = std::move(w.ids);
      out.push_back(std::move(c));
    }
  }
  std::sort(out.begin(), out.end(), [](const Context& a, const Context& b) { return a.score > b.score; });
  return out;
}

int64_t Store::document_count() {
  auto st = impl_->db.prepare("SELECT count(*) FROM documents WHERE status = 'indexed'");
  st.step();
  return st.int64(0);
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
  auto qc = db.prepare("PRAGMA quick_check");
  while (qc.step()) s.integrity += (s.integrity.empty() ? "" : "; ") + qc.text(0);
  auto run = db.prepare("SELECT status FROM index_runs ORDER BY id DESC LIMIT 1");
  if (run.step()) s.last_run_status = run.text(0);
  return s;
}

}  // namespace ldqa::data
