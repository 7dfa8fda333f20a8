// The store on real SQLite files in temporary folders: incremental indexing, failures,
// odd names and trees, pruning, retrieval safety, contexts, WAL readers, migrations.
#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <thread>

#include "data/store.hpp"
#include "fixtures.hpp"
#include "ldqa/error.hpp"

using namespace ldqa;
using namespace ldqa::data;
namespace fs = std::filesystem;

namespace {

struct Corpus {
  test::TempDir dir;
  fs::path docs() const { return dir / "docs"; }
  fs::path db() const { return dir / "index.db"; }
};

void make_corpus(const Corpus& c) {
  std::mt19937_64 rng(3);
  test::write_file(c.docs() / "plain.txt",
                   "The lighthouse keeper counted forty-two ships.\n\n" + test::filler(rng, 300));
  test::write_file(c.docs() / "notes.md", "# Garden notes\n\nTomatoes need copper stakes and sunlight.\n");
  test::write_file(c.docs() / "page.html",
                   "<html><head><title>Museum</title><script>zebra()</script></head><body><p>The museum "
                   "opens at nine o&#39;clock.</p></body></html>");
  test::write_file(c.docs() / "report.pdf",
                   test::make_pdf({{"Quarterly revenue grew."}, {"The auditor signed on page two."}}, "Report"));
  test::write_file(c.docs() / "sub dir/na\xC3\xAFve caf\xC3\xA9 notes.txt", "Diacritics: r\xC3\xA9sum\xC3\xA9 review.");
  test::write_file(c.docs() / "broken.pdf", "%PDF-1.7\n1 0 obj garbage");
  std::string binary = "text";
  binary += std::string(3, '\0');
  test::write_file(c.docs() / "binary.txt", binary);
  test::write_file(c.docs() / "image.png", "\x89PNG\r\n");
  test::write_file(c.docs() / "empty.txt", "");
  test::write_file(c.docs() / ".hidden/secret.txt", "hidden words");
  std::string invalid = "Invalid \xFF\xFE bytes but a zeppelin inside.";
  test::write_file(c.docs() / "invalid.txt", invalid);
}

std::vector<std::string> hit_paths(Store& s, const std::string& q) {
  std::vector<std::string> out;
  for (const auto& h : s.search(q, 10)) out.push_back(fs::path(h.path).filename().string());
  return out;
}

}  // namespace

TEST_CASE("indexing a folder: formats, failures reported, odd names, hidden files", "[data][store]") {
  Corpus c;
  make_corpus(c);
  Store s = Store::open(c.db());
  const auto sum = index_paths(s, {c.docs()}, {});
  CHECK(sum.indexed == 7);  // plain, notes, page, report, naive cafe, empty, invalid
  REQUIRE(sum.failed.size() == 1);
  CHECK(sum.failed[0].first.find("broken.pdf") != std::string::npos);
  CHECK_THAT(sum.failed[0].second, Catch::Contains("PDF"));
  CHECK(sum.skipped.size() == 2);  // binary.txt, image.png
  const auto failed = s.find((c.docs() / "broken.pdf").string());
  REQUIRE(failed);
  CHECK(failed->status == "failed");
  CHECK(hit_paths(s, "lighthouse") == std::vector<std::string>{"plain.txt"});
  CHECK(hit_paths(s, "tomatoes").front() == "notes.md");
  CHECK(hit_paths(s, "zebra").empty());  // script text is not indexed
  CHECK(hit_paths(s, "auditor").front() == "report.pdf");
  CHECK(s.search("auditor", 1)[0].passage.page == 2);
  CHECK(hit_paths(s, "resume").front() == "na\xC3\xAFve caf\xC3\xA9 notes.txt");     // diacritics folded
  CHECK(hit_paths(s, "reviewing").front() == "na\xC3\xAFve caf\xC3\xA9 notes.txt");  // porter stemming
  CHECK(hit_paths(s, "secret").empty());
  CHECK(s.find((c.docs() / "invalid.txt").string())->replaced == 2);
  CHECK(hit_paths(s, "zeppelin").front() == "invalid.txt");
  const auto st = s.stats();
  CHECK(st.integrity == "ok");
  CHECK(st.documents == 7);
  CHECK(st.failed == 1);
  CHECK(st.last_run_status == "done");
}

