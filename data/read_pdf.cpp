// PDF: poppler-cpp's text per page, one page span each; words a line break hyphenated
// ("iden-\ntifier") are joined again.
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "data/readers_internal.hpp"
#include "ldqa/error.hpp"

namespace ldqa::data::detail {

namespace {

void silence_poppler(const std::string&, void*) {}

bool ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A letter ends at text[end - 1]: an ASCII letter, or the last byte of a multi-byte
// character (accented letters; other scripts rarely hyphenate this way).
bool letter_before(const std::string& text, std::size_t end) {
  if (end == 0) return false;
  const auto c = static_cast<unsigned char>(text[end - 1]);
  return ascii_letter(static_cast<char>(c)) || c >= 0x80;
}

}  // namespace

// "iden-\ntifier" -> "identifier": a hyphen (ASCII, soft U+00AD or U+2010) ending a line
// after a letter, the next line starting with a lower-case letter. A compound broken
// at its own hyphen ("well-\nknown") loses the hyphen too; that is rarer in typeset text
// than words a justified line split.
std::string join_hyphenated_lines(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    std::size_t hyphen = 0;  // bytes of the hyphen at i, when it ends a line
    if (text[i] == '-') {
      hyphen = 1;
    } else if (text.compare(i, 2, "\xC2\xAD") == 0) {
      hyphen = 2;
    } else if (text.compare(i, 3, "\xE2\x80\x90") == 0) {
      hyphen = 3;
    }
    if (hyphen && i + hyphen + 1 < text.size() && text[i + hyphen] == '\n' && letter_before(out, out.size()) &&
        text[i + hyphen + 1] >= 'a' && text[i + hyphen + 1] <= 'z') {
      i += hyphen;  // skip the hyphen and the line break
      continue;
    }
    out.push_back(text[i]);
  }
  return out;
}

ExtractedText read_pdf(std::string_view bytes) {
  static std::once_flag quiet;
  std::call_once(quiet, [] { poppler::set_debug_error_function(silence_poppler, nullptr); });
  ExtractedText out;
  out.format = "pdf";
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX)) fail("PDF larger than 2 GiB");
  std::unique_ptr<poppler::document> doc(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!doc) fail("not a readable PDF (corrupt or truncated)");
  if (doc->is_locked()) fail("encrypted PDF");
  const auto title = doc->info_key("Title").to_utf8();
  out.title = normalise_utf8(std::string_view(title.data(), title.size()), nullptr);
  const int pages = doc->pages();
  for (int i = 0; i < pages; ++i) {
    std::unique_ptr<poppler::page> page(doc->create_page(i));
    if (!page) continue;
    const auto utf8 = page->text().to_utf8();
    std::string text = normalise_utf8(std::string_view(utf8.data(), utf8.size()), &out.replaced);
    std::replace(text.begin(), text.end(), '\f', '\n');
    text = join_hyphenated_lines(tidy_paragraphs(text));
    if (text.empty()) continue;
    if (out.text.size() + text.size() > kMaxTextBytes) {
      out.note = "text beyond 512 MiB left out (from page " + std::to_string(i + 1) + ")";
      break;
    }
    if (!out.text.empty()) out.text.append("\n\n");
    PageSpan span;
    span.page = i + 1;
    span.byte_start = static_cast<int64_t>(out.text.size());
    out.text.append(text);
    span.byte_end = static_cast<int64_t>(out.text.size());
    out.pages.push_back(span);
  }
  return out;
}

}  // namespace ldqa::data::detail
