// SQuAD v1.1 files and the official metric (the normalisation of the SQuAD v1.1
// evaluate script: lower case, punctuation and articles removed, whitespace folded).
#include <zlib.h>

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

SquadData parse_squad(std::string_view json, const std::string& name) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    fail(name, " is not valid JSON: ", e.what());
  }
  SquadData data;
  try {
    int unnamed = 0;
    for (const auto& article : root.at("data")) {
      const int ai = static_cast<int>(data.articles.size());
      std::string joined;
      for (const auto& para : article.at("paragraphs")) {
        const int pi = static_cast<int>(data.paragraphs.size());
        data.paragraphs.push_back(para.at("context").get<std::string>());
        if (!joined.empty()) joined += "\n\n";
        joined += data.paragraphs.back();
        for (const auto& qa : para.at("qas")) {
          SquadData::Item item;
          item.id = qa.contains("id") ? qa["id"].get<std::string>() : "q" + std::to_string(unnamed++);
          item.question = qa.at("question").get<std::string>();
          item.paragraph = pi;
          item.article = ai;
          for (const auto& a : qa.at("answers")) item.answers.push_back(a.at("text").get<std::string>());
          data.items.push_back(std::move(item));
        }
      }
      data.articles.push_back(std::move(joined));
      data.article_titles.push_back(article.value("title", "article " + std::to_string(ai + 1)));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(name, " is not in SQuAD format: ", e.what());
  }
  return data;
}

}  // namespace ldqa::eval
