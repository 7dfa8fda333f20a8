// Fuzz target: any bytes under any name -> a reader's text, then passages. The text is
// valid UTF-8 without NUL, page spans and passages lie inside it on character
// boundaries, in order; a file that cannot be read fails with ldqa::Error, nothing else.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "data/passages.hpp"
#include "data/readers.hpp"
#include "ldqa/error.hpp"
#include "util/utf8.hpp"

// An invariant broken: say which, then crash (libFuzzer keeps the input).
#define require(ok)                                                      \
  do {                                                                   \
    if (!(ok)) {                                                         \
      std::fprintf(stderr, "fuzz_readers: broken invariant: %s\n", #ok); \
      std::abort();                                                      \
    }                                                                    \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const char* kNames[] = {"a.txt", "b.md", "c.html", "d.pdf", "README", "e.txt.gz", "f.xhtml", "g.dat"};
  const std::string name = kNames[data[0] % 8];
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    auto result = ldqa::data::extract_text(name, bytes);
    auto* text = std::get_if<ldqa::data::ExtractedText>(&result);
    if (!text) return 0;
    const std::string& t = text->text;
    require(ldqa::data::normalise_utf8(t, nullptr) == t);
    require(t.find('\0') == std::string::npos);
    require(ldqa::data::normalise_utf8(text->title, nullptr) == text->title);
    int64_t previous = 0;
    for (const auto& page : text->pages) {
      require(previous <= page.byte_start && page.byte_start <= page.byte_end);
      require(page.byte_end <= static_cast<int64_t>(t.size()));
      previous = page.byte_end;
    }
    const auto passages = ldqa::data::split_passages(t, text->pages, {60, 100});
    int64_t last_end = 0, last_char = 0;
    for (const auto& p : passages) {
      require(last_end <= p.byte_start && p.byte_start < p.byte_end && p.byte_end <= static_cast<int64_t>(t.size()));
      require(!ldqa::utf8::is_continuation(t[static_cast<std::size_t>(p.byte_start)]));
      require(p.byte_end == static_cast<int64_t>(t.size()) ||
              !ldqa::utf8::is_continuation(t[static_cast<std::size_t>(p.byte_end)]));
      require(p.char_start == ldqa::utf8::code_points(t, static_cast<std::size_t>(p.byte_start)));
      require(last_char <= p.char_start && p.char_start < p.char_end);
      last_end = p.byte_end;
      last_char = p.char_end;
    }
  } catch (const ldqa::Error&) {
  }
  return 0;
}
