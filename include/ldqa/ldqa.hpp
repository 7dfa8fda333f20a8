// ldqa — the embeddable library: an Engine that keeps an index of documents (SQLite,
// see data/) and answers questions about them with the reader model (see model/),
// every answer with its source: file, character offsets, page, surrounding text.
//
//   ldqa::Engine engine = ldqa::Engine::open({.db = "index.db"});
//   engine.index({"docs/"});
//   for (const auto& a : engine.ask("When was the lighthouse built?").answers)
//     std::cout << a.text << "  " << a.source.path << ":" << a.source.char_start << "\n";
//
// Errors: every function throws ldqa::Error (ldqa/error.hpp) whose message names the
// failing value (a path, a file of the model, a flag). Nothing here exits or prints.
// Thread-safety: an Engine may be shared by threads; its calls are serialised inside
// (one SQLite connection, one set of GPU workspaces). The model is loaded on the first
// call that needs it, so opening an Engine is fast.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ldqa/device.hpp"
#include "ldqa/error.hpp"

namespace ldqa {

struct EngineOptions {
  std::filesystem::path db;           // the index database; its folder must exist (or be creatable)
  std::filesystem::path model;        // empty: the bundled model (see bundled_model_dir)
  Device device = Device::automatic;  // ldqa/device.hpp; parse_device("cuda") from a flag
  int threads = 0;  // indexing workers and the CPU reader's threads; 0: all cores (indexing: all but one)
  // Engine::ask_many and the evaluation spread questions over these (parse_devices: one
  // reader per entry, questions dealt as readers free up); empty: one, on `device`.
  std::vector<DeviceId> devices;
};

// The bundled model: $LDQA_MODEL if set, else the installed copy beside the library
// (<prefix>/share/ldqa/models/ldqa-base), else the source tree's models/ldqa-base.
// Throws with every place it looked when none holds a config.json.
std::filesystem::path bundled_model_dir();

struct IndexRequest {
  std::vector<std::filesystem::path> paths;
  std::vector<std::string> include, exclude;  // globs
  // The index reflects the folders: documents under the paths whose files are gone (or
  // that were reached through a link that is no longer followed) are dropped; false
  // keeps them.
  bool prune = true;
  bool follow_links = false;  // follow symbolic links that lead outside the paths
  int passage_words = 200;
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. from a signal handler) to stop cleanly
};

struct IndexProgress {
  int64_t files_done = 0, files_total = 0, bytes_done = 0, bytes_total = 0;
  std::string current;
};

struct IndexReport {
  int64_t indexed = 0, unchanged = 0, removed = 0, bytes_read = 0;
  double seconds = 0;
  bool interrupted = false;
  std::vector<std::pair<std::string, std::string>> skipped;  // path, reason
  std::vector<std::pair<std::string, std::string>> failed;   // path, error
  std::vector<std::pair<std::string, std::string>> notes;    // path, how its reader coped (indexed anyway)
  std::string json;                                          // the same, as one JSON object
};

struct Source {
  std::string path, title;
  int64_t char_start = 0, char_end = 0;  // code points into the document's extracted text
  int64_t byte_start = 0, byte_end = 0;  // UTF-8 bytes into the same text
  int page = 0;                          // PDFs: 1-based page of the answer; 0 otherwise
};

struct Answer {
  std::string text;
  double score = 0;  // the reader's start + end logit; comparable across documents
  Source source;
  std::string before, after;  // surrounding text (about a sentence or two each side)
};

struct AskOptions {
  int answers = 3;            // at most this many, best first
  int passages = 12;          // retrieval hits handed to context building
  int context_tokens = 1536;  // per window: a hit passage and its neighbours
  // Context tokens read per question in all: windows open best hit first across
  // documents until this many are taken, so the reader's time per question is bounded
  // however many passages match. 0: no limit; -1 (default): kCpuReadTokens when the
  // reader runs on the CPU, no limit on CUDA (where reading is cheap).
  int read_tokens = -1;
  static constexpr int kCpuReadTokens = 4096;
  // Below: no answer. Unset: the model's calibration.json (an error when it has none);
  // -infinity shows every answer.
  std::optional<double> min_score;
};

struct AskResult {
  std::vector<Answer> answers;  // empty: no answer found (nothing retrieved, or every score too low)
  double best_score = 0;        // even when the answer was withheld
  double threshold = 0;         // the one applied
  double retrieval_ms = 0, reader_ms = 0;
  int reader_tokens = 0;  // context tokens handed to the reader (every window of every document)
};

struct BatchAnswer {
  bool asked = false;  // false: not reached before a cancel
  AskResult result;
  std::string error;  // a question that could not be asked (an empty one, ...): why
};

struct DocumentInfo {
  std::string path, format, title, status, error;
  int64_t size = 0, passages = 0;
};

struct IndexStats {
  int64_t documents = 0, failed = 0, passages = 0, text_bytes = 0, file_bytes = 0;
  int schema_version = 0;
  std::string integrity, last_run_status;
};

struct Passage {
  std::string path, text;
  double score = 0;
  int64_t char_start = 0, char_end = 0;
  int page = 0;
};

class Engine {
 public:
  static Engine open(const EngineOptions& options);
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;
  ~Engine();

  IndexReport index(const IndexRequest& request, const std::function<void(const IndexProgress&)>& progress = {});
  AskResult ask(std::string_view question, const AskOptions& options = {});
  // Many questions over EngineOptions::devices (one reader per device, each question
  // given to the next device that is free); results in the questions' order, the same
  // answers as ask() one by one. progress(done, total) is called from the workers, one
  // at a time. Setting *cancel stops the dealing: the questions not asked say so.
  std::vector<BatchAnswer> ask_many(const std::vector<std::string>& questions, const AskOptions& options = {},
                                    const std::function<void(int, int)>& progress = {},
                                    const std::atomic<bool>* cancel = nullptr);
  std::vector<Passage> search(std::string_view question, int k);
  std::vector<DocumentInfo> documents();
  IndexStats stats();        // full: sizes and an integrity check (reads the whole index)
  int64_t document_count();  // cheap: indexed documents
  bool remove(const std::filesystem::path& path);

  // The device questions run on ("cpu" or "cuda"), loading the model if needed, and why
  // it differs from the one asked for (empty when it does not).
  std::string device();
  std::string device_note();
  // The model's calibration.json threshold, none when it has no such file (then ask()
  // needs AskOptions::min_score); loads the model if needed.
  std::optional<double> calibrated_threshold();

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Evaluation and calibration on SQuAD-format files: ldqa/eval.hpp.

}  // namespace ldqa
