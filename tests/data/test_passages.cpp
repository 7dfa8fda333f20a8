// Passage splitting: exact offsets, limits, pages, odd inputs.
#include <catch2/catch.hpp>

#include "data/passages.hpp"
#include "fixtures.hpp"

using namespace ldqa::data;

namespace {
int words(std::string_view s) {
  int n = 0;
  bool in = false;
  for (char c : s) {
    const bool space = c == ' ' || c == '\n' || c == '\t';
    if (!space && !in) ++n;
    in = !space;
  }
  return n;
}

int64_t code_points(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// Every check a passage list must pass, whatever the text.
void check_passages(const std::string& text, const std::vector<Passage>& ps, const PassageOptions& o) {
  int64_t prev_end = 0;
  int64_t covered_words = 0;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const Passage& p = ps[i];
    INFO("passage " << i);
    CHECK(p.ordinal == static_cast<int>(i));
    REQUIRE(p.byte_start >= prev_end);
    REQUIRE(p.byte_end > p.byte_start);
    REQUIRE(p.byte_end <= static_cast<int64_t>(text.size()));
    const std::string_view body(text.data() + p.byte_start, static_cast<std::size_t>(p.byte_end - p.byte_start));
    CHECK(body.front() != ' ');
    CHECK(body.front() != '\n');
    CHECK(body.back() != ' ');
    CHECK(words(body) <= o.max_words);
    CHECK(p.char_start == code_points(std::string_view(text).substr(0, static_cast<std::size_t>(p.byte_start))));
    CHECK(p.char_end - p.char_start == code_points(body));
    // nothing but whitespace between passages
    CHECK(words(std::string_view(text).substr(static_cast<std::size_t>(prev_end),
                                              static_cast<std::size_t>(p.byte_start - prev_end))) == 0);
    covered_words += words(body);
    prev_end = p.byte_end;
  }
  CHECK(words(std::string_view(text).substr(static_cast<std::size_t>(prev_end))) == 0);
  CHECK(covered_words == words(text));
}
}  // namespace

TEST_CASE("passages group paragraphs and point exactly into the text", "[data][passages]") {
  std::mt19937_64 rng(11);
  std::string text;
  for (int p = 0; p < 40; ++p) {
    text += ldqa::test::filler(rng, 5 + static_cast<int>(rng() % 150));
    text += (p % 3 == 0) ? "\n\n" : (p % 3 == 1 ? "\n  \n\n" : " \xC3\xA9t\xC3\xA9\n\n");
  }
  PassageOptions o{120, 200};
  const auto ps = split_passages(text, {}, o);
  REQUIRE(ps.size() > 5);
  check_passages(text, ps, o);
  for (const auto& p : ps) CHECK(p.page == 0);
}

TEST_CASE("a huge paragraph (one line, no newline) is cut within limits", "[data][passages]") {
  std::mt19937_64 rng(12);
  const std::string text = ldqa::test::filler(rng, 20000);
  PassageOptions o{200, 300};
  const auto ps = split_passages(text, {}, o);
  CHECK(ps.size() >= 20000 / 300);
  check_passages(text, ps, o);
  // cuts prefer sentence ends
  int sentence_ends = 0;
  for (const auto& p : ps) sentence_ends += text[static_cast<std::size_t>(p.byte_end - 1)] == '.' ? 1 : 0;
  CHECK(sentence_ends * 10 >= static_cast<int>(ps.size()) * 9);
  // a "word" longer than any limit still ends up in a passage
  const std::string one_word(100000, 'x');
  const auto single = split_passages(one_word, {}, o);
  REQUIRE(single.size() == 1);
  CHECK(single[0].byte_end == 100000);
}

TEST_CASE("passages never cross a page", "[data][passages]") {
  const std::string pdf = ldqa::test::make_pdf({{"Page one has words"}, {"Page two has more words"}, {"Three"}});
  auto r = extract_text("x.pdf", pdf);
  const auto& t = std::get<ExtractedText>(r);
  const auto ps = split_passages(t.text, t.pages, PassageOptions{1000, 2000});
  REQUIRE(ps.size() == 3);
  for (std::size_t i = 0; i < ps.size(); ++i) {
    CHECK(ps[i].page == static_cast<int>(i) + 1);
    CHECK(ps[i].byte_start >= t.pages[i].byte_start);
    CHECK(ps[i].byte_end <= t.pages[i].byte_end);
  }
  check_passages(t.text, ps, PassageOptions{1000, 2000});
}

TEST_CASE("empty and whitespace-only texts have no passages", "[data][passages]") {
  CHECK(split_passages("", {}, {}).empty());
  CHECK(split_passages(" \n\n \t\n", {}, {}).empty());
}
