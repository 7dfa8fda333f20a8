// Hostile folders and databases: links out of the indexed folder, pseudo-filesystems,
// a large document replaced and removed, a damaged index, two first runs at once, an
// index on read-only media.
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>
#include <thread>

#include "data/indexer.hpp"
#include "data/retrieval.hpp"
#include "data/sqlite.hpp"
#include "data/store.hpp"
#include "fixtures.hpp"
#include "ldqa/error.hpp"
#include "support/support.hpp"

using namespace ldqa;
using namespace ldqa::data;
namespace fs = std::filesystem;

namespace {

bool found(Store& s, const std::string& word) { return !Retriever(s).search(word, 5).empty(); }

bool skipped_with(const IndexSummary& sum, const std::string& path_part, const std::string& reason_part) {
  for (const auto& [path, reason] : sum.skipped)
    if (path.find(path_part) != std::string::npos && reason.find(reason_part) != std::string::npos) return true;
  return false;
}

// Pages the connection read (from its cache or the file) since the last call.
int64_t pages_read(Store& s) {
  int hit = 0, miss = 0, high = 0;
  sqlite3_db_status(s.database().handle(), SQLITE_DBSTATUS_CACHE_HIT, &hit, &high, 1);
  sqlite3_db_status(s.database().handle(), SQLITE_DBSTATUS_CACHE_MISS, &miss, &high, 1);
  return static_cast<int64_t>(hit) + miss;
}

}  // namespace

TEST_CASE("symbolic links do not lead out of the indexed folders", "[data][hostile]") {
  test::TempDir dir;
  test::write_file(dir / "outside/passwd", "root:x:0:0:quartermaster:/root:/bin/bash");
  test::write_file(dir / "docs/inside.txt", "A lantern in the hall.");
  test::write_file(dir / "docs/deeper/real.txt", "A brass barometer.");
  fs::create_directory_symlink(dir / "outside", dir / "docs/etc");
  fs::create_symlink(dir / "outside/passwd", dir / "docs/passwd.txt");
  fs::create_directory_symlink(dir / "docs/deeper", dir / "docs/alias");  // inside: followed
  Store s = Store::open(dir / "index.db");
  auto sum = index_paths(s, {dir / "docs"}, {});
  CHECK_FALSE(found(s, "quartermaster"));
  CHECK(skipped_with(sum, "docs/etc", "outside the indexed folders"));
  CHECK(skipped_with(sum, "passwd.txt", "outside the indexed folders"));
  CHECK(found(s, "lantern"));
  CHECK(s.find((dir / "docs/alias/real.txt").string()));
  // asked for, links are followed; and a later run without the permission drops them
  IndexOptions follow;
  follow.follow_links_outside = true;
  index_paths(s, {dir / "docs"}, follow);
  CHECK(found(s, "quartermaster"));
  sum = index_paths(s, {dir / "docs"}, {});
  CHECK(sum.removed == 2);
  CHECK_FALSE(found(s, "quartermaster"));
  CHECK(found(s, "barometer"));
}

TEST_CASE("pseudo-filesystems are never entered", "[data][hostile]") {
  test::TempDir dir;
  Store s = Store::open(dir / "index.db");
  for (const char* root : {"/proc", "/sys"}) {
    if (!fs::exists(root)) continue;
    INFO(root);
    const auto sum = index_paths(s, {root}, {});
    CHECK(sum.indexed == 0);
    CHECK(skipped_with(sum, root, "pseudo-filesystem"));
  }
}

TEST_CASE("a large document is replaced and removed in time linear in its size", "[data][hostile]") {
  test::TempDir dir;
  std::mt19937_64 rng(test::test_seed());
  std::string text;
  while (text.size() < (6u << 20)) text += test::filler(rng, 120) + "\n\n";
  const fs::path file = dir / "docs/big.txt";
  test::write_file(file, text + "marmalade");
  Store s = Store::open(dir / "index.db");
  REQUIRE(index_paths(s, {dir / "docs"}, {}).indexed == 1);
  const int64_t passages = s.find(file.string())->passages;
  const int64_t text_pages = static_cast<int64_t>(text.size()) / 16384 + 1;
  REQUIRE(passages > 3000);
  // Replacing it gives each old passage's text back to FTS5; read from SQL one passage
  // at a time, that re-read the whole text per passage: passages x text pages.
  test::write_file(file, text + "gooseberry");
  fs::last_write_time(file, fs::last_write_time(file) + std::chrono::seconds(5));
  pages_read(s);
  REQUIRE(index_paths(s, {dir / "docs"}, {}).indexed == 1);
  const int64_t replace_pages = pages_read(s);
  CHECK(found(s, "gooseberry"));
  CHECK_FALSE(found(s, "marmalade"));
  REQUIRE(s.remove(file.string()));
  const int64_t remove_pages = pages_read(s);
  INFO("passages " << passages << ", text pages " << text_pages << ", replace " << replace_pages << ", remove "
                   << remove_pages);
  CHECK(replace_pages < 40 * (passages + text_pages));
  CHECK(remove_pages < 40 * (passages + text_pages));
  CHECK_FALSE(found(s, "gooseberry"));
  CHECK(s.quick_check() == "ok");
}

