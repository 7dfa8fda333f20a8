#include "data/fts_tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ldqa/error.hpp"

namespace ldqa::data {

namespace {

// Sorted, for binary search.
constexpr std::array<std::string_view, 67> kStopwords = {
    "a",     "about",  "after", "all",  "also", "an",    "and",  "any",  "are",  "as",    "at",    "be",
    "been",  "before", "but",   "by",   "can",  "could", "did",  "do",   "does", "for",   "from",  "had",
    "has",   "have",   "he",    "her",  "his",  "how",   "i",    "if",   "in",   "into",  "is",    "it",
    "its",   "of",     "on",    "or",   "she",  "so",    "than", "that", "the",  "their", "them",  "there",
    "these", "they",   "this",  "to",   "was",  "we",    "were", "what", "when", "where", "which", "who",
    "whom",  "whose",  "why",   "will", "with", "would", "you"};
static_assert(std::is_sorted(kStopwords.begin(), kStopwords.end()));
constexpr std::size_t kLongestStopword = 6;

// Words of up to 8 bytes as one integer (bytes big-endian, zero padded): the index asks
// for every token, and comparing integers beats comparing strings.
constexpr uint64_t pack(std::string_view w) {
  uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = v << 8 | (i < w.size() ? static_cast<unsigned char>(w[i]) : 0);
  return v;
}

// Sorted like kStopwords: packing keeps the order of words this short.
constexpr std::array<uint64_t, kStopwords.size()> kPackedStopwords = [] {
  std::array<uint64_t, kStopwords.size()> out{};
  for (std::size_t i = 0; i < kStopwords.size(); ++i) out[i] = pack(kStopwords[i]);
  return out;
}();
static_assert(std::is_sorted(kPackedStopwords.begin(), kPackedStopwords.end()));

using TokenCallback = int (*)(void*, int, const char*, int, int, int);

fts5_api* fts5_api_of(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, nullptr) == SQLITE_OK) {
    sqlite3_bind_pointer(st, 1, static_cast<void*>(&api), "fts5_api_ptr", nullptr);
    sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (api == nullptr || api->iVersion < 2) fail("SQLite was built without FTS5 (fts5_api unavailable)");
  return api;
}

// A tokenizer that wraps the one its first argument names (with the rest as its arguments).
struct Wrapper {
  fts5_tokenizer parent{};
  Fts5Tokenizer* parent_instance = nullptr;
  ~Wrapper() {
    if (parent_instance) parent.xDelete(parent_instance);
  }
};

int create_wrapper(void* api_ptr, const char** args, int n_args, Fts5Tokenizer** out) {
  auto* api = static_cast<fts5_api*>(api_ptr);
  if (n_args < 1) return SQLITE_ERROR;  // the wrapped tokenizer must be named
  auto w = std::make_unique<Wrapper>();
  void* parent_user = nullptr;
  int rc = api->xFindTokenizer(api, args[0], &parent_user, &w->parent);
  if (rc == SQLITE_OK) rc = w->parent.xCreate(parent_user, args + 1, n_args - 1, &w->parent_instance);
  if (rc != SQLITE_OK) return rc;
  *out = reinterpret_cast<Fts5Tokenizer*>(w.release());
  return SQLITE_OK;
}

void delete_wrapper(Fts5Tokenizer* p) { delete reinterpret_cast<Wrapper*>(p); }

struct Forward {
  void* ctx;
  TokenCallback token;
};

int forward_unless_stopword(void* ctx, int flags, const char* token, int n, int start, int end) {
  const auto* fwd = static_cast<const Forward*>(ctx);
  if (static_cast<std::size_t>(n) <= kLongestStopword &&
      is_stopword(std::string_view(token, static_cast<std::size_t>(n))))
    return SQLITE_OK;
  return fwd->token(fwd->ctx, flags, token, n, start, end);
}

int stop_tokenize(Fts5Tokenizer* p, void* ctx, int flags, const char* text, int n, TokenCallback token) {
  auto* w = reinterpret_cast<Wrapper*>(p);
  Forward fwd{ctx, token};
  return w->parent.xTokenize(w->parent_instance, &fwd, flags, text, n, forward_unless_stopword);
}

// Token stream: per token varint(length << 1 | colocated), bytes, varint(start), varint(end - start).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

uint64_t get_varint(const char*& at) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto byte = static_cast<unsigned char>(*at++);
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (byte < 0x80) return v;
  }
}

