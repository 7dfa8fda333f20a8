// Store benchmark: generates a folder of English-like text (Zipf-distributed words
// whose 100 most frequent are English's), or of real English text cut from the
// pretraining corpus (--corpus), indexes it, re-runs it unchanged, then times retrieval.
//   ldqa_store_bench --dir /tmp/ldqa-bench --files 10000 --mb 520 --queries 500
//   ldqa_store_bench --dir /tmp/ldqa-bench --files 10000 --mb 520 --corpus ../shared/data/corpus
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include "bench/args.hpp"
#include "data/fts_tokenizer.hpp"
#include "data/indexer.hpp"
#include "data/retrieval.hpp"
#include "data/store.hpp"

namespace fs = std::filesystem;
using namespace ldqa::data;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The 100 most frequent English words, most frequent first: the head of the Zipf curve,
// about half of running text, as in English (many are stopwords the index leaves out).
const char* const kEnglishHead[100] = {
    "the",   "of",     "and",   "to",   "a",     "in",      "is",   "that",  "for",     "it",     "as",   "was",
    "with",  "be",     "by",    "on",   "not",   "he",      "this", "are",   "or",      "his",    "from", "at",
    "which", "but",    "have",  "an",   "they",  "you",     "were", "her",   "she",     "there",  "been", "their",
    "one",   "all",    "we",    "can",  "has",   "more",    "if",   "would", "will",    "no",     "what", "when",
    "so",    "who",    "other", "into", "its",   "them",    "out",  "up",    "about",   "some",   "than", "only",
    "time",  "two",    "these", "new",  "first", "may",     "also", "after", "then",    "could",  "any",  "like",
    "my",    "made",   "over",  "did",  "such",  "most",    "do",   "many",  "where",   "before", "our",  "great",
    "must",  "should", "well",  "even", "years", "because", "very", "those", "through", "being",  "same", "how",
    "under", "each",   "much",  "part"};

struct Vocabulary {
  std::vector<std::string> words;
  std::vector<double> cdf;
  explicit Vocabulary(std::mt19937_64& rng, int size) {
    static const char* onsets[] = {"b", "c", "d", "f",  "g",  "h",  "l",  "m",  "n",  "p",  "r",  "s",
                                   "t", "v", "w", "br", "st", "tr", "ch", "th", "sh", "gr", "pl", "cl"};
    static const char* vowels[] = {"a", "e", "i", "o", "u", "ea", "ou", "ai", "io"};
    static const char* codas[] = {"", "n", "r", "s", "t", "l", "nd", "st", "rk", "ng"};
    double total = 0;
    for (int i = 0; i < size; ++i) {
      std::string w;
      if (i < 100) {
        w = kEnglishHead[i];
      } else {
        const int syllables = 1 + static_cast<int>(rng() % 3);
        for (int s = 0; s < syllables; ++s) {
          w += onsets[rng() % 24];
          w += vowels[rng() % 9];
        }
        w += codas[rng() % 10];
      }
      words.push_back(w);
      total += 1.0 / (i + 1);  // Zipf, exponent 1
      cdf.push_back(total);
    }
    for (auto& c : cdf) c /= total;
  }
  const std::string& draw_content(std::mt19937_64& rng) const {
    for (;;) {
      const double u = std::uniform_real_distribution<double>(0, 1)(rng);
      const auto i = static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
      if (i >= 100) return words[i];
    }
  }
  const std::string& draw(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return words[static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin())];
  }
};

