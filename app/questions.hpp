// The questions of `ldqa batch`: a text file with one question per line (its id is the
// line number), or JSONL objects {"id": string or number, "question": string}; blank
// lines are skipped. Errors name the file and line and say what a line should hold.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ldqa::cli {

struct BatchQuestion {
  std::string id, question;
};

std::vector<BatchQuestion> parse_questions(std::string_view content, const std::string& file);
std::vector<BatchQuestion> read_questions(const std::string& file);

}  // namespace ldqa::cli
