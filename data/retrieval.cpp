// Retrieval (data/retrieval.hpp): questions to FTS5 queries of quoted terms, BM25 over
// a bounded candidate set, and contexts grown from the hits into their neighbours.
#include "data/retrieval.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_map>

#include "data/fts_tokenizer.hpp"
#include "data/sqlite.hpp"

namespace ldqa::data {

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

std::string fts_query(std::string_view question) { return or_query(question_terms(question)); }

struct Retriever::Impl {
  sql::Database& db;
  std::unordered_map<std::string, std::unique_ptr<sql::Statement>> statements;

  sql::Statement& cached(const std::string& text) {
    auto& slot = statements[text];
    if (!slot) slot = std::make_unique<sql::Statement>(db.prepare(text));
    slot->reset();
    return *slot;
  }
};

Retriever::Retriever(Store& store) : impl_(std::make_unique<Impl>(Impl{store.database(), {}})) {}
Retriever::Retriever(Retriever&&) noexcept = default;
Retriever::~Retriever() = default;

std::vector<Hit> Retriever::search(std::string_view question, int k) {
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

std::vector<Context> Retriever::contexts(const std::vector<Hit>& hits, int budget,
                                         const std::function<int(std::string_view)>& count_tokens, int total_budget) {
  auto tokens = [&](std::string_view s) { return count_tokens ? count_tokens(s) : (count_words(s) * 4 + 2) / 3; };
  struct Window {
    int first, last;
    double score;
    std::vector<int64_t> ids;
  };
  struct Document {
    std::string path, title, body;
    std::vector<Passage> passages;
    std::vector<int> counted;  // token costs, -1 until a window considers the passage
    std::vector<Window> windows;
  };
  // Documents load on their first hit; a missing one (re-indexed or removed since the
  // search) stays null.
  std::map<int64_t, std::unique_ptr<Document>> documents;
  auto document = [&](int64_t doc_id) -> Document* {
    auto [it, fresh] = documents.try_emplace(doc_id);
    if (!fresh) return it->second.get();
    auto meta = impl_->db.prepare(
        "SELECT d.path, d.title, t.body FROM documents d JOIN texts t ON t.document_id = d.id"
        " WHERE d.id = ?");
    meta.bind(1, doc_id);
    if (!meta.step()) return nullptr;
    auto d = std::make_unique<Document>();
    d->path = meta.text(0);
    d->title = meta.text(1);
    d->body = meta.text(2);
    auto ps = impl_->db.prepare(
        "SELECT ordinal, byte_start, byte_end, char_start, char_end, page FROM passages"
        " WHERE document_id = ? ORDER BY ordinal");
    ps.bind(1, doc_id);
    while (ps.step())
      d->passages.push_back({static_cast<int>(ps.int64(0)),
                             ps.int64(1),
                             ps.int64(2),
                             ps.int64(3),
                             ps.int64(4),
                             static_cast<int>(ps.int64(5)),
                             {}});
    d->counted.assign(d->passages.size(), -1);
    it->second = std::move(d);
    return it->second.get();
  };
  // Windows open in the order of the hits' scores across all documents, so that a total
  // budget keeps the best hits' windows and drops the weakest (each hit inside an open
  // window only joins it).
  std::vector<const Hit*> order;
  for (const Hit& h : hits) order.push_back(&h);
  std::stable_sort(order.begin(), order.end(), [](const Hit* a, const Hit* b) { return a->score > b->score; });
  int total_used = 0;
  for (const Hit* h : order) {
    Document* d = document(h->document_id);
    if (d == nullptr) continue;
    const int n = static_cast<int>(d->passages.size());
    if (h->ordinal < 0 || h->ordinal >= n) continue;
    auto cost = [&](int i) {
      int& c = d->counted[static_cast<std::size_t>(i)];
      if (c < 0) c = tokens(passage_text(d->body, d->passages[static_cast<std::size_t>(i)]));
      return c;
    };
    auto inside = std::find_if(d->windows.begin(), d->windows.end(),
                               [&](const Window& w) { return w.first <= h->ordinal && h->ordinal <= w.last; });
    if (inside != d->windows.end()) {
      inside->ids.push_back(h->passage_id);
      continue;
    }
    if (total_budget > 0 && total_used >= total_budget) continue;  // spent: no new window
    const int limit = total_budget > 0 ? std::min(budget, total_budget - total_used) : budget;
    Window w{h->ordinal, h->ordinal, h->score, {h->passage_id}};
    int used = cost(h->ordinal);     // the hit itself, whatever the limit
    for (bool grew = true; grew;) {  // neighbours, alternating sides, within the limit
      grew = false;
      if (w.first > 0 && used + cost(w.first - 1) <= limit) {
        used += cost(--w.first);
        grew = true;
      }
      if (w.last + 1 < n && used + cost(w.last + 1) <= limit) {
        used += cost(++w.last);
        grew = true;
      }
    }
    total_used += used;
    d->windows.push_back(std::move(w));
  }
  std::vector<Context> out;
  for (auto& [doc_id, d] : documents) {
    if (d == nullptr) continue;
    // Merge windows that overlap or touch (their union may exceed the budget slightly
    // only when both were already full; kept as one contiguous text).
    auto& windows = d->windows;
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
      const Passage& a = d->passages[static_cast<std::size_t>(w.first)];
      const Passage& b = d->passages[static_cast<std::size_t>(w.last)];
      Context c;
      c.document_id = doc_id;
      c.path = d->path;
      c.title = d->title;
      c.byte_start = a.byte_start;
      c.byte_end = b.byte_end;
      for (int i = w.first; i <= w.last; ++i) c.tokens += d->counted[static_cast<std::size_t>(i)];
      c.char_start = a.char_start;
      c.char_end = b.char_end;
      c.first_page = a.page;
      c.last_page = b.page;
      c.text =
          d->body.substr(static_cast<std::size_t>(a.byte_start), static_cast<std::size_t>(b.byte_end - a.byte_start));
      c.score = w.score;
      c.hit_passages = std::move(w.ids);
      out.push_back(std::move(c));
    }
  }
  std::sort(out.begin(), out.end(), [](const Context& a, const Context& b) { return a.score > b.score; });
  return out;
}

}  // namespace ldqa::data
