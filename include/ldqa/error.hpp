// ldqa's one error style at every library boundary: functions throw ldqa::Error,
// whose message names the failing value (a size, a path, a tensor). Nothing in the
// library calls exit() or prints; callers decide what to show.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ldqa {

// what(): what is wrong and what to do, for the user; detail(): the underlying cause
// in its own words (SQLite's message, a JSON parser's), for -v and bug reports.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  Error(const std::string& message, std::string detail) : std::runtime_error(message), detail_(std::move(detail)) {}
  const std::string& detail() const noexcept { return detail_; }

 private:
  std::string detail_;
};

namespace detail {
template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

// Throws ldqa::Error with the parts streamed together, e.g.
// fail("head_dim ", d, " is not one of 32, 64, 128").
template <typename... Parts>
[[noreturn]] void fail(Parts&&... parts) {
  throw Error(detail::concat(std::forward<Parts>(parts)...));
}

}  // namespace ldqa