// Real text: the corpus's documents (gzip shards, documents split by "\n\n<doc>\n",
// one paragraph per line), and its words for questions.
struct RealText {
  std::vector<std::string> documents;
  std::vector<std::string> content_words;  // one entry per occurrence: drawn like the text
  explicit RealText(const fs::path& dir) {
    std::vector<fs::path> shards;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().string().ends_with(".txt.gz")) shards.push_back(e.path());
    std::sort(shards.begin(), shards.end());
    for (const auto& shard : shards) {
      gzFile in = gzopen(shard.c_str(), "rb");
      if (in == nullptr) throw std::runtime_error("cannot open " + shard.string());
      std::string all;
      char buf[1 << 16];
      for (int n; (n = gzread(in, buf, sizeof buf)) > 0;) all.append(buf, static_cast<std::size_t>(n));
      gzclose(in);
      for (std::size_t at = 0; at < all.size();) {
        std::size_t end = all.find("\n\n<doc>\n", at);
        if (end == std::string::npos) end = all.size();
        std::string doc;
        for (char ch : std::string_view(all).substr(at, end - at)) {
          if (ch == '\n') doc += '\n';  // paragraphs become blank-line separated, as in text files
          doc += ch;
        }
        if (!doc.empty()) documents.push_back(std::move(doc));
        at = end + 8;
      }
    }
    if (documents.empty()) throw std::runtime_error("no *.txt.gz documents in " + dir.string());
    std::mt19937_64 rng(7);
    for (int i = 0; i < 200000; ++i) {
      const auto& d = documents[rng() % documents.size()];
      std::size_t at = rng() % d.size(), end = at;
      while (at > 0 && std::isalpha(static_cast<unsigned char>(d[at - 1]))) --at;
      while (end < d.size() && std::isalpha(static_cast<unsigned char>(d[end]))) ++end;
      std::string w = d.substr(at, end - at);
      for (auto& ch : w) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (w.size() > 2 && !is_stopword(w)) content_words.push_back(w);
    }
  }
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

