// Internal to data/'s readers: one file per format (read_html.cpp, read_pdf.cpp) and
// the byte-level decoding they share (encodings.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "data/readers.hpp"

namespace ldqa::data::detail {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
// Whatever a file holds, no reader produces more text than this (a gzip bomb, a
// pathological PDF): the rest is left out and the document says so.
inline constexpr std::size_t kMaxTextBytes = std::size_t{512} << 20;

// The text's Unicode encoding from its byte-order mark: "utf-8", "utf-16le",
// "utf-16be", "utf-32le", "utf-32be", or "" when there is none.
std::string_view bom_encoding(std::string_view bytes);
// UTF-16/32 (by `encoding`, BOM included) to UTF-8; unpaired surrogates and values
// beyond U+10FFFF become U+FFFD (counted in *replaced).
std::string utf16_32_to_utf8(std::string_view bytes, std::string_view encoding, int64_t* replaced);

bool is_gzip(std::string_view bytes);
// The decompressed bytes of a gzip file (concatenated members too), at most
// kMaxTextBytes; throws ldqa::Error on corrupt data.
std::string gunzip(std::string_view bytes, bool* truncated);

// Squeezes extracted text: trailing spaces dropped, at most one blank line.
std::string tidy_paragraphs(const std::string& in);

ExtractedText read_html(std::string_view bytes);
// "iden-\ntifier" -> "identifier" (a line-break hyphen before a lower-case letter).
std::string join_hyphenated_lines(const std::string& text);
ExtractedText read_pdf(std::string_view bytes);

}  // namespace ldqa::data::detail