TEST_CASE("a damaged index is refused before anything is written", "[data][hostile]") {
  test::TempDir dir;
  std::mt19937_64 rng(test::test_seed() + 1);
  for (int i = 0; i < 40; ++i) test::write_file(dir / ("docs/f" + std::to_string(i) + ".txt"), test::filler(rng, 400));
  {
    Store s = Store::open(dir / "index.db");
    index_paths(s, {dir / "docs"}, {});
  }
  // Garbage over a page in the middle of the file (not the header: it still opens).
  std::string db = test::read_file(dir / "index.db");
  REQUIRE(db.size() > 8 * 16384);
  for (std::size_t i = db.size() / 2; i < db.size() / 2 + 16384; ++i) db[i] = static_cast<char>(rng());
  test::write_file(dir / "index.db", db);
  test::write_file(dir / "docs/new.txt", "A walrus arrived.");
  try {
    Store s = Store::open(dir / "index.db");
    CHECK_THROWS_WITH(index_paths(s, {dir / "docs"}, {}), Catch::Contains("damaged"));
  } catch (const Error& e) {  // or the damage already shows when the database is opened
    CHECK_THAT(e.what(), Catch::Contains("damaged"));
  }
}

TEST_CASE("two first runs on a new index do not race to create it", "[data][hostile]") {
  for (int trial = 0; trial < 5; ++trial) {
    test::TempDir dir;
    test::write_file(dir / "docs/a.txt", "An albatross.");
    std::string errors[2];
    std::thread runs[2];
    for (int t = 0; t < 2; ++t)
      runs[t] = std::thread([&, t] {
        try {
          Store s = Store::open(dir / "index.db");
          index_paths(s, {dir / "docs"}, {});
        } catch (const Error& e) {
          errors[t] = std::string(e.what()) + " [" + e.detail() + "]";
        }
      });
    for (auto& r : runs) r.join();
    INFO("trial " << trial << ": " << errors[0] << " / " << errors[1]);
    CHECK(errors[0].empty());
    CHECK(errors[1].empty());
    Store s = Store::open(dir / "index.db");
    CHECK(found(s, "albatross"));
  }
}

TEST_CASE("an index on read-only media can be searched", "[data][hostile]") {
  test::TempDir dir;
  test::write_file(dir / "media/docs/a.txt", "A narwhal surfaced.");
  {
    Store s = Store::open(dir / "media/index.db");
    index_paths(s, {dir / "media/docs"}, {});
  }
  fs::remove(dir / "media/index.db-shm");
  fs::remove(dir / "media/index.db-wal");
  chmod((dir / "media/index.db").c_str(), 0444);
  chmod((dir / "media").c_str(), 0555);
  chmod(dir.path().c_str(), 0755);  // the child must reach it
  // Root ignores permissions: the reading is done by an unprivileged child then.
  const pid_t pid = fork();
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    try {
      Store s = Store::open(dir / "media/index.db", true);
      _exit(found(s, "narwhal") ? 0 : 1);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "read-only open: %s\n", e.what());
      _exit(2);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  chmod((dir / "media").c_str(), 0755);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a cancelled run stops during the walk", "[data][hostile]") {
  test::TempDir dir;
  test::write_file(dir / "docs/a.txt", "An ibis.");
  std::atomic<bool> cancel{true};
  IndexOptions o;
  o.cancel = &cancel;
  Store s = Store::open(dir / "index.db");
  const auto sum = index_paths(s, {dir / "docs"}, o);
  CHECK(sum.interrupted);
  CHECK(sum.indexed == 0);
}
