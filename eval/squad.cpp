// SQuAD v1.1 files and the official metric (the normalisation of the SQuAD v1.1
// evaluate script: lower case, punctuation and articles removed, whitespace folded).
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/squad.hpp"
#include "ldqa/error.hpp"

namespace ldqa::eval {

namespace {

bool ascii_punct(unsigned char ch) { return ch < 0x80 && std::ispunct(ch); }

// Lower case for ASCII and Latin-1 letters (U+00C0..U+00DE except U+00D7).
std::string lower(std::string_view s) {
  std::string out(s);
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto ch = static_cast<unsigned char>(out[i]);
    if (ch >= 'A' && ch <= 'Z') {
      out[i] = static_cast<char>(ch + 32);
    } else if (ch == 0xC3 && i + 1 < out.size()) {
      const auto next = static_cast<unsigned char>(out[i + 1]);
      if (next >= 0x80 && next <= 0x9E && next != 0x97) out[i + 1] = static_cast<char>(next + 32);
      ++i;
    }
  }
  return out;
}

// Words split at ASCII whitespace and no-break spaces (Python's str.split()).
std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto ch = static_cast<unsigned char>(s[i]);
    const bool nbsp = ch == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xA0;
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v' || nbsp) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      if (nbsp) ++i;
    } else {
      cur += static_cast<char>(ch);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> normalized_tokens(std::string_view s) { return words(squad_normalize(s)); }

std::string read_maybe_gzip(const std::filesystem::path& file) {
  gzFile gz = gzopen(file.c_str(), "rb");  // reads plain files too
  if (!gz) fail("cannot open ", file.string());
  std::string data;
  char buf[1 << 16];
  int got;
  while ((got = gzread(gz, buf, sizeof buf)) > 0) data.append(buf, static_cast<std::size_t>(got));
  int err = 0;
  const char* msg = gzerror(gz, &err);
  const bool bad = got < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string reason = msg ? msg : "";
  gzclose(gz);
  if (bad) fail("cannot read ", file.string(), ": ", reason);
  return data;
}

}  // namespace

