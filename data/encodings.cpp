// Byte-level decoding shared by the readers: UTF-8 normalisation, UTF-16/32 with a
// byte-order mark, gzip.
#include <zlib.h>

#include <cstring>

#include "data/readers_internal.hpp"
#include "ldqa/error.hpp"
#include "util/utf8.hpp"

namespace ldqa::data {

namespace detail {

std::string_view bom_encoding(std::string_view b) {
  // UTF-32LE's BOM starts like UTF-16LE's: test the longer one first.
  if (b.substr(0, 4) == std::string_view("\xFF\xFE\x00\x00", 4)) return "utf-32le";
  if (b.substr(0, 4) == std::string_view("\x00\x00\xFE\xFF", 4)) return "utf-32be";
  if (b.substr(0, 3) == "\xEF\xBB\xBF") return "utf-8";
  if (b.substr(0, 2) == "\xFF\xFE") return "utf-16le";
  if (b.substr(0, 2) == "\xFE\xFF") return "utf-16be";
  return "";
}

std::string utf16_32_to_utf8(std::string_view b, std::string_view encoding, int64_t* replaced) {
  const bool wide = encoding.substr(0, 6) == "utf-32";
  const bool little = encoding.substr(encoding.size() - 2) == "le";
  const std::size_t unit = wide ? 4 : 2;
  auto read = [&](std::size_t at) -> uint32_t {
    uint32_t v = 0;
    for (std::size_t k = 0; k < unit; ++k) {
      const auto byte = static_cast<unsigned char>(b[at + (little ? unit - 1 - k : k)]);
      v = (v << 8) | byte;
    }
    return v;
  };
  std::string out;
  out.reserve(b.size());
  int64_t bad = 0;
  std::size_t at = unit;  // past the BOM
  for (; at + unit <= b.size(); at += unit) {
    uint32_t cp = read(at);
    if (!wide && cp >= 0xD800 && cp <= 0xDBFF && at + 2 * unit <= b.size()) {
      const uint32_t low = read(at + unit);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        at += unit;
      }
    }
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      out.append(kReplacement);
      ++bad;
      continue;
    }
    utf8::append(out, cp);
  }
  if (at < b.size()) {  // an odd trailing byte
    out.append(kReplacement);
    ++bad;
  }
  if (replaced) *replaced += bad;
  return out;
}

bool is_gzip(std::string_view bytes) { return bytes.size() >= 2 && bytes[0] == '\x1F' && bytes[1] == '\x8B'; }

std::string gunzip(std::string_view bytes, bool* truncated) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) fail("gzip: cannot initialise zlib");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(std::min<std::size_t>(bytes.size(), UINT32_MAX));
  std::string out;
  char buffer[1 << 16];
  *truncated = false;
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    const int rc = inflate(&z, Z_NO_FLUSH);
    out.append(buffer, sizeof buffer - z.avail_out);
    if (out.size() > kMaxTextBytes) {
      out.resize(kMaxTextBytes);
      *truncated = true;
      break;
    }
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0) break;
      inflateReset(&z);  // the next member of a concatenated file
      continue;
    }
    if (rc != Z_OK) {
      const std::string why = z.msg ? z.msg : "corrupt data";
      inflateEnd(&z);
      fail("corrupt gzip data (", why, ")");
    }
    if (z.avail_in == 0 && z.avail_out != 0) {
      inflateEnd(&z);
      fail("truncated gzip data");
    }
  }
  inflateEnd(&z);
  return out;
}

std::string tidy_paragraphs(const std::string& in) {
  std::string out;
  out.reserve(in.size());
  int newlines = 0;
  for (char c : in) {
    if (c == '\n') {
      while (!out.empty() && out.back() == ' ') out.pop_back();
      ++newlines;
      continue;
    }
    if (newlines > 0) {
      if (!out.empty()) out.append(newlines >= 2 ? "\n\n" : "\n");
      newlines = 0;
      if (c == ' ') continue;  // no leading space on a line
    }
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace detail

std::string normalise_utf8(std::string_view in, int64_t* replaced) {
  std::string out;
  out.reserve(in.size());
  int64_t bad = 0;
  std::size_t i = 0;
  if (in.substr(0, 3) == "\xEF\xBB\xBF") i = 3;
  const std::size_t n = in.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      if (c == 0) {
        out.append(detail::kReplacement);
        ++bad;
      } else if (c == '\r') {
        out.push_back('\n');
        if (i + 1 < n && in[i + 1] == '\n') ++i;
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    const std::size_t len = utf8::sequence_length(in, i);
    if (len == 0) {
      out.append(detail::kReplacement);
      ++bad;
      ++i;
      continue;
    }
    out.append(in.substr(i, len));
    i += len;
  }
  if (replaced) *replaced += bad;
  return out;
}

}  // namespace ldqa::data
