// A line on stderr while the reader works (seconds on a CPU), so that a terminal user
// sees something happen: drawn only after a short delay, erased when done.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace ldqa::cli {

class Spinner {
 public:
  Spinner(bool enabled, std::string label) : label_(std::move(label)) {
    if (enabled) thread_ = std::thread([this] { run(); });
  }
  ~Spinner() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  Spinner(const Spinner&) = delete;
  Spinner& operator=(const Spinner&) = delete;

 private:
  void run() {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    static const char* frames[] = {"|", "/", "-", "\\"};
    bool drawn = false;
    for (int i = 0; !done_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const double s = std::chrono::duration<double>(clock::now() - t0).count();
      if (s < 0.4 || done_) continue;
      std::fprintf(stderr, "\r\033[K%s %s (%.1f s)", frames[i % 4], label_.c_str(), s);
      std::fflush(stderr);
      drawn = true;
    }
    if (drawn) {
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
    }
  }

  std::string label_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace ldqa::cli
