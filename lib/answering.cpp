#include "lib/answering.hpp"

#include <algorithm>
#include <chrono>

#include "util/utf8.hpp"

namespace ldqa::detail {

namespace {

double elapsed_ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void check_question(std::string_view question, const AskOptions& options) {
  const auto not_blank = std::find_if(question.begin(), question.end(),
                                      [](char ch) { return !(ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'); });
  if (not_blank == question.end()) fail("empty question");
  if (options.answers < 1 || options.passages < 1 || options.context_tokens < 64)
    fail("ask: answers (", options.answers, ") and passages (", options.passages,
         ") must be positive and context_tokens (", options.context_tokens, ") at least 64");
  if (options.read_tokens < -1)
    fail("ask: read_tokens (", options.read_tokens, ") must be >= 0 (0: no limit) or -1 (the device's default)");
}

AskResult answer_question(const AskContext& at, std::string_view question, const AskOptions& options) {
  check_question(question, options);
  AskResult result;
  result.threshold = at.threshold;
  const auto t0 = std::chrono::steady_clock::now();
  const auto hits = at.retriever.search(question, options.passages);
  const int budget = std::min(options.context_tokens, at.reader.encoder().config().max_len - 80);
  const auto contexts = at.retriever.contexts(
      hits, budget, [&](std::string_view s) { return static_cast<int>(at.reader.tokenizer().encode(s).size()); },
      options.read_tokens >= 0 ? options.read_tokens : (at.device == Device::cpu ? AskOptions::kCpuReadTokens : 0));
  result.retrieval_ms = elapsed_ms(t0);
  if (contexts.empty()) return result;
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<std::string_view> texts;
  model::Question q{std::string(question), {}};
  for (const auto& c : contexts) {
    q.contexts.push_back(static_cast<int>(texts.size()));
    texts.push_back(c.text);
    result.reader_tokens += c.tokens;
  }
  model::ReaderOptions ro;
  ro.device = at.device;
  ro.answers = options.answers;
  const auto found = at.reader.answer({q}, texts, ro)[0];
  result.reader_ms = elapsed_ms(t1);
  if (found.empty()) return result;
  result.best_score = found.front().score;
  for (const auto& a : found) {
    if (a.score < result.threshold) break;
    const auto& c = contexts[static_cast<std::size_t>(a.context)];
    const std::string_view text = c.text;
    Answer out;
    out.text = std::string(
        text.substr(static_cast<std::size_t>(a.byte_start), static_cast<std::size_t>(a.byte_end - a.byte_start)));
    out.score = a.score;
    out.source.path = c.path;
    out.source.title = c.title;
    out.source.byte_start = c.byte_start + a.byte_start;
    out.source.byte_end = c.byte_start + a.byte_end;
    out.source.char_start = c.char_start + utf8::code_points(text, static_cast<std::size_t>(a.byte_start));
    out.source.char_end = c.char_start + utf8::code_points(text, static_cast<std::size_t>(a.byte_end));
    out.source.page = c.first_page > 0 ? at.store.page_at(c.document_id, out.source.byte_start) : 0;
    constexpr std::size_t kAround = 240;
    const auto b0 = static_cast<std::size_t>(a.byte_start), b1 = static_cast<std::size_t>(a.byte_end);
    const std::size_t from = utf8::boundary_forward(text, b0 > kAround ? b0 - kAround : 0);
    const std::size_t to = utf8::boundary_back(text, std::min(text.size(), b1 + kAround));
    out.before = std::string(text.substr(from, b0 - from));
    out.after = std::string(text.substr(b1, to - b1));
    result.answers.push_back(std::move(out));
  }
  return result;
}

}  // namespace ldqa::detail
