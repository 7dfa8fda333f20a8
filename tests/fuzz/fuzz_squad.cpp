// Fuzz target: any bytes as a SQuAD-format file: parsed with every question pointing at
// a real paragraph and article, or refused with ldqa::Error naming where.
#include <cstdint>
#include <cstdlib>

#include "eval/squad.hpp"
#include "ldqa/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto d = ldqa::eval::parse_squad(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    for (const auto& item : d.items) {
      if (item.paragraph < 0 || static_cast<std::size_t>(item.paragraph) >= d.paragraphs.size()) std::abort();
      if (item.article < 0 || static_cast<std::size_t>(item.article) >= d.articles.size()) std::abort();
      if (item.answers.empty()) std::abort();
    }
    if (d.article_titles.size() != d.articles.size()) std::abort();
  } catch (const ldqa::Error&) {
  }
  return 0;
}
