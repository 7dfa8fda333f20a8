// ldqa's document store: one SQLite file (WAL, foreign keys, versioned schema) with
// documents, their normalised text, passages with exact offsets, an FTS5 index over
// the passages, and a record of index runs; the readers that fill it (txt, md, html,
// pdf); folder indexing (incremental, parallel parsing, one writer); and retrieval
// (BM25 over passages, contexts built from hits and their neighbours).
//
// Offsets: every passage and context has [byte_start, byte_end) into the stored UTF-8
// text (always on character boundaries) and [char_start, char_end) in Unicode code
// points; PDFs also carry the 1-based page.
//
// Errors: ldqa::Error with the failing path or value. A bad file never throws out of
// index_paths: it is reported in the summary. Each document is written in one
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

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ldqa::data {

inline constexpr int kSchemaVersion = 2;

// ------------------------------------------------------------------------- readers
struct PageSpan {
  int page = 0;  // 1-based
  int64_t byte_start = 0, byte_end = 0;
};

struct ExtractedText {
  std::string format;  // "txt", "md", "html", "pdf"
  std::string title;
  std::string text;             // normalised UTF-8: valid, \n line ends, no BOM, no NUL
  std::vector<PageSpan> pages;  // PDFs only
  int64_t replaced = 0;         // invalid bytes replaced by U+FFFD
};

// Why a file is not indexed (skipped) — as opposed to failing to read.
struct SkipReason {
  std::string reason;
};

// Recognises the format by content first (PDF magic, binary bytes), then extension.
// Returns a SkipReason for unsupported or binary files; throws ldqa::Error for files
// of a supported format that cannot be read (corrupt PDF, ...).
std::variant<ExtractedText, SkipReason> extract_text(const std::filesystem::path& path, std::string_view bytes);

// Whether extract_text reads files with this name's extension (.txt .text .md .markdown
// .html .htm .xhtml .pdf, any case). Other files are only read when they hold a PDF.
bool has_supported_extension(const std::filesystem::path& path);

// UTF-8 cleanup used by every reader: invalid sequences -> U+FFFD (counted), NUL -> U+FFFD,
// CRLF/CR -> LF, a leading BOM dropped.
std::string normalise_utf8(std::string_view in, int64_t* replaced);

// ------------------------------------------------------------------------ passages
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

// --------------------------------------------------------------------------- store
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
  std::vector<int64_t> hit_passages;  // ids of the hits it contains
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

  // BM25 over passages. Any question is safe: it is reduced to quoted terms.
  std::vector<Hit> search(std::string_view question, int k);
  // Per document: hits plus neighbouring passages, merged into contiguous windows of at
  // most `budget` tokens (count_tokens, default: words * 4 / 3 rounded up).
  std::vector<Context> build_contexts(const std::vector<Hit>& hits, int budget,
                                      const std::function<int(std::string_view)>& count_tokens = {});
  StoreStats stats();        // scans every text and runs quick_check: for `ldqa stats`, not hot paths
  int64_t document_count();  // indexed documents, from one count

  // The FTS5 query a question becomes (exposed for tests).
  static std::string fts_query(std::string_view question);

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ------------------------------------------------------------------------ indexing
struct IndexOptions {
  std::vector<std::string> include;  // globs; empty: every supported file
  std::vector<std::string> exclude;  // globs (a glob without '/' matches the file or directory name)
  bool prune = false;                // remove documents under the roots whose files are gone
  int threads = 0;                   // readers/parsers; 0: all cores but one (the writer's)
  PassageOptions passages;
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. on Ctrl-C): stop after the current file
};

struct IndexProgress {
  int64_t files_done = 0, files_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;
  std::string current;
};

struct IndexSummary {
  int64_t indexed = 0, unchanged = 0, removed = 0;
  int64_t bytes_read = 0;
  double seconds = 0;
  bool interrupted = false;  // cancelled: what was written is complete, the rest is not started
  std::vector<std::pair<std::string, std::string>> skipped;  // path, reason
  std::vector<std::pair<std::string, std::string>> failed;   // path, error
  std::string to_json() const;
};

// Walks the roots (files or folders; recursive, symlinks followed with loop detection)
// and brings the store up to date. `progress` is called from the calling thread.
IndexSummary index_paths(Store& store, const std::vector<std::filesystem::path>& roots, const IndexOptions& options,
                         const std::function<void(const IndexProgress&)>& progress = {});

// A one-line terminal progress bar (files, MB/s, ETA, current file) for index_paths.
class ProgressBar {
 public:
  explicit ProgressBar(std::FILE* out);
  void update(const IndexProgress& p);
  void finish();

 private:
  std::FILE* out_;
  double start_;
  double last_draw_ = -1;
};

}  // namespace ldqa::data
