// What the command prints: JSON through nlohmann (always valid JSON: bytes that are not
// UTF-8 become U+FFFD, non-finite numbers null), and text for a terminal in which
// nothing from a document or a file name can act as a control sequence.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ldqa/eval.hpp"
#include "ldqa/ldqa.hpp"

namespace ldqa::cli {

using Json = nlohmann::ordered_json;

// One JSON document on a line of stdout.
void print_json(const Json& value);
std::string json_text(const Json& value);  // the same, without the newline

Json to_json(const AskResult& result);
Json to_json(const Passage& passage);
Json to_json(const DocumentInfo& document);
Json to_json(const EvalReport& report);

// Text for a terminal: control characters (C0 but tab and newline, DEL, C1) and the
// escape sequences they would start are shown as \xNN; bytes that are not UTF-8 as
// U+FFFD. one_line also folds whitespace runs (newlines included) into one space.
std::string terminal_text(std::string_view text);
std::string one_line(std::string_view text);

// The answers of `ask`/`chat`, the answer highlighted (colour on a terminal, [[...]]
// otherwise).
void print_answers(const AskResult& result, bool color);

}  // namespace ldqa::cli
