// The store on real SQLite files in temporary folders: incremental indexing, failures,
// odd names and trees, pruning, retrieval safety, contexts, WAL readers, migrations.
#include <sqlite3.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <thread>

#include "data/fts_tokenizer.hpp"
#include "data/indexer.hpp"
#include "data/retrieval.hpp"
#include "data/store.hpp"
#include "fixtures.hpp"
#include "ldqa/error.hpp"
#include "raw_sql.hpp"

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
  for (const auto& h : Retriever(s).search(q, 10)) out.push_back(fs::path(h.path).filename().string());
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
  CHECK(Retriever(s).search("auditor", 1)[0].passage.page == 2);
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

TEST_CASE("re-indexing touches only what changed; what is gone is removed", "[data][store]") {
  Corpus c;
  make_corpus(c);
  Store s = Store::open(c.db());
  index_paths(s, {c.docs()}, {});
  const auto before = s.find((c.docs() / "notes.md").string());
  auto again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 0);
  CHECK(again.unchanged == 7);  // the 7 documents; the failed PDF is tried again, and fails again
  REQUIRE(again.failed.size() == 1);
  CHECK(again.failed[0].first.find("broken.pdf") != std::string::npos);
  // same content, new mtime: hashed, not re-indexed
  const auto notes = c.docs() / "notes.md";
  fs::last_write_time(notes, fs::last_write_time(notes) + std::chrono::seconds(5));
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 0);
  CHECK(again.unchanged == 7);
  CHECK(s.find(notes.string())->id == before->id);
  // changed content: re-indexed, old words gone, new ones found
  test::write_file(notes, "# Garden notes\n\nPumpkins replaced everything.\n");
  fs::last_write_time(notes, fs::last_write_time(notes) + std::chrono::seconds(10));
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.indexed == 1);
  CHECK(hit_paths(s, "pumpkins") == std::vector<std::string>{"notes.md"});
  CHECK(hit_paths(s, "tomatoes").empty());
  // a deleted file stays only when asked to (prune = false); by default it goes
  fs::remove(c.docs() / "page.html");
  IndexOptions keep;
  keep.prune = false;
  again = index_paths(s, {c.docs()}, keep);
  CHECK(again.removed == 0);
  CHECK(s.find((c.docs() / "page.html").string()));
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.removed == 1);
  CHECK_FALSE(s.find((c.docs() / "page.html").string()));
  CHECK(hit_paths(s, "museum").empty());
  // a document of another root is not touched by this root's pruning
  test::write_file(c.dir / "other/keep.txt", "An unrelated heron.");
  index_paths(s, {c.dir / "other"}, {});
  fs::remove(c.docs() / "notes.md");
  again = index_paths(s, {c.docs()}, {});
  CHECK(again.removed == 1);
  CHECK(s.find((c.dir / "other/keep.txt").string()));
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
    INFO(q << " -> " << fts_query(q));
    CHECK_NOTHROW(Retriever(s).search(q, 10));
    CHECK(hit_paths(s, q) == plain);
  }
  CHECK(fts_query("What is the capital of France?") == "\"capital\" OR \"france\"");
  CHECK(fts_query("the of and").empty());  // stopwords alone: nothing to search for
  CHECK(Retriever(s).search("the of and", 5).empty());
  CHECK(Retriever(s).search("", 5).empty());
  CHECK(Retriever(s).search("!!! ??? ...", 5).empty());
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
  const auto hits = Retriever(s).search("quokka wombat", 10);
  REQUIRE(hits.size() == 3);
  const int budget = 400;
  const auto contexts = Retriever(s).contexts(hits, budget);
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
  // Each context reports what it costs the reader: the sum of its passages' counts.
  int calls = 0;
  const auto counted = Retriever(s).contexts(hits, budget, [&](std::string_view text) {
    ++calls;
    return static_cast<int>(text.size());  // bytes: a count distinct from the word estimate
  });
  for (const auto& ctx : counted) {
    CHECK(ctx.tokens > 0);
    CHECK(ctx.tokens >= static_cast<int>(ctx.text.size()) - 2 * 30);  // the separators between passages
    CHECK(ctx.tokens <= static_cast<int>(ctx.text.size()));
  }
  CHECK(calls > 0);
}

