// The C++ tokenizer against what training produced (the SQuAD fixture's packed ids and
// answer spans), and on hostile input; packing edge cases.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "ldqa/error.hpp"
#include "support/support.hpp"
#include "tokenizer/tokenizer.hpp"

using namespace ldqa;
using namespace ldqa::tokenizer;

namespace {
const std::string kModelDir = (ldqa::test::kModels / "ldqa-small").string();

const Tokenizer& shipped() {
  static const Tokenizer tok = Tokenizer::load(kModelDir + "/tokenizer.model");
  return tok;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \n\t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \n\t") - a + 1);
}

std::vector<Token> fake_tokens(int n) {
  std::vector<Token> out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = {100 + i % 1000, i, i + 1};
  return out;
}
}  // namespace

TEST_CASE("packed ids and answer spans match training's on SQuAD dev questions", "[tokenizer]") {
  // Both bundled models: their tokenizers differ (16 000 and 24 000 pieces).
  const auto [model, vocab] =
      GENERATE(std::pair<std::string, int>{"ldqa-small", 16000}, std::pair<std::string, int>{"ldqa-base", 24000});
  INFO(model);
  std::ifstream in(ldqa::test::kModels / "fixtures" / (model + "-squad.json"));
  REQUIRE(in);
  const auto fixture = nlohmann::json::parse(in);
  const Tokenizer tok = Tokenizer::load((ldqa::test::kModels / model / "tokenizer.model").string());
  CHECK(tok.vocab_size() == vocab);
  CHECK(tok.piece_id("[CLS]") == 2);
  CHECK(tok.piece_id("[SEP]") == 3);
  PackingConfig config;
  config.max_len = 384;
  config.overlap = 128;
  REQUIRE(fixture["cases"].size() == 8);
  for (const auto& c : fixture["cases"]) {
    INFO(c["id"].get<std::string>());
    const std::string context = c["context"];
    const auto ctx = tok.encode(context);
    const auto windows = pack(tok.encode(c["question"].get<std::string>()), ctx, config);
    const auto w = std::find_if(windows.begin(), windows.end(),
                                [&](const Window& x) { return x.context_offset == c["window_start"].get<int64_t>(); });
    REQUIRE(w != windows.end());
    CHECK(w->ids == c["ids"].get<std::vector<int32_t>>());
    CHECK(w->global_len == c["global_len"].get<int>());
    const int first = c["start_token"].get<int>() - w->context_first + static_cast<int>(w->context_offset);
    const int last = c["end_token"].get<int>() - w->context_first + static_cast<int>(w->context_offset);
    const Token& a = ctx[static_cast<std::size_t>(first)];
    const Token& b = ctx[static_cast<std::size_t>(last)];
    CHECK(trim(context.substr(static_cast<std::size_t>(a.byte_start),
                              static_cast<std::size_t>(b.byte_end - a.byte_start))) == c["text"].get<std::string>());
  }
}

TEST_CASE("spans stay inside any input, in order", "[tokenizer]") {
  const Tokenizer& tok = shipped();
  CHECK(tok.encode("").empty());
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 400);
    for (int i = 0; i < n; ++i) text.push_back(static_cast<char>(rng() % 256));  // invalid UTF-8, NULs
    text += " caf\xC3\xA9 \xE5\x8C\x97\xE4\xBA\xAC end";
    const auto tokens = tok.encode(text);
    REQUIRE_FALSE(tokens.empty());
    int64_t prev = 0;
    for (const auto& t : tokens) {
      CHECK(t.byte_start >= prev);
      CHECK(t.byte_end >= t.byte_start);
      CHECK(t.byte_end <= static_cast<int64_t>(text.size()));
      CHECK(t.id >= 0);
      CHECK(t.id < tok.vocab_size());
      prev = t.byte_start;
    }
  }
  // byte-fallback pieces: the last carries the character
  const std::string han = "\xE5\x8C\x97";
  const auto tokens = tok.encode("x " + han);
  std::string covered;
  for (const auto& t : tokens)
    covered += std::string("x " + han)
                   .substr(static_cast<std::size_t>(t.byte_start), static_cast<std::size_t>(t.byte_end - t.byte_start));
  CHECK(covered.find(han) != std::string::npos);
}

TEST_CASE("packing: question cut, windows cover the context with the given overlap", "[tokenizer]") {
  PackingConfig config;
  config.max_len = 100;
  config.overlap = 20;
  // empty question and context: one window of specials only
  auto w = pack({}, {}, config);
  REQUIRE(w.size() == 1);
  CHECK(w[0].ids == std::vector<int32_t>{2, 3, 3});
  CHECK(w[0].types == std::vector<int32_t>{0, 0, 1});
  // a long question is cut to max_question_tokens
  config.max_question_tokens = 10;
  w = pack(fake_tokens(50), fake_tokens(5), config);
  REQUIRE(w.size() == 1);
  CHECK(w[0].global_len == 12);
  CHECK(w[0].ids.size() == 12u + 5u + 1u);
  // a 200k-token context: windows of budget tokens, starts every budget - overlap, last ends at the end
  const auto ctx = fake_tokens(200000);
  w = pack(fake_tokens(7), ctx, config);
  const int budget = 100 - 7 - 3;
  int64_t covered = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    CHECK(static_cast<int>(w[i].ids.size()) <= config.max_len);
    CHECK(w[i].context_count == budget);
    if (i + 2 < w.size()) CHECK(w[i + 1].context_offset - w[i].context_offset == budget - config.overlap);
    if (i + 2 == w.size()) CHECK(w[i + 1].context_offset - w[i].context_offset <= budget - config.overlap);
    CHECK(w[i].context_offset <= covered);  // no gap
    covered = w[i].context_offset + w[i].context_count;
    CHECK(w[i].ids[static_cast<std::size_t>(w[i].context_first)] ==
          ctx[static_cast<std::size_t>(w[i].context_offset)].id);
  }
  CHECK(covered == 200000);
  config.max_len = 5;
  CHECK_THROWS_WITH(pack(fake_tokens(7), ctx, config), Catch::Contains("max_len 5"));
}

TEST_CASE("a missing tokenizer model names the file", "[tokenizer]") {
  CHECK_THROWS_WITH(Tokenizer::load("/nonexistent/dir/tok.model"),
                    Catch::Contains("tokenizer model not found: /nonexistent/dir/tok.model"));
  CHECK_THROWS_AS(shipped().piece_id("[NO-SUCH-PIECE]"), ldqa::Error);
}