int run_queries(Store& store, const std::function<std::string()>& content_word, std::mt19937_64& rng, int queries) {
  // Questions: "What" and 4-9 words drawn like the text, but none of the 100 most frequent
  // (synthetic text) or stopwords (real text): the store drops those from questions.
  std::vector<double> search_ms, context_ms;
  std::size_t hits_total = 0;
  Retriever retriever(store);
  for (int q = -20; q < queries; ++q) {
    std::string question = "What";
    const int n = 4 + static_cast<int>(rng() % 6);
    for (int w = 0; w < n; ++w) question += " " + content_word();
    question += "?";
    auto t1 = std::chrono::steady_clock::now();
    const auto hits = retriever.search(question, 20);
    const double s_ms = seconds_since(t1) * 1e3;
    t1 = std::chrono::steady_clock::now();
    const auto contexts = retriever.contexts(hits, 3500);
    const double c_ms = seconds_since(t1) * 1e3;
    if (q < 0) continue;  // warm-up
    search_ms.push_back(s_ms);
    context_ms.push_back(c_ms);
    hits_total += hits.size();
  }
  std::printf(
      "\n| queries | top-k | mean hits | search p50 ms | search p95 ms | contexts p50 ms | contexts p95 ms |\n");
  std::printf("|---|---|---|---|---|---|---|\n| %d | 20 | %.1f | %.2f | %.2f | %.2f | %.2f |\n", queries,
              static_cast<double>(hits_total) / queries, percentile(search_ms, 0.5), percentile(search_ms, 0.95),
              percentile(context_ms, 0.5), percentile(context_ms, 0.95));
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  fs::path dir = "/tmp/ldqa-store-bench", corpus;
  int files = 10000, queries = 500, threads = 0;
  bool reuse = false;
  double mb = 520;
  std::string dir_arg = dir.string(), corpus_arg;
  ldqa::bench::Args("ldqa_store_bench [--key value]...")
      .add("--dir", &dir_arg, "work folder (generated files and index)")
      .add("--files", &files, "files to generate")
      .add("--mb", &mb, "megabytes to generate")
      .add("--queries", &queries, "timed queries")
      .add("--threads", &threads, "indexing threads (0: all cores but one)")
      .add("--reuse", &reuse, "1: keep the generated folder and index, time queries only")
      .add("--corpus", &corpus_arg, "real text: the pretraining corpus folder")
      .parse(argc, argv);
  dir = dir_arg;
  corpus = corpus_arg;
  std::mt19937_64 rng(20261128);
  const Vocabulary vocab(rng, 30000);
  std::unique_ptr<RealText> real;
  if (!corpus.empty()) real = std::make_unique<RealText>(corpus);
  const std::function<std::string()> content_word = [&]() -> std::string {
    if (real) return real->content_words[rng() % real->content_words.size()];
    return vocab.draw_content(rng);
  };
  const fs::path docs = dir / "docs";
  const fs::path db = dir / "index.db";
  if (reuse && fs::exists(db)) {
    Store store = Store::open(db);
    return run_queries(store, content_word, rng, queries);
  }
  fs::remove_all(dir);
  fs::create_directories(docs);
  const auto per_file = static_cast<std::size_t>(mb * 1e6 / files);
  auto t0 = std::chrono::steady_clock::now();
  int64_t total = 0;
  std::size_t next_document = 0, doc_offset = 0, passes = 0;
  for (int f = 0; f < files; ++f) {
    std::string text;
    while (text.size() < per_file) {
      if (real) {  // the corpus in order, cut at paragraph ends; from the start again when it runs out
        const std::string& doc = real->documents[next_document];
        std::string_view rest = std::string_view(doc).substr(doc_offset);
        const std::size_t room = per_file - text.size();
        if (rest.size() > room) {
          const std::size_t cut = rest.rfind("\n\n", room);
          rest = rest.substr(0, cut == std::string_view::npos || cut == 0 ? room : cut);
        }
        text.append(rest);
        text += "\n\n";
        doc_offset += rest.size();
        while (doc_offset < doc.size() && doc[doc_offset] == '\n') ++doc_offset;
        if (doc_offset >= doc.size()) {
          doc_offset = 0;
          if (++next_document == real->documents.size()) next_document = 0, ++passes;
        }
        continue;
      }
      const int sentences = 2 + static_cast<int>(rng() % 8);
      for (int s = 0; s < sentences; ++s) {
        const int len = 6 + static_cast<int>(rng() % 20);
        for (int w = 0; w < len; ++w) {
          std::string word = vocab.draw(rng);
          if (w == 0) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
          text += word;
          text += w + 1 < len ? " " : ". ";
        }
      }
      text += "\n\n";
    }
    const fs::path sub = docs / ("d" + std::to_string(f % 100));
    fs::create_directories(sub);
    std::ofstream(sub / ("file" + std::to_string(f) + (f % 5 ? ".txt" : ".md")), std::ios::binary) << text;
    total += static_cast<int64_t>(text.size());
  }
  std::printf("generated %d files, %.1f MB in %.1f s (%s)\n", files, static_cast<double>(total) / 1e6,
              seconds_since(t0),
              real ? ("real text, " + std::to_string(real->documents.size()) + " corpus documents, " +
                      std::to_string(passes) + " full passes over them, cut at paragraph ends")
                         .c_str()
                   : "synthetic text");

  // The generated files' write-back (and the previous run's deletions) must not land
  // inside the timed index run.
  const auto sync_start = std::chrono::steady_clock::now();
  ::sync();
  std::printf("sync %.1f s\n", seconds_since(sync_start));

  Store store = Store::open(db);
  IndexOptions options;
  options.threads = threads;
  t0 = std::chrono::steady_clock::now();
  const auto summary = index_paths(store, {docs}, options);
  const double index_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  const auto again = index_paths(store, {docs}, options);
  const double rerun_s = seconds_since(t0);
  const auto stats = store.stats();
  std::printf(
      "| indexed files | MB | passages | index s | MB/s | unchanged re-run s | db MB "
      "|\n|---|---|---|---|---|---|---|\n");
  std::printf("| %lld | %.1f | %lld | %.1f | %.1f | %.2f (%lld unchanged) | %.0f |\n",
              static_cast<long long>(summary.indexed), static_cast<double>(total) / 1e6,
              static_cast<long long>(stats.passages), index_s, static_cast<double>(total) / 1e6 / index_s, rerun_s,
              static_cast<long long>(again.unchanged), static_cast<double>(fs::file_size(db)) / 1e6);
  return run_queries(store, content_word, rng, queries);
} catch (const std::exception& e) {
  std::fprintf(stderr, "ldqa_store_bench: %s\n", e.what());
  return 1;
}
