// SQuAD v1.1 files and the official metric (the normalisation of the SQuAD v1.1
// evaluate script: lower case, punctuation and articles removed, whitespace folded).
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ldqa/error.hpp"
#include "model/model.hpp"

namespace ldqa::model {

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
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(read_maybe_gzip(file));
  } catch (const nlohmann::json::exception& e) {
    fail(file.string(), " is not valid JSON: ", e.what());
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
    fail(file.string(), " is not in SQuAD format: ", e.what());
  }
  return data;
}

SquadResult evaluate_squad(const Reader& reader, const SquadData& data, SquadSetting setting, ReaderOptions options,
                           int limit) {
  const std::size_t count =
      limit > 0 ? std::min<std::size_t>(data.items.size(), static_cast<std::size_t>(limit)) : data.items.size();
  std::vector<std::string_view> contexts;
  if (setting == SquadSetting::paragraph) {
    contexts.assign(data.paragraphs.begin(), data.paragraphs.end());
    if (options.max_len <= 0) options.max_len = 384;
    if (options.overlap < 0) options.overlap = 128;
  } else {
    contexts.assign(data.articles.begin(), data.articles.end());
  }
  options.answers = 1;
  std::vector<Question> questions;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& it = data.items[i];
    questions.push_back(Question{it.question, {setting == SquadSetting::paragraph ? it.paragraph : it.article}});
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto answers = reader.answer(questions, contexts, options);
  SquadResult result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double em = 0, f1 = 0;
  for (std::size_t i = 0; i < count; ++i) {
    std::string text;
    if (!answers[i].empty()) {
      const Answer& a = answers[i].front();
      text = std::string(contexts[static_cast<std::size_t>(a.context)].substr(
          static_cast<std::size_t>(a.byte_start), static_cast<std::size_t>(a.byte_end - a.byte_start)));
    }
    em += squad_exact(text, data.items[i].answers);
    f1 += squad_f1(text, data.items[i].answers);
    result.predictions[data.items[i].id] = std::move(text);
  }
  result.questions = static_cast<int>(count);
  result.em = count ? 100.0 * em / static_cast<double>(count) : 0;
  result.f1 = count ? 100.0 * f1 / static_cast<double>(count) : 0;
  return result;
}

Calibration calibrate_no_answer(const Reader& reader, const SquadData& data, int count, ReaderOptions options) {
  const auto n = std::min<std::size_t>(data.items.size(), static_cast<std::size_t>(std::max(count, 1)));
  std::vector<std::string_view> contexts(data.paragraphs.begin(), data.paragraphs.end());
  std::vector<Question> questions;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& it = data.items[i];
    questions.push_back(Question{it.question, {it.paragraph}});
    // A paragraph from another article: the item half the set away (deterministic).
    int other = it.paragraph;
    for (std::size_t k = (i + data.items.size() / 2) % data.items.size();
         other == it.paragraph || data.items[k].article == it.article; k = (k + 97) % data.items.size())
      other = data.items[k].article == it.article ? it.paragraph : data.items[k].paragraph;
    questions.push_back(Question{it.question, {other}});
  }
  if (options.max_len <= 0) options.max_len = 384;
  if (options.overlap < 0) options.overlap = 128;
  options.answers = 1;
  const auto answers = reader.answer(questions, contexts, options);
  std::vector<std::pair<double, bool>> scored;  // best score, answerable
  for (std::size_t i = 0; i < answers.size(); ++i)
    scored.emplace_back(answers[i].empty() ? -1e9 : answers[i].front().score, i % 2 == 0);
  std::sort(scored.begin(), scored.end());
  // Threshold between consecutive scores: answerable cases above it, the others below.
  std::size_t answerable_total = 0;
  for (const auto& s : scored) answerable_total += s.second;
  std::size_t below_unanswerable = 0, below_answerable = 0, best_correct = answerable_total;
  Calibration c;
  c.threshold = scored.empty() ? 0 : scored.front().first - 1;
  for (std::size_t i = 0; i < scored.size(); ++i) {
    (scored[i].second ? below_answerable : below_unanswerable) += 1;
    const std::size_t correct = below_unanswerable + (answerable_total - below_answerable);
    if (correct > best_correct && (i + 1 == scored.size() || scored[i + 1].first > scored[i].first)) {
      best_correct = correct;
      c.threshold = i + 1 < scored.size() ? (scored[i].first + scored[i + 1].first) / 2 : scored[i].first + 1;
    }
  }
  c.questions = static_cast<int>(n);
  c.accuracy = scored.empty() ? 0 : static_cast<double>(best_correct) / static_cast<double>(scored.size());
  return c;
}

}  // namespace ldqa::model