TEST_CASE("contexts: a total budget keeps the best hits' windows and bounds what is read", "[data][store][retrieval]") {
  Corpus c;
  std::mt19937_64 rng(19);
  for (const char* name : {"a.txt", "b.txt"}) {
    std::string body;
    for (int p = 0; p < 20; ++p) {
      body += test::filler(rng, 50);
      if (p == 3 || p == 15) body += name[0] == 'a' ? " quokka quokka quokka" : " quokka";
      body += "\n\n";
    }
    test::write_file(c.docs() / name, body);
  }
  Store s = Store::open(c.db());
  IndexOptions o;
  o.passages = {50, 90};
  index_paths(s, {c.docs()}, o);
  Retriever r(s);
  const auto hits = r.search("quokka", 10);
  REQUIRE(hits.size() == 4);
  const Hit& best =
      *std::max_element(hits.begin(), hits.end(), [](const Hit& x, const Hit& y) { return x.score < y.score; });
  const int budget = 300;
  const auto unlimited = r.contexts(hits, budget);
  int unlimited_tokens = 0;
  for (const auto& ctx : unlimited) unlimited_tokens += ctx.tokens;
  // A total above what the windows take changes nothing.
  const auto roomy = r.contexts(hits, budget, {}, unlimited_tokens + 1000);
  REQUIRE(roomy.size() == unlimited.size());
  for (std::size_t i = 0; i < roomy.size(); ++i) CHECK(roomy[i].text == unlimited[i].text);
  // The smallest total: the best hit's passage alone.
  const auto tiny = r.contexts(hits, budget, {}, 1);
  REQUIRE(tiny.size() == 1);
  CHECK(tiny[0].byte_start == best.passage.byte_start);
  CHECK(tiny[0].byte_end == best.passage.byte_end);
  CHECK(tiny[0].hit_passages == std::vector<int64_t>{best.passage_id});
  // In between: at most the total plus the last window's own hit passage, best hit kept,
  // and fewer tokens than without a total.
  for (int total : {200, 400, 700}) {
    const auto bounded = r.contexts(hits, budget, {}, total);
    int read = 0, largest_passage = 0;
    bool has_best = false;
    for (const auto& ctx : bounded) {
      read += ctx.tokens;
      for (int64_t id : ctx.hit_passages) has_best |= id == best.passage_id;
    }
    for (const auto& h : hits) {
      int words = 0;
      bool in = false;
      for (char ch : s.text(h.document_id, h.passage.byte_start, h.passage.byte_end)) {
        const bool sp = ch == ' ' || ch == '\n';
        if (!sp && !in) ++words;
        in = !sp;
      }
      largest_passage = std::max(largest_passage, (words * 4 + 2) / 3);
    }
    INFO("total " << total << ": read " << read);
    CHECK(has_best);
    CHECK(read <= total + largest_passage);
    CHECK(read < unlimited_tokens);
  }
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
  register_tokenizers(raw);  // the index's tokenizer, as Store::open does
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
  register_tokenizers(raw);  // the index's tokenizer, as Store::open does
  sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(raw);
  CHECK_THROWS_WITH(Store::open(c.db()), Catch::Contains("schema version 99"));
  CHECK_THROWS_WITH(Store::open(c.dir / "nowhere.db", true), Catch::Contains("no index at"));
  CHECK_THROWS_WITH(Store::open(c.dir / "no/such/dir/x.db"), Catch::Contains("does not exist"));
}

namespace {

// How many passages the index finds for an FTS5 query (no single quotes in `match`).
std::string raw_count(const fs::path& db, const std::string& match) {
  const std::string rows =
      test::query_all(db, "SELECT count(*) FROM passages_fts WHERE passages_fts MATCH '" + match + "'");
  return rows.substr(0, rows.find('\n'));
}

}  // namespace

TEST_CASE("stopwords: left out of the index on both sides, positions count kept words", "[data][store]") {
  CHECK(is_stopword("the"));
  CHECK(is_stopword("whose"));
  CHECK(is_stopword("a"));
  CHECK_FALSE(is_stopword("The"));  // the tokenizer lower-cases first
  CHECK_FALSE(is_stopword("theory"));
  CHECK_FALSE(is_stopword(""));
  CHECK_FALSE(is_stopword("zzz"));
  Corpus c;
  test::write_file(c.docs() / "bank.txt", "The Governor of the Bank of England was there. Whose stamps?\n");
  test::write_file(c.docs() / "other.txt", "England and the bank holiday, with a governor.\n");
  Store s = Store::open(c.db());
  index_paths(s, {c.docs()}, {});
  CHECK(raw_count(c.db(), "\"the\"") == "0");
  CHECK(raw_count(c.db(), "\"whose\"") == "0");
  CHECK(raw_count(c.db(), "governor") == "2");
  CHECK(raw_count(c.db(), "stamp") == "1");  // porter still stems after the filter
  // "Bank of England": positions are of the kept words, so the phrase without "of" is adjacent
  CHECK(raw_count(c.db(), "\"bank england\"") == "1");
  CHECK(raw_count(c.db(), "\"governor bank\"") == "1");
  // A question of stopwords only finds nothing, and fails in no way
  CHECK(Retriever(s).search("Who was it, and where?", 5).empty());
  CHECK(hit_paths(s, "Who governed the Bank of England?").front() == "bank.txt");
}

