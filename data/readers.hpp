// Readers: what a file's bytes hold as text. Content is sniffed first (PDF magic,
// binary bytes), then the extension decides; every reader returns normalised UTF-8
// (valid, \n line ends, no BOM, no NUL) and, for PDFs, the byte span of each page.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ldqa::data {

struct PageSpan {
  int page = 0;  // 1-based
  int64_t byte_start = 0, byte_end = 0;
};

struct ExtractedText {
  std::string format;  // "txt", "md", "html", "pdf"
  std::string title;
  std::string text;             // normalised UTF-8: valid, \n line ends, no BOM, no NUL
  std::vector<PageSpan> pages;  // PDFs only
  int64_t replaced = 0;         // invalid bytes replaced by U+FFFD
};

// Why a file is not indexed (skipped) — as opposed to failing to read.
struct SkipReason {
  std::string reason;
};

// Recognises the format by content first (PDF magic, binary bytes), then extension.
// Returns a SkipReason for unsupported or binary files; throws ldqa::Error for files
// of a supported format that cannot be read (corrupt PDF, ...).
std::variant<ExtractedText, SkipReason> extract_text(const std::filesystem::path& path, std::string_view bytes);

// Whether extract_text reads files with this name's extension (.txt .text .md .markdown
// .html .htm .xhtml .pdf, any case). Other files are only read when they hold a PDF.
bool has_supported_extension(const std::filesystem::path& path);

// UTF-8 cleanup used by every reader: invalid sequences -> U+FFFD (counted), NUL -> U+FFFD,
// CRLF/CR -> LF, a leading BOM dropped.
std::string normalise_utf8(std::string_view in, int64_t* replaced);

}  // namespace ldqa::data
