// Fuzz target: any bytes as `ldqa batch` input: questions (each with a non-empty text
// and an id) or an ldqa::Error naming the line.
#include <cstdint>
#include <cstdlib>

#include "app/questions.hpp"
#include "ldqa/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (const auto& q : ldqa::cli::parse_questions(std::string_view(reinterpret_cast<const char*>(data), size), "f"))
      if (q.id.empty() || q.question.find_first_not_of(" \t") == std::string::npos) std::abort();
  } catch (const ldqa::Error&) {
  }
  return 0;
}
