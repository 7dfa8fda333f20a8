// The command's one-line terminal progress bar for `ldqa index` (files, MB/s, ETA,
// current file), fed by Engine::index's progress callback.
#pragma once

#include <cstdio>

#include "ldqa/ldqa.hpp"

namespace ldqa::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::FILE* out);
  void update(const IndexProgress& p);
  void finish();

 private:
  std::FILE* out_;
  double start_;
  double last_draw_ = -1;
};

}  // namespace ldqa::cli
