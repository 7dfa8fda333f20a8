// UTF-8 positions: the one place that knows what a continuation byte is. Byte offsets
// in ldqa (passages, answers, previews) must fall on character boundaries; these move
// an offset to one, count code points, and cut text without splitting a character.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ldqa::utf8 {

inline bool is_continuation(char byte) { return (static_cast<unsigned char>(byte) & 0xC0) == 0x80; }

// The nearest character boundary at or before `at` (at most text.size()).
inline std::size_t boundary_back(std::string_view text, std::size_t at) {
  if (at >= text.size()) return text.size();
  while (at > 0 && is_continuation(text[at])) --at;
  return at;
}

// The nearest character boundary at or after `at` (at most text.size()).
inline std::size_t boundary_forward(std::string_view text, std::size_t at) {
  while (at < text.size() && is_continuation(text[at])) ++at;
  return at < text.size() ? at : text.size();
}

// The length of the well-formed UTF-8 sequence starting at text[at] (1 to 4), or 0 for
// an ill-formed one: a stray continuation byte, a truncated sequence, an overlong
// encoding, a surrogate, or a value beyond U+10FFFF.
inline std::size_t sequence_length(std::string_view text, std::size_t at) {
  const auto c = static_cast<unsigned char>(text[at]);
  if (c < 0x80) return 1;
  const std::size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (len == 0 || at + len > text.size()) return 0;
  uint32_t cp = c & (len == 2 ? 0x1Fu : len == 3 ? 0x0Fu : 0x07u);
  for (std::size_t k = 1; k < len; ++k) {
    if (!is_continuation(text[at + k])) return 0;
    cp = (cp << 6) | (static_cast<unsigned char>(text[at + k]) & 0x3Fu);
  }
  if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return len;
}

// Appends the UTF-8 encoding of a code point (at most U+10FFFF; surrogates are the
// caller's to refuse).
inline void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Code points that start in the first `bytes` bytes of text.
inline int64_t code_points(std::string_view text, std::size_t bytes) {
  int64_t count = 0;
  for (std::size_t i = 0; i < bytes && i < text.size(); ++i)
    if (!is_continuation(text[i])) ++count;
  return count;
}

// At most `bytes` bytes of text, cut at a character boundary.
inline std::string_view prefix(std::string_view text, std::size_t bytes) {
  return text.substr(0, boundary_back(text, bytes));
}

}  // namespace ldqa::utf8
