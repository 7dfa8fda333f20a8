// The command's output: text for a terminal carries no control sequences from a
// document or a file name, JSON is always JSON, batch questions are parsed with clear
// errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "app/output.hpp"
#include "app/questions.hpp"
#include "ldqa/error.hpp"

using namespace ldqa;
using namespace ldqa::cli;

TEST_CASE("terminal text: escape sequences, C1 controls and bad UTF-8 cannot reach the terminal", "[app]") {
  // a title setting escape, a screen clear, C1 CSI, DEL, a bell, invalid bytes
  const std::string hostile =
      "a\x1B]0;owned\x07 b\x1B[2J c\xC2\x9B"
      "31m d\x7F e\xFF\xFE f\tg\nh";
  const std::string shown = terminal_text(hostile);
  CHECK(shown.find('\x1B') == std::string::npos);
  CHECK(shown.find('\x07') == std::string::npos);
  CHECK(shown.find('\x7F') == std::string::npos);
  CHECK(shown.find("\xC2\x9B") == std::string::npos);
  CHECK(shown == "a\\x1B]0;owned\\x07 b\\x1B[2J c\\x9B31m d\\x7F e\xEF\xBF\xBD\xEF\xBF\xBD f\tg\nh");
  CHECK(one_line("x\n\n\ty\x1B") == "x y\\x1B");
  CHECK(terminal_text("caf\xC3\xA9 \xF0\x9F\x99\x82") == "caf\xC3\xA9 \xF0\x9F\x99\x82");  // text passes
}

TEST_CASE("JSON output is always valid JSON", "[app]") {
  AskResult r;
  Answer a;
  a.text = "bad \xFF bytes";
  a.source.path = "/docs/na\xEFve.txt";  // a Latin-1 file name
  a.score = std::numeric_limits<double>::quiet_NaN();
  r.answers.push_back(a);
  r.best_score = std::numeric_limits<double>::infinity();
  const std::string text = json_text(to_json(r));
  const auto parsed = nlohmann::json::parse(text);  // throws if not JSON
  CHECK(parsed["answers"][0]["score"].is_null());
  CHECK(parsed["best_score"].is_null());
  CHECK(parsed["answers"][0]["path"] == "/docs/na\xEF\xBF\xBDve.txt");
}

TEST_CASE("batch questions: lines and JSON objects, errors that say what a line should hold", "[app]") {
  const auto q =
      parse_questions("When?\n\n{\"id\": 7, \"question\": \"Who?\"}\r\n{\"question\": \"Where?\"}\n", "q.txt");
  REQUIRE(q.size() == 3);
  CHECK(q[0].id == "1");
  CHECK(q[0].question == "When?");
  CHECK(q[1].id == "7");
  CHECK(q[2].id == "4");
  auto error = [](const std::string& content) {
    try {
      parse_questions(content, "q.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error("ok\n{\"id\": \"a\"}\n") == "q.jsonl:2: the object has no \"question\" string");
  CHECK_THAT(error("{\"question\": \"q\", \"id\": [1]}"), Catch::Contains("\"id\" must be a string or a number"));
  CHECK_THAT(error("{\"question\": \"q\""), Catch::Contains("q.jsonl:1: not valid JSON"));
  CHECK(error("{\"question\": \"q\"").find("json.exception") == std::string::npos);  // the parser's words: detail()
}
