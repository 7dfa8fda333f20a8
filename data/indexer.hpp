// Indexing: a folder (or files) brought up to date in the store. Discovery (globs,
// hidden files, symbolic link loops), change detection (size + mtime, then SHA-256),
// parallel read/parse/split on reader threads, one writer. A bad file never throws out
// of index_paths: it is reported in the summary.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "data/store.hpp"

namespace ldqa::data {

struct IndexOptions {
  std::vector<std::string> include;  // globs; empty: every supported file
  std::vector<std::string> exclude;  // globs (a glob without '/' matches the file or directory name)
  // An indexed folder reflects the folder: documents under the roots whose files are
  // gone (or are now reached only through a link or mount that is not followed) are
  // removed. false keeps them.
  bool prune = true;
  bool follow_links_outside = false;  // follow symbolic links that lead outside the roots
  int threads = 0;                    // readers/parsers; 0: all cores but one (the writer's)
  PassageOptions passages;
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. on Ctrl-C): stop after the current file
};

struct IndexProgress {
  int64_t files_done = 0, files_total = 0;
  int64_t bytes_done = 0, bytes_total = 0;
  std::string current;
};

struct IndexSummary {
  int64_t indexed = 0, unchanged = 0, removed = 0;
  int64_t bytes_read = 0;
  double seconds = 0;
  bool interrupted = false;  // cancelled: what was written is complete, the rest is not started
  std::vector<std::pair<std::string, std::string>> skipped;  // path, reason
  std::vector<std::pair<std::string, std::string>> failed;   // path, error
  std::vector<std::pair<std::string, std::string>> notes;    // path, how its reader coped (indexed)
  std::string to_json() const;
};

// Walks the roots (files or folders; recursive; symbolic links followed inside the
// roots, with loop detection; pseudo-filesystems never entered) and brings the store up
// to date. Refuses a store that fails its integrity check. `progress` is called from
// the calling thread.
IndexSummary index_paths(Store& store, const std::vector<std::filesystem::path>& roots, const IndexOptions& options,
                         const std::function<void(const IndexProgress&)>& progress = {});

}  // namespace ldqa::data
