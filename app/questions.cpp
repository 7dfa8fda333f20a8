#include "app/questions.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ldqa/error.hpp"

namespace ldqa::cli {

std::vector<BatchQuestion> parse_questions(std::string_view content, const std::string& file) {
  std::vector<BatchQuestion> questions;
  std::size_t at = 0;
  for (int number = 1; at < content.size(); ++number) {
    const std::size_t end = std::min(content.find('\n', at), content.size());
    std::string line(content.substr(at, end - at));
    at = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    const std::string where = file + ":" + std::to_string(number);
    if (line[first] != '{') {
      questions.push_back({std::to_string(number), line});
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": not valid JSON (a line is a question, or {\"id\": ..., \"question\": \"...\"})", e.what());
    }
    if (!j.is_object()) throw Error(where + ": a JSON line must be an object {\"id\": ..., \"question\": \"...\"}");
    const auto q = j.find("question");
    if (q == j.end() || !q->is_string() || q->get<std::string>().find_first_not_of(" \t") == std::string::npos)
      throw Error(where + ": the object has no \"question\" string");
    const auto id = j.find("id");
    std::string id_text = std::to_string(number);
    if (id != j.end() && id->is_string()) {
      id_text = id->get<std::string>();
    } else if (id != j.end() && id->is_number()) {
      id_text = id->dump();
    } else if (id != j.end() && !id->is_null()) {
      throw Error(where + ": \"id\" must be a string or a number");
    }
    questions.push_back({id_text, q->get<std::string>()});
  }
  return questions;
}

std::vector<BatchQuestion> read_questions(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error("cannot read " + file);
  std::ostringstream content;
  content << in.rdbuf();
  return parse_questions(content.str(), file);
}

}  // namespace ldqa::cli
