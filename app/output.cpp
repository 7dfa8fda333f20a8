#include "app/output.hpp"

#include <cmath>

#include "util/utf8.hpp"

namespace ldqa::cli {

namespace {

Json number(double value) { return std::isfinite(value) ? Json(value) : Json(nullptr); }

Json to_json(const Answer& a) {
  return Json{{"text", a.text},
              {"score", number(a.score)},
              {"path", a.source.path},
              {"char_start", a.source.char_start},
              {"char_end", a.source.char_end},
              {"page", a.source.page},
              {"before", a.before},
              {"after", a.after}};
}

}  // namespace

std::string json_text(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

void print_json(const Json& value) {
  const std::string text = json_text(value);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

Json to_json(const AskResult& r) {
  Json answers = Json::array();
  for (const auto& a : r.answers) answers.push_back(to_json(a));
  return Json{{"answers", std::move(answers)},
              {"best_score", number(r.best_score)},
              {"threshold", number(r.threshold)},
              {"retrieval_ms", number(r.retrieval_ms)},
              {"reader_ms", number(r.reader_ms)}};
}

Json to_json(const Passage& p) {
  return Json{{"path", p.path},         {"score", number(p.score)}, {"char_start", p.char_start},
              {"char_end", p.char_end}, {"page", p.page},           {"text", p.text}};
}

Json to_json(const DocumentInfo& d) {
  return Json{{"path", d.path}, {"status", d.status},     {"format", d.format}, {"title", d.title},
              {"size", d.size}, {"passages", d.passages}, {"error", d.error}};
}

Json to_json(const EvalReport& r) {
  return Json{{"setting", r.setting},
              {"device", r.device},
              {"questions", r.questions},
              {"articles", r.articles},
              {"unanswerable", r.unanswerable},
              {"em", number(r.em)},
              {"f1", number(r.f1)},
              {"seconds", number(r.seconds)},
              {"p50_ms", number(r.p50_ms)},
              {"p95_ms", number(r.p95_ms)},
              {"retrieval_p50_ms", number(r.retrieval_p50_ms)},
              {"reader_p50_ms", number(r.reader_p50_ms)},
              {"reader_tokens_mean", number(r.reader_tokens_mean)}};
}

std::string terminal_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8::sequence_length(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
      continue;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    const bool c0 = len == 1 && (c < 0x20 || c == 0x7F) && c != '\n' && c != '\t';
    const bool c1 = len == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;  // U+0080..U+009F
    if (c0 || c1) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c1 ? static_cast<unsigned char>(s[i + 1]) : c);
      out += buf;
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string one_line(std::string_view s) {
  std::string out;
  for (char ch : terminal_text(s)) {
    const bool space = ch == '\n' || ch == '\t' || ch == ' ';
    if (space && !out.empty() && out.back() == ' ') continue;
    out += space ? ' ' : ch;
  }
  return out;
}

void print_answers(const AskResult& r, bool color) {
  if (r.answers.empty()) {
    std::printf("no answer found (best score %.2f, threshold %.2f)\n", r.best_score, r.threshold);
    return;
  }
  const char* on = color ? "\033[1;33m" : "[[";
  const char* off = color ? "\033[0m" : "]]";
  for (std::size_t i = 0; i < r.answers.size(); ++i) {
    const auto& a = r.answers[i];
    const std::string page = a.source.page ? " page " + std::to_string(a.source.page) : "";
    const std::string text = one_line(a.text);
    std::printf("%zu. %s  (score %.2f)\n   %s  chars %lld-%lld%s\n   ...%s%s%s%s%s...\n\n", i + 1, text.c_str(),
                a.score, terminal_text(a.source.path).c_str(), static_cast<long long>(a.source.char_start),
                static_cast<long long>(a.source.char_end), page.c_str(), one_line(a.before).c_str(), on, text.c_str(),
                off, one_line(a.after).c_str());
  }
}

}  // namespace ldqa::cli
