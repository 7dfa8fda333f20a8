// A JSON string literal for any bytes: quotes, backslashes and control characters
// escaped (UTF-8 passes through). Shared by every --json output and stored summary.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace ldqa {

inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + '"';
}

}  // namespace ldqa
