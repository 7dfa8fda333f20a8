// The SQuAD module: the official metric, and SQuAD-format files as users have them.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "eval/squad.hpp"
#include "ldqa/error.hpp"
#include "support/support.hpp"

using namespace ldqa;

TEST_CASE("SQuAD normalisation and scores follow the official script", "[eval]") {
  CHECK(eval::squad_normalize("The  Quick, brown fox!") == "quick brown fox");
  CHECK(eval::squad_normalize("an Apple a day") == "apple day");
  CHECK(eval::squad_normalize("ÉCOLE") == "école");
  CHECK(eval::squad_exact("the Eiffel Tower.", {"Tower", "Eiffel tower"}) == 1.0);
  CHECK(eval::squad_exact("Eiffel", {"Eiffel tower"}) == 0.0);
  CHECK(eval::squad_f1("Eiffel", {"Eiffel tower"}) == Approx(2 * 1.0 * 0.5 / 1.5));
  CHECK(eval::squad_f1("x b b", {"b b c", "y"}) == Approx(2.0 / 3));
  CHECK(eval::squad_f1("a b b", {"b b c"}) == Approx(0.8));  // "a" is an article: dropped
  CHECK(eval::squad_f1("", {"x"}) == 0.0);
  CHECK(eval::squad_f1("the", {"a"}) == 0.0);
}

TEST_CASE("SQuAD-format files as users have them: numeric ids, no titles, unanswerable questions", "[eval]") {
  // COVID-QA's published file: numeric ids, no titles; SQuAD 2.0 adds questions without answers.
  const auto data = eval::parse_squad(R"({"data": [{"paragraphs": [{"context": "Alpha beta gamma.", "qas": [
      {"id": 107, "question": "Which letter?", "answers": [{"text": "beta", "answer_start": 6}]},
      {"question": "No id?", "answers": [{"text": "gamma"}]},
      {"id": "u1", "question": "Unanswerable?", "answers": [], "is_impossible": true}]}]},
      {"title": null, "paragraphs": [{"context": "Delta.", "qas": []}]}]})",
                                      "covid.json");
  REQUIRE(data.items.size() == 2);
  CHECK(data.items[0].id == "107");
  CHECK(data.items[1].id == "q0");
  CHECK(data.unanswerable == 1);
  CHECK(data.article_titles == std::vector<std::string>{"article 1", "article 2"});
  CHECK(data.articles[1] == "Delta.");
}

TEST_CASE("a malformed SQuAD file is named by the JSON path of what is wrong", "[eval]") {
  auto error = [](const char* json) {
    try {
      eval::parse_squad(json, "f.json");
    } catch (const ldqa::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error(R"({"version": "1.1"})"), Catch::Contains("the top level has no \"data\""));
  CHECK_THAT(error(R"({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "a", "answers": []}]}]}]})"),
             Catch::Contains("data[0].paragraphs[0].qas[0] has no \"question\""));
  CHECK_THAT(error(R"({"data": [{"paragraphs": [{"context": 5, "qas": []}]}]})"),
             Catch::Contains("data[0].paragraphs[0].context is not a string"));
  CHECK_THAT(
      error(R"({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": [1], "question": "q", "answers": []}]}]}]})"),
      Catch::Contains("data[0].paragraphs[0].qas[0].id is neither"));
  CHECK_THAT(error(R"({"data": [{"paragraphs": {}}]})"), Catch::Contains("data[0].paragraphs is not a list"));
  CHECK_THAT(error("{not json"), Catch::Contains("f.json is not valid JSON"));
}

TEST_CASE("a sample of N questions spreads over the file instead of taking the first N", "[eval]") {
  // The middle question of each of N equal stretches.
  CHECK(eval::spread_sample(10, 3) == std::vector<std::size_t>{1, 5, 8});
  CHECK(eval::spread_sample(10, 1) == std::vector<std::size_t>{5});
  CHECK(eval::spread_sample(7, 7) == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(eval::spread_sample(4, 0) == std::vector<std::size_t>{0, 1, 2, 3});   // 0: all
  CHECK(eval::spread_sample(4, -3) == std::vector<std::size_t>{0, 1, 2, 3});  // as the CLI's 0
  CHECK(eval::spread_sample(3, 50) == std::vector<std::size_t>{0, 1, 2});     // more than there are
  CHECK(eval::spread_sample(0, 5).empty());
  std::mt19937_64 rng(test::test_seed());
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t total = 1 + rng() % 20000;
    const int wanted = 1 + static_cast<int>(rng() % 600);
    const auto picked = eval::spread_sample(total, wanted);
    INFO("total " << total << ", wanted " << wanted);
    REQUIRE(picked.size() == std::min<std::size_t>(total, static_cast<std::size_t>(wanted)));
    CHECK(picked.back() < total);
    for (std::size_t k = 1; k < picked.size(); ++k) {
      CHECK(picked[k] > picked[k - 1]);  // in order, no repeats
      // Even: neighbours differ by the stretch, rounded down or up.
      const std::size_t gap = picked[k] - picked[k - 1], stretch = total / picked.size();
      CHECK((gap == stretch || gap == stretch + 1));
    }
  }
}

TEST_CASE("the articles a sample of questions comes from are counted", "[eval]") {
  // Three articles of 4, 1 and 3 questions: the first 3 questions are all about the first.
  std::string json = R"({"data": [)";
  const int per_article[] = {4, 1, 3};
  for (int a = 0; a < 3; ++a) {
    json += std::string(a ? "," : "") + R"({"paragraphs": [{"context": "Text.", "qas": [)";
    for (int q = 0; q < per_article[a]; ++q)
      json += std::string(q ? "," : "") + R"({"question": "Q?", "answers": [{"text": "Text"}]})";
    json += "]}]}";
  }
  json += "]}";
  const auto data = eval::parse_squad(json, "three.json");
  REQUIRE(data.items.size() == 8);
  CHECK(eval::articles_of(data, {0, 1, 2}) == 1);
  CHECK(eval::articles_of(data, eval::spread_sample(8, 3)) == 3);  // 1, 4, 6
  CHECK(eval::articles_of(data, {}) == 0);
  CHECK_THROWS(eval::articles_of(data, {8}));  // past the file: an error, not a read out of bounds
}
