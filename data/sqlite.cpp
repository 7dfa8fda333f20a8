#include "data/sqlite.hpp"

#include "ldqa/error.hpp"

namespace ldqa::data::sql {

namespace {

// What a failed call means for the user, by SQLite's result code; SQLite's own words
// and the statement go to Error::detail().
[[noreturn]] void sqlite_fail(sqlite3* db, std::string_view what, std::string_view statement) {
  const std::string raw = std::string("SQLite: ") + std::string(what) + " (" + std::string(statement.substr(0, 200)) +
                          "): " + (db ? sqlite3_errmsg(db) : "out of memory");
  const char* file = db ? sqlite3_db_filename(db, "main") : nullptr;
  const std::string path = file && *file ? file : "the index database";
  switch (db ? sqlite3_errcode(db) : SQLITE_NOMEM) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      throw Error("the index " + path +
                      " is damaged or is not an ldqa index: move it away and run 'ldqa index' again to rebuild it",
                  raw);
    case SQLITE_FULL:
      throw Error("the disk holding " + path + " is full: free some space and run the command again", raw);
    case SQLITE_READONLY:
      throw Error("the index " + path + " cannot be written (a read-only file, folder or medium)", raw);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw Error(
          "the index " + path + " is busy in another program (another 'ldqa index'?): try again when it is done", raw);
    case SQLITE_IOERR:
      throw Error("reading or writing " + path + " failed (a disk or file system error)", raw);
    case SQLITE_CANTOPEN:
      throw Error("cannot open the index " + path + " (is its folder readable and writable?)", raw);
    default:
      throw Error(raw);
  }
}

}  // namespace

Database::Database(const std::string& path, Mode mode) : path_(path) {
  int flags = mode == Mode::read_write ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : SQLITE_OPEN_READONLY;
  std::string name = path;
  if (mode == Mode::immutable) {  // read-only media: no locks, no -shm file (the URI escapes ? and #)
    std::string escaped;
    for (char c : path) escaped += c == '?' ? std::string("%3f") : c == '#' ? std::string("%23") : std::string(1, c);
    name = "file:" + escaped + "?immutable=1";
    flags |= SQLITE_OPEN_URI;
  }
  if (sqlite3_open_v2(name.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("cannot open the index " + path + ": " + message, message);
  }
  sqlite3_busy_timeout(db_, 10000);  // a reader or a second writer waits instead of failing
  sqlite3_extended_result_codes(db_, 1);
}

Database::~Database() { sqlite3_close_v2(db_); }

void Database::exec(std::string_view sql) {
  char* message = nullptr;
  const std::string copy(sql);
  if (sqlite3_exec(db_, copy.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string text = message ? message : "unknown error";
    sqlite3_free(message);
    sqlite_fail(db_, text, copy);
  }
}

Statement Database::prepare(std::string_view sql) { return Statement(db_, sql); }

int Database::user_version() {
  auto st = prepare("PRAGMA user_version");
  st.step();
  return static_cast<int>(st.int64(0));
}

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
  if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr) != SQLITE_OK)
    sqlite_fail(db, "prepare", sql.substr(0, 200));
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) sqlite_fail(db_, "bind", sqlite3_sql(stmt_));
  return *this;
}
Statement& Statement::bind(int index, double value) {
  if (sqlite3_bind_double(stmt_, index, value) != SQLITE_OK) sqlite_fail(db_, "bind", sqlite3_sql(stmt_));
  return *this;
}
Statement& Statement::bind(int index, std::string_view value) {
  if (sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8) != SQLITE_OK)
    sqlite_fail(db_, "bind", sqlite3_sql(stmt_));
  return *this;
}
Statement& Statement::bind_static(int index, std::string_view value) {
  if (sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK)
    sqlite_fail(db_, "bind", sqlite3_sql(stmt_));
  return *this;
}

Statement& Statement::bind_null(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) sqlite_fail(db_, "bind", sqlite3_sql(stmt_));
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite_fail(db_, "step", sqlite3_sql(stmt_));
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string Statement::text(int col) const { return std::string(text_view(col)); }

std::string_view Statement::text_view(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string_view();
}

Transaction::Transaction(Database& db) : db_(db), nested_(sqlite3_get_autocommit(db.handle()) == 0) {
  db_.exec(nested_ ? "SAVEPOINT unit" : "BEGIN IMMEDIATE");
}

Transaction::~Transaction() {
  if (done_) return;
  sqlite3_exec(db_.handle(), nested_ ? "ROLLBACK TO unit; RELEASE unit" : "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec(nested_ ? "RELEASE unit" : "COMMIT");
  done_ = true;
}

}  // namespace ldqa::data::sql