TEST_CASE("schema v1 (stopwords indexed) migrates forward: the index is rebuilt from the texts", "[data][store]") {
  Corpus c;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 25; ++i)
    test::write_file(c.docs() / ("d" + std::to_string(i) + ".txt"),
                     "The ferryman number " + std::to_string(i) + " sang of the tide.\n\n" + test::filler(rng, 700));
  {
    Store s = Store::open(c.db());
    index_paths(s, {c.docs()}, {});
  }
  // Turn it into the v1 database an older ldqa wrote: same tables, stopwords in the index.
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(c.db().c_str(), &raw) == SQLITE_OK);
  const char* to_v1 = R"sql(
    BEGIN;
    DROP TABLE passages_fts;
    CREATE VIRTUAL TABLE passages_fts USING fts5(body, content = '', columnsize = 0,
      tokenize = 'porter unicode61 remove_diacritics 2');
    INSERT INTO passages_fts(rowid, body)
      SELECT p.id, CAST(substr(CAST(t.body AS BLOB), p.byte_start + 1, p.byte_end - p.byte_start) AS TEXT)
      FROM passages p JOIN texts t ON t.document_id = p.document_id;
    PRAGMA user_version = 1;
    COMMIT;)sql";
  register_tokenizers(raw);  // to drop the v2 table
  REQUIRE(sqlite3_exec(raw, to_v1, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  REQUIRE(raw_count(c.db(), "\"the\"") != "0");  // the old index has them
  CHECK_THROWS_WITH(Store::open(c.db(), true), Catch::Contains("schema version 1"));
  Store s = Store::open(c.db());
  CHECK(s.stats().schema_version == kSchemaVersion);
  CHECK(raw_count(c.db(), "\"the\"") == "0");
  CHECK(raw_count(c.db(), "ferryman") == "25");
  CHECK(hit_paths(s, "What did ferryman number 17 sing?").front() == "d17.txt");
  // the rebuilt index is consistent and removes cleanly (contentless deletes need the same tokens)
  test::write_file(c.docs() / "d3.txt", "Replaced text about a lamplighter.\n");
  index_paths(s, {c.docs()}, {});
  CHECK(raw_count(c.db(), "ferryman") == "24");
  CHECK(raw_count(c.db(), "lamplighter") == "1");
  sqlite3* check = nullptr;
  REQUIRE(sqlite3_open(c.db().c_str(), &check) == SQLITE_OK);
  register_tokenizers(check);
  CHECK(sqlite3_exec(check, "INSERT INTO passages_fts(passages_fts) VALUES ('integrity-check')", nullptr, nullptr,
                     nullptr) == SQLITE_OK);
  sqlite3_close(check);
}

TEST_CASE("tokens made on the reader threads are the ones the index's own tokenizer makes", "[data][store]") {
  Corpus c;
  std::mt19937_64 rng(29);
  const std::vector<std::string> odd = {
      "Caf\xC3\xA9 r\xC3\xA9sum\xC3\xA9s NA\xC3\x8FVE",  // diacritics folded
      "The THE the of Of OF",                            // stopwords in any case
      "running runners ran 1871 3.14 x86_64 e-mail",     // stems, numbers, punctuation
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xD0\xBC\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0",  // CJK, Cyrillic
      std::string(300, 'w'),                                                                    // one very long token
      "a",
      "",
      "   \t  "};
  for (int f = 0; f < 12; ++f) {
    std::string text;
    for (int para = 0; para < 6; ++para) {
      text += odd[rng() % odd.size()] + " " + test::filler(rng, 40 + static_cast<int>(rng() % 300));
      text += " " + odd[rng() % odd.size()] + "\n\n";
    }
    test::write_file(c.docs() / ("f" + std::to_string(f) + ".txt"), text);
  }
  {
    Store s = Store::open(c.db());
    index_paths(s, {c.docs()}, {});
  }
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(c.db().c_str(), &raw) == SQLITE_OK);
  register_tokenizers(raw);
  auto rows = [&](const std::string& sql) { return test::sql_rows(raw, sql); };
  // The schema declares the chain the reader threads run.
  CHECK(rows("SELECT sql FROM sqlite_schema WHERE name = 'passages_fts'").find(std::string(kIndexTokenizer)) !=
        std::string::npos);
  // The same passages through the chain itself, in the writer's place: every term at
  // every position must match.
  const std::string chain(kIndexTokenizer.substr(kIndexTokenizer.find(' ') + 1));
  rows("CREATE VIRTUAL TABLE temp.direct USING fts5(body, content = '', tokenize = '" + chain +
       "');"
       "INSERT INTO temp.direct(rowid, body) SELECT p.id, CAST(substr(CAST(t.body AS BLOB), p.byte_start + 1,"
       " p.byte_end - p.byte_start) AS TEXT) FROM passages p JOIN texts t ON t.document_id = p.document_id;"
       "CREATE VIRTUAL TABLE temp.v_index USING fts5vocab(main, passages_fts, instance);"
       "CREATE VIRTUAL TABLE temp.v_direct USING fts5vocab(temp, direct, instance);");
  const std::string indexed = rows("SELECT term, doc, offset FROM v_index ORDER BY doc, offset, term");
  const std::string direct = rows("SELECT term, doc, offset FROM v_direct ORDER BY doc, offset, term");
  CHECK(std::count(indexed.begin(), indexed.end(), '\n') > 2000);
  CHECK(indexed == direct);
  CHECK(indexed.find("cafe|") != std::string::npos);   // folded
  CHECK(indexed.find("run|") != std::string::npos);    // stemmed
  CHECK(indexed.find("\nthe|") == std::string::npos);  // dropped
  CHECK(indexed.find(std::string(300, 'w')) != std::string::npos);
  sqlite3_close(raw);
}