std::string squad_normalize(std::string_view answer) {
  std::string s = lower(answer);
  std::string no_punct;
  for (char ch : s)
    if (!ascii_punct(static_cast<unsigned char>(ch))) no_punct += ch;
  std::string out;
  for (const auto& w : words(no_punct)) {
    if (w == "a" || w == "an" || w == "the") continue;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

double squad_exact(std::string_view prediction, const std::vector<std::string>& references) {
  const std::string p = squad_normalize(prediction);
  for (const auto& r : references)
    if (squad_normalize(r) == p) return 1.0;
  return 0.0;
}

double squad_f1(std::string_view prediction, const std::vector<std::string>& references) {
  const auto p = normalized_tokens(prediction);
  double best = 0;
  for (const auto& r : references) {
    const auto g = normalized_tokens(r);
    std::map<std::string, int> counts;
    for (const auto& t : g) ++counts[t];
    int common = 0;
    for (const auto& t : p)
      if (auto it = counts.find(t); it != counts.end() && it->second > 0) {
        --it->second;
        ++common;
      }
    if (common == 0) continue;
    const double precision = static_cast<double>(common) / static_cast<double>(p.size());
    const double recall = static_cast<double>(common) / static_cast<double>(g.size());
    best = std::max(best, 2 * precision * recall / (precision + recall));
  }
  return best;
}

SquadData load_squad(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) fail("SQuAD file not found: ", file.string());
  return parse_squad(read_maybe_gzip(file), file.string());
}

namespace {

// Walks a parsed SQuAD file; every complaint names the JSON path of what is wrong.
class SquadReader {
 public:
  explicit SquadReader(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void wrong(const std::string& path, const std::string& what) const {
    fail(name_, " is not a SQuAD-format file: ", path, " ", what,
         " (expected {\"data\": [{\"paragraphs\": [{\"context\", \"qas\": [{\"question\", \"answers\": "
         "[{\"text\"}]}]}]}]})");
  }

  const nlohmann::json& member(const nlohmann::json& object, const char* key, const std::string& path) const {
    if (!object.is_object()) wrong(path, "is not an object");
    const auto it = object.find(key);
    if (it == object.end()) wrong(path, std::string("has no \"") + key + "\"");
    return *it;
  }

  const nlohmann::json& array(const nlohmann::json& object, const char* key, const std::string& path) const {
    const auto& a = member(object, key, path);
    if (!a.is_array()) wrong(path + "." + key, "is not a list");
    return a;
  }

  std::string text(const nlohmann::json& object, const char* key, const std::string& path) const {
    const auto& t = member(object, key, path);
    if (!t.is_string()) wrong(path + "." + key, "is not a string");
    return t.get<std::string>();
  }

 private:
  std::string name_;
};

}  // namespace

SquadData parse_squad(std::string_view json, const std::string& name) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + " is not valid JSON", e.what());
  }
  const SquadReader r(name);
  SquadData data;
  int unnamed = 0;
  const auto& articles = r.array(root, "data", "the top level");
  for (std::size_t a = 0; a < articles.size(); ++a) {
    const std::string apath = "data[" + std::to_string(a) + "]";
    const auto& article = articles[a];
    const int ai = static_cast<int>(data.articles.size());
    std::string joined;
    const auto& paragraphs = r.array(article, "paragraphs", apath);
    for (std::size_t p = 0; p < paragraphs.size(); ++p) {
      const std::string ppath = apath + ".paragraphs[" + std::to_string(p) + "]";
      const int pi = static_cast<int>(data.paragraphs.size());
      data.paragraphs.push_back(r.text(paragraphs[p], "context", ppath));
      if (!joined.empty()) joined += "\n\n";
      joined += data.paragraphs.back();
      const auto& qas = r.array(paragraphs[p], "qas", ppath);
      for (std::size_t q = 0; q < qas.size(); ++q) {
        const std::string qpath = ppath + ".qas[" + std::to_string(q) + "]";
        SquadData::Item item;
        // Ids: strings in SQuAD, numbers in some published sets (COVID-QA), or absent.
        const auto id = qas[q].is_object() ? qas[q].find("id") : qas[q].end();
        if (id == qas[q].end() || id->is_null()) {
          item.id = "q" + std::to_string(unnamed++);
        } else if (id->is_string()) {
          item.id = id->get<std::string>();
        } else if (id->is_number()) {
          item.id = id->dump();
        } else {
          r.wrong(qpath + ".id", "is neither a string nor a number");
        }
        item.question = r.text(qas[q], "question", qpath);
        item.paragraph = pi;
        item.article = ai;
        const auto& answers = r.array(qas[q], "answers", qpath);
        for (std::size_t k = 0; k < answers.size(); ++k)
          item.answers.push_back(r.text(answers[k], "text", qpath + ".answers[" + std::to_string(k) + "]"));
        // A question without a reference answer (SQuAD 2.0's unanswerable ones) cannot
        // be scored by the v1.1 metric: counted, left out.
        if (item.answers.empty()) {
          ++data.unanswerable;
          continue;
        }
        data.items.push_back(std::move(item));
      }
    }
    data.articles.push_back(std::move(joined));
    const auto title = article.find("title");
    data.article_titles.push_back(title != article.end() && title->is_string() ? title->get<std::string>()
                                                                               : "article " + std::to_string(ai + 1));
  }
  return data;
}

std::vector<std::size_t> spread_sample(std::size_t total, int wanted) {
  const auto n = wanted > 0 ? std::min(total, static_cast<std::size_t>(wanted)) : total;
  std::vector<std::size_t> picked(n);
  for (std::size_t k = 0; k < n; ++k) picked[k] = (2 * k + 1) * total / (2 * n);
  return picked;
}

int articles_of(const SquadData& data, const std::vector<std::size_t>& picked) {
  std::vector<int> articles;
  for (const std::size_t i : picked) articles.push_back(data.items.at(i).article);
  std::sort(articles.begin(), articles.end());
  return static_cast<int>(std::unique(articles.begin(), articles.end()) - articles.begin());
}

}  // namespace ldqa::eval