int append_token(void* ctx, int flags, const char* token, int n, int start, int end) {
  auto* out = static_cast<std::string*>(ctx);
  put_varint(*out, static_cast<uint64_t>(n) << 1 | ((flags & FTS5_TOKEN_COLOCATED) ? 1 : 0));
  out->append(token, static_cast<std::size_t>(n));
  put_varint(*out, static_cast<uint64_t>(start));
  put_varint(*out, static_cast<uint64_t>(end - start));
  return SQLITE_OK;
}

struct Replay {
  std::string_view tokens;
  std::size_t text_bytes = 0;
  bool armed = false;
};
thread_local Replay tls_replay;

int replay_tokenize(Fts5Tokenizer* p, void* ctx, int flags, const char* text, int n, TokenCallback token) {
  Replay& r = tls_replay;
  if (r.armed && (flags & FTS5_TOKENIZE_DOCUMENT) && r.text_bytes == static_cast<std::size_t>(n)) {
    r.armed = false;
    const char* at = r.tokens.data();
    const char* end = at + r.tokens.size();
    while (at < end) {
      const uint64_t head = get_varint(at);
      const char* bytes = at;
      at += head >> 1;
      const auto start = static_cast<int>(get_varint(at));
      const auto stop = start + static_cast<int>(get_varint(at));
      const int rc = token(ctx, (head & 1) ? FTS5_TOKEN_COLOCATED : 0, bytes, static_cast<int>(head >> 1), start, stop);
      if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
  }
  auto* w = reinterpret_cast<Wrapper*>(p);
  return w->parent.xTokenize(w->parent_instance, ctx, flags, text, n, token);
}

// kIndexTokenizer's words after `ldqa`.
std::vector<std::string> chain_below_replay() {
  std::vector<std::string> words;
  std::string_view rest = kIndexTokenizer;
  while (!rest.empty()) {
    const auto space = rest.find(' ');
    words.emplace_back(rest.substr(0, space));
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  }
  words.erase(words.begin());
  return words;
}

}  // namespace

bool is_stopword(std::string_view word) {
  if (word.empty() || word.size() > kLongestStopword) return false;
  return std::binary_search(kPackedStopwords.begin(), kPackedStopwords.end(), pack(word));
}

void register_tokenizers(sqlite3* db) {
  fts5_api* api = fts5_api_of(db);
  fts5_tokenizer stop{create_wrapper, delete_wrapper, stop_tokenize};
  fts5_tokenizer replay{create_wrapper, delete_wrapper, replay_tokenize};
  if (api->xCreateTokenizer(api, "ldqa_stop", api, &stop, nullptr) != SQLITE_OK ||
      api->xCreateTokenizer(api, "ldqa", api, &replay, nullptr) != SQLITE_OK)
    fail("could not register the index's FTS5 tokenizers: ", sqlite3_errmsg(db));
}

struct IndexTokenizer::Impl {
  sqlite3* db = nullptr;
  fts5_tokenizer methods{};
  Fts5Tokenizer* instance = nullptr;
  ~Impl() {
    if (instance) methods.xDelete(instance);
    sqlite3_close(db);
  }
};

IndexTokenizer::IndexTokenizer() : impl_(std::make_unique<Impl>()) {
  if (sqlite3_open_v2(":memory:", &impl_->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, nullptr) != SQLITE_OK)
    fail("cannot open an in-memory SQLite connection for the tokenizer");
  register_tokenizers(impl_->db);
  fts5_api* api = fts5_api_of(impl_->db);
  const std::vector<std::string> chain = chain_below_replay();
  std::vector<const char*> args;
  for (std::size_t i = 1; i < chain.size(); ++i) args.push_back(chain[i].c_str());
  void* user = nullptr;
  if (api->xFindTokenizer(api, chain[0].c_str(), &user, &impl_->methods) != SQLITE_OK ||
      impl_->methods.xCreate(user, args.data(), static_cast<int>(args.size()), &impl_->instance) != SQLITE_OK)
    fail("cannot create the index tokenizer ", std::string(kIndexTokenizer));
}

IndexTokenizer::~IndexTokenizer() = default;

std::string IndexTokenizer::tokenize(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  const int rc = impl_->methods.xTokenize(impl_->instance, &out, FTS5_TOKENIZE_DOCUMENT, text.data(),
                                          static_cast<int>(text.size()), append_token);
  if (rc != SQLITE_OK) fail("tokenizing ", text.size(), " bytes for the index failed (SQLite code ", rc, ")");
  return out;
}

ReplayScope::ReplayScope(std::string_view tokens, std::size_t text_bytes) {
  tls_replay = Replay{tokens, text_bytes, true};
}

ReplayScope::~ReplayScope() { tls_replay.armed = false; }

}  // namespace ldqa::data
