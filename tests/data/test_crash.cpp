// Crash safety: an index run in a child process is killed with SIGKILL at random
// moments; every time, the database must pass SQLite's and FTS5's integrity checks,
// hold no partial document, and a re-run must reach exactly the state of an
// uninterrupted run. Half the runs start from an index of an older version of the
// folder (files changed, added and removed since).
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "data/fts_tokenizer.hpp"
#include "data/indexer.hpp"
#include "data/store.hpp"
#include "fixtures.hpp"
#include "raw_sql.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::data;
namespace fs = std::filesystem;

namespace {

using test::query_all;

void check_consistent(const fs::path& db) {
  CHECK(query_all(db, "PRAGMA integrity_check") == "ok\n");
  if (query_all(db, "PRAGMA user_version") == "0\n") {  // killed before the schema was created
    CHECK(query_all(db, "SELECT count(*) FROM sqlite_schema") == "0\n");
    return;
  }
  CHECK(query_all(db, "PRAGMA foreign_key_check").empty());
  query_all(db, "INSERT INTO passages_fts(passages_fts) VALUES ('integrity-check')");
  // every indexed document is whole: its passage count, text and FTS rows
  CHECK(query_all(db,
                  "SELECT d.path FROM documents d WHERE d.status = 'indexed' AND (d.passages != (SELECT count(*) FROM "
                  "passages p WHERE p.document_id = d.id) OR NOT EXISTS (SELECT 1 FROM texts t WHERE t.document_id = "
                  "d.id))")
            .empty());
  // The FTS index holds exactly the stored passages: for words of the corpus, the
  // passages FTS5 finds are the passages whose text contains them (neither orphans of
  // removed passages nor missing rows). The table is contentless, so this is the way in.
  for (const char* word : {"harbor", "council", "lantern", "meadow", "compass", "minutes"}) {
    INFO(word);
    CHECK(query_all(db, std::string("SELECT rowid FROM passages_fts WHERE passages_fts MATCH '") + word +
                            "' ORDER BY rowid") ==
          query_all(db, std::string("SELECT p.id FROM passages p JOIN texts t ON t.document_id = p.document_id WHERE "
                                    "CAST(substr(CAST(t.body AS BLOB), p.byte_start + 1, p.byte_end - p.byte_start) "
                                    "AS TEXT) LIKE '%") +
                            word + "%' ORDER BY p.id"));
  }
  CHECK(query_all(db,
                  "SELECT count(*) FROM passages p JOIN texts t ON t.document_id = p.document_id WHERE "
                  "p.byte_end > length(CAST(t.body AS BLOB))") == "0\n");
}

std::string final_state(const fs::path& db) {
  return query_all(db, "SELECT path, status, hash, passages, chars, format FROM documents ORDER BY path") +
         query_all(
             db,
             "SELECT d.path, p.ordinal, p.byte_start, p.byte_end, p.char_start, p.char_end, p.page FROM passages p "
             "JOIN documents d ON d.id = p.document_id ORDER BY d.path, p.ordinal") +
         query_all(db, "SELECT count(*) FROM passages_fts WHERE passages_fts MATCH 'harbor OR council'");
}

void write_version(const fs::path& docs, int version) {
  std::mt19937_64 rng(100 + static_cast<uint64_t>(version));
  for (int i = 0; i < 60; ++i) {
    std::string name = "f";  // built with += : GCC 12 warns (-Wrestrict) on "literal" + std::string
    name += std::to_string(i);
    name += i % 4 ? ".txt" : ".md";
    std::string folder = "dir";
    folder += std::to_string(i % 5);
    const fs::path file = docs / folder / name;
    if (version == 2 && i % 7 == 3) {  // removed in version 2
      fs::remove(file);
      continue;
    }
    if (version == 2 && i % 3 != 0) continue;  // unchanged
    std::string text;
    const int paragraphs = 5 + static_cast<int>(rng() % 60);
    for (int p = 0; p < paragraphs; ++p) text += test::filler(rng, 20 + static_cast<int>(rng() % 200)) + "\n\n";
    test::write_file(file, text);
  }
  if (version == 2) {
    test::write_file(docs / "new.pdf", test::make_pdf({{"harbor council minutes"}, {"second page"}}));
    test::write_file(docs / "corrupt.pdf", "%PDF-1.5 truncated");
  }
}

IndexOptions options() {
  IndexOptions o;
  o.prune = true;
  o.threads = 2;
  return o;
}

double run_index(const fs::path& db, const fs::path& docs) {
  const auto t0 = std::chrono::steady_clock::now();
  Store s = Store::open(db);
  index_paths(s, {docs}, options());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("SIGKILL at random points never corrupts the index, and a re-run completes it", "[data][crash]") {
  test::TempDir dir;
  const fs::path docs = dir / "docs";
  write_version(docs, 1);
  const fs::path old_db = dir / "v1.db";
  run_index(old_db, docs);
  // make sure version 2's files get new mtimes
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write_version(docs, 2);
  const fs::path ref_db = dir / "reference.db";
  const double seconds = run_index(ref_db, docs);
  const std::string reference = final_state(ref_db);
  check_consistent(ref_db);
  std::mt19937_64 rng(test::test_seed());
  int killed_mid_run = 0;
  for (int trial = 0; trial < 16; ++trial) {
    const fs::path db = dir / ("trial" + std::to_string(trial) + ".db");
    if (trial % 2) fs::copy_file(old_db, db);
    const auto delay = std::chrono::microseconds(
        static_cast<int64_t>(std::uniform_real_distribution<double>(0.0, 1.1)(rng) * seconds * 1e6));
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        Store s = Store::open(db);
        index_paths(s, {docs}, options());
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    std::this_thread::sleep_for(delay);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) ++killed_mid_run;
    INFO("trial " << trial << " delay " << delay.count() << " us of " << seconds * 1e6 << " seed "
                  << test::test_seed());
    if (fs::exists(db)) check_consistent(db);
    run_index(db, docs);
    check_consistent(db);
    CHECK(final_state(db) == reference);
    CHECK(query_all(db, "SELECT status FROM index_runs ORDER BY id DESC LIMIT 1") == "done\n");
  }
  CHECK(killed_mid_run >= 8);  // most kills must land inside a run, or the test proves little
}
