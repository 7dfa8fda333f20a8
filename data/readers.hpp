// Readers: what a file's bytes hold as text. Content decides first: gzip is opened,
// a PDF is known by its magic, a byte-order mark names UTF-8/16/32, binary bytes are
// skipped; then the name chooses between HTML, Markdown and plain text (files with no
// or an unknown extension that hold text are plain text). Every reader returns
// normalised UTF-8 (valid, \n line ends, no BOM, no NUL) and, for PDFs, the byte span
// of each page.
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
  std::string note;             // how the reader coped, for the index summary ("" normally)
};

// Why a file is not indexed (skipped) — as opposed to failing to read.
struct SkipReason {
  std::string reason;
};

// Returns a SkipReason for binary files and known non-document formats; throws
// ldqa::Error for files that cannot be read as what they claim to be (a corrupt PDF or
// gzip, ...).
std::variant<ExtractedText, SkipReason> extract_text(const std::filesystem::path& path, std::string_view bytes);

// Whether a file could hold text, from its name and first bytes (8 KiB): false for
// known binary formats and bytes that are binary. The indexer reads the rest only then.
bool may_hold_text(const std::filesystem::path& path, std::string_view first_bytes);

// The formats read by name: .txt .text .md .markdown .html .htm .xhtml .pdf (any case,
// also with .gz). Other names are read when their content is text.
bool has_supported_extension(const std::filesystem::path& path);

// UTF-8 cleanup used by every reader: invalid sequences -> U+FFFD (counted), NUL -> U+FFFD,
// CRLF/CR -> LF, a leading BOM dropped.
std::string normalise_utf8(std::string_view in, int64_t* replaced);

}  // namespace ldqa::data