TEST_CASE("re-indexing touches only what changed; prune removes what is gone", "[data][store]") {
  Corpus c;
  make_corpus(c);
  Store s = Store::open(c.db());
  index_paths(s, {c.docs()}, {});
  const auto before = s.find((c.docs() / "notes.md").string());
  auto again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 0);
  CHECK(again.unchanged == 8);  // the 7 documents and the failed PDF
  // same content, new mtime: hashed, not re-indexed
  const auto notes = c.docs() / "notes.md";
  fs::last_write_time(notes, fs::last_write_time(notes) + std::chrono::seconds(5));
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 0);
  CHECK(again.unchanged == 8);
  CHECK(s.find(notes.string())->id == before->id);
  // changed content: re-indexed, old words gone, new ones found
  test::write_file(notes, "# Garden notes\n\nPumpkins replaced everything.\n");
  fs::last_write_time(notes, fs::last_write_time(notes) + std::chrono::seconds(10));
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 1);
  CHECK(hit_paths(s, "pumpkins") == std::vector<std::string>{"notes.md"});
  CHECK(hit_paths(s, "tomatoes").empty());
  // a deleted file stays until --prune
  fs::remove(c.docs() / "page.html");
  index_paths(s, {c.docs()}, {});
  CHECK(s.find((c.docs() / "page.html").string()));
  IndexOptions prune;
  prune.prune = true;
  again = index_paths(s, {c.docs()}, prune);
  CHECK(again.removed == 1);
  CHECK_FALSE(s.find((c.docs() / "page.html").string()));
  CHECK(hit_paths(s, "museum").empty());
  CHECK(s.stats().integrity == "ok");
}

TEST_CASE("globs, deep trees, symlink loops and special files", "[data][store]") {
  Corpus c;
  fs::path deep = c.docs();
  for (int i = 0; i < 60; ++i) deep /= "d" + std::to_string(i);
  test::write_file(deep / "bottom.txt", "abyssal words");
  test::write_file(c.docs() / "keep.md", "keep this one");
  test::write_file(c.docs() / "drafts/skip.md", "drafts are excluded");
  fs::create_directory_symlink(c.docs(), c.docs() / "loop");
  fs::create_symlink(c.docs() / "missing.txt", c.docs() / "dangling.txt");
  REQUIRE(mkfifo((c.docs() / "pipe.txt").c_str(), 0600) == 0);
  Store s = Store::open(c.db());
  IndexOptions o;
  o.exclude = {"drafts"};
  const auto sum = index_paths(s, {c.docs()}, o);
  CHECK(sum.indexed == 2);
  CHECK(sum.failed.empty());
  bool loop = false, dangling = false, pipe = false;
  for (const auto& [path, reason] : sum.skipped) {
    loop |= reason.find("loop") != std::string::npos;
    dangling |= path.find("dangling") != std::string::npos;
    pipe |= path.find("pipe") != std::string::npos && reason.find("regular") != std::string::npos;
  }
  CHECK(loop);
  CHECK(dangling);
  CHECK(pipe);
  CHECK(hit_paths(s, "abyssal") == std::vector<std::string>{"bottom.txt"});
  IndexOptions only_txt;
  only_txt.include = {"*.txt"};
  Corpus c2;
  test::write_file(c2.docs() / "a.txt", "alpha");
  test::write_file(c2.docs() / "b.md", "beta");
  Store s2 = Store::open(c2.db());
  CHECK(index_paths(s2, {c2.docs()}, only_txt).indexed == 1);
}

TEST_CASE("any question is a safe FTS query with the same meaning", "[data][store][retrieval]") {
  Corpus c;
  make_corpus(c);
  Store s = Store::open(c.db());
  index_paths(s, {c.docs()}, {});
  const auto plain = hit_paths(s, "lighthouse keeper ships");
  REQUIRE_FALSE(plain.empty());
  for (const char* q : {"\"lighthouse keeper ships", "lighthouse AND keeper OR ships", "lighthouse NEAR(keeper ships",
                        "lighthouse* -keeper ships", "body: lighthouse keeper ships", "((lighthouse)) keeper) ships",
                        "lighthouse ^keeper {ships}", "LIGHTHOUSE, keeper; ships?!"}) {
    INFO(q << " -> " << Store::fts_query(q));
    CHECK_NOTHROW(s.search(q, 10));
    CHECK(hit_paths(s, q) == plain);
  }
  CHECK(Store::fts_query("What is the capital of France?") == "\"capital\" OR \"france\"");
  CHECK(Store::fts_query("the of and") == "\"the\" OR \"of\" OR \"and\"");
  CHECK(s.search("", 5).empty());
  CHECK(s.search("!!! ??? ...", 5).empty());
}

