#include "app/progress_bar.hpp"

#include "app/output.hpp"
#include "util/utf8.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace ldqa::cli {

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

ProgressBar::ProgressBar(std::FILE* out) : out_(out), start_(now()) {}

void ProgressBar::update(const IndexProgress& p) {
  const double t = now();
  if (t - last_draw_ < 0.1 && p.files_done < p.files_total) return;
  last_draw_ = t;
  int width = 100;
  struct winsize ws {};
  if (ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
  const double elapsed = std::max(1e-6, t - start_);
  const double mbps = static_cast<double>(p.bytes_done) / 1e6 / elapsed;
  const double fraction =
      p.bytes_total > 0
          ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total)
          : (p.files_total > 0 ? static_cast<double>(p.files_done) / static_cast<double>(p.files_total) : 1.0);
  // An estimate from the first instants (one small file done in a millisecond) says
  // nothing: none until a second has passed and 1% is done.
  const bool estimate = elapsed >= 1.0 && fraction >= 0.01;
  const int eta = estimate ? static_cast<int>(std::min(elapsed * (1 - fraction) / fraction, 359999.0)) : 0;
  constexpr int kBar = 20;
  const int filled = static_cast<int>(fraction * kBar);
  char eta_text[32] = "--:--";
  if (estimate) std::snprintf(eta_text, sizeof eta_text, "%d:%02d", eta / 60, eta % 60);
  char head[160];
  std::snprintf(head, sizeof head, "[%.*s%.*s] %lld/%lld files %6.1f MB/s ETA %s ", filled, "####################",
                kBar - filled, "....................", static_cast<long long>(p.files_done),
                static_cast<long long>(p.files_total), mbps, eta_text);
  std::string line = head;
  const int room = width - 1 - static_cast<int>(line.size());
  if (room > 5) {
    std::string cur = terminal_text(p.current);  // a file name may hold escape sequences
    if (static_cast<int>(cur.size()) > room)
      cur = "..." + cur.substr(utf8::boundary_forward(cur, cur.size() - static_cast<std::size_t>(room - 3)));
    line += cur;
  }
  std::fprintf(out_, "\r\033[K%s", line.c_str());
  std::fflush(out_);
}

void ProgressBar::finish() {
  std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
}

}  // namespace ldqa::cli
