// Store benchmark: generates a folder of English-like text (Zipf-distributed words),
// indexes it, re-runs it unchanged, then times retrieval.
//   ldqa_store_bench --dir /tmp/ldqa-bench --files 10000 --mb 520 --queries 500
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/store.hpp"

namespace fs = std::filesystem;
using namespace ldqa::data;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

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
      const int syllables = 1 + static_cast<int>(rng() % 3);
      for (int s = 0; s < syllables; ++s) {
        w += onsets[rng() % 24];
        w += vowels[rng() % 9];
      }
      w += codas[rng() % 10];
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

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

int run_queries(Store& store, const Vocabulary& vocab, std::mt19937_64& rng, int queries) {
  // Questions: "What" and 4-9 words drawn like the text, but not from its 100 most frequent
  // words: in this synthetic language those play the part of English function words
  // ("the", "of", "is"), which real questions also contain and the store drops.
  std::vector<double> search_ms, context_ms;
  std::size_t hits_total = 0;
  for (int q = -20; q < queries; ++q) {
    std::string question = "What";
    const int n = 4 + static_cast<int>(rng() % 6);
    for (int w = 0; w < n; ++w) question += " " + vocab.draw_content(rng);
    question += "?";
    auto t1 = std::chrono::steady_clock::now();
    const auto hits = store.search(question, 20);
    const double s_ms = seconds_since(t1) * 1e3;
    t1 = std::chrono::steady_clock::now();
    const auto contexts = store.build_contexts(hits, 3500);
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

int main(int argc, char** argv) {
  fs::path dir = "/tmp/ldqa-store-bench";
  int files = 10000, queries = 500, threads = 0;
  bool reuse = false;  // --reuse 1: keep the generated folder and index, time queries only
  double mb = 520;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--dir")
      dir = value;
    else if (key == "--files")
      files = std::stoi(value);
    else if (key == "--mb")
      mb = std::stod(value);
    else if (key == "--queries")
      queries = std::stoi(value);
    else if (key == "--threads")
      threads = std::stoi(value);
    else if (key == "--reuse")
      reuse = value == "1";
  }
  std::mt19937_64 rng(20261128);
  const Vocabulary vocab(rng, 30000);
  const fs::path docs = dir / "docs";
  const fs::path db = dir / "index.db";
  if (reuse && fs::exists(db)) {
    Store store = Store::open(db);
    return run_queries(store, vocab, rng, queries);
  }
  fs::remove_all(dir);
  fs::create_directories(docs);
  const auto per_file = static_cast<std::size_t>(mb * 1e6 / files);
  auto t0 = std::chrono::steady_clock::now();
  int64_t total = 0;
  for (int f = 0; f < files; ++f) {
    std::string text;
    while (text.size() < per_file) {
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
  std::printf("generated %d files, %.1f MB in %.1f s\n", files, static_cast<double>(total) / 1e6, seconds_since(t0));

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

  return run_queries(store, vocab, rng, queries);
}