TEST_CASE("contexts: hits with neighbours, merged, within the budget, exact offsets", "[data][store][retrieval]") {
  Corpus c;
  std::mt19937_64 rng(9);
  std::string body;
  for (int p = 0; p < 30; ++p) {
    body += test::filler(rng, 60);
    if (p == 10) body += " quokka";
    if (p == 12) body += " quokka wombat";
    if (p == 25) body += " wombat";
    body += "\n\n";
  }
  test::write_file(c.docs() / "animals.txt", body);
  Store s = Store::open(c.db());
  IndexOptions o;
  o.passages = {60, 100};
  index_paths(s, {c.docs()}, o);
  const auto hits = s.search("quokka wombat", 10);
  REQUIRE(hits.size() == 3);
  const int budget = 400;
  const auto contexts = s.build_contexts(hits, budget);
  REQUIRE(contexts.size() == 2);  // passages 10 and 12 merge; 25 stands alone
  std::size_t hits_inside = 0;
  const std::string& stored = body;
  for (const auto& ctx : contexts) {
    CHECK(ctx.text == stored.substr(static_cast<std::size_t>(ctx.byte_start),
                                    static_cast<std::size_t>(ctx.byte_end - ctx.byte_start)));
    CHECK(s.text(ctx.document_id, ctx.byte_start, ctx.byte_end) == ctx.text);
    hits_inside += ctx.hit_passages.size();
    for (int64_t id : ctx.hit_passages) {
      const auto h = std::find_if(hits.begin(), hits.end(), [&](const Hit& x) { return x.passage_id == id; });
      CHECK(h->passage.byte_start >= ctx.byte_start);
      CHECK(h->passage.byte_end <= ctx.byte_end);
    }
  }
  CHECK(hits_inside == 3);
  CHECK(contexts[0].score >= contexts[1].score);
  const auto& lone = contexts[0].text.find("quokka") == std::string::npos ? contexts[0] : contexts[1];
  int words = 0;
  bool in = false;
  for (char ch : lone.text) {
    const bool sp = ch == ' ' || ch == '\n';
    if (!sp && !in) ++words;
    in = !sp;
  }
  CHECK((words * 4 + 2) / 3 <= budget);
  CHECK((words * 4 + 2) / 3 > budget - 130);  // it did grow towards the budget
}

TEST_CASE("a reader sees each document before or after its transaction (WAL)", "[data][store]") {
  Corpus c;
  test::write_file(c.docs() / "a.txt", "original aardvark text");
  Store writer = Store::open(c.db());
  index_paths(writer, {c.docs()}, {});
  Store reader = Store::open(c.db(), true);
  CHECK(hit_paths(reader, "aardvark").size() == 1);
  // hold a write transaction open on a raw connection while the reader reads
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(c.db().c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(
              raw,
              "BEGIN IMMEDIATE; INSERT INTO passages_fts(passages_fts) VALUES ('delete-all'); DELETE FROM passages;",
              nullptr, nullptr, nullptr) == SQLITE_OK);
  CHECK(hit_paths(reader, "aardvark").size() == 1);  // old version still visible
  sqlite3_exec(raw, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(raw);
  CHECK(hit_paths(reader, "aardvark").empty());  // new version
}

TEST_CASE("schema versions: created, refused when newer, read-only needs an index", "[data][store]") {
  Corpus c;
  {
    Store s = Store::open(c.db());
    CHECK(s.stats().schema_version == kSchemaVersion);
  }
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(c.db().c_str(), &raw) == SQLITE_OK);
  sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(raw);
  CHECK_THROWS_WITH(Store::open(c.db()), Catch::Contains("schema version 99"));
  CHECK_THROWS_WITH(Store::open(c.dir / "nowhere.db", true), Catch::Contains("no index at"));
  CHECK_THROWS_WITH(Store::open(c.dir / "no/such/dir/x.db"), Catch::Contains("does not exist"));
}
