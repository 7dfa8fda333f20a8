// The library facade: the store (data/), retrieval into contexts, the reader (model/)
// over those contexts, and answers mapped back to their documents.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "data/indexer.hpp"
#include "data/retrieval.hpp"
#include "data/store.hpp"
#include "ldqa/ldqa.hpp"
#include "lib/answering.hpp"
#include "model/model.hpp"
#include "util/utf8.hpp"

namespace ldqa {

namespace {

constexpr const char* kBundledModel = "ldqa-base";

}  // namespace

std::filesystem::path bundled_model_dir() {
  std::vector<std::filesystem::path> tried;
  auto ok = [&](const std::filesystem::path& p) {
    tried.push_back(p);
    std::error_code ec;
    return std::filesystem::exists(p / "config.json", ec);
  };
  if (const char* env = std::getenv("LDQA_MODEL"); env && *env) {
    if (ok(env)) return env;
    fail("LDQA_MODEL=", env, " holds no config.json");
  }
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&bundled_model_dir), &info) && info.dli_fname) {
    const auto lib_dir = std::filesystem::path(info.dli_fname).parent_path();
    const auto installed = lib_dir.parent_path() / "share/ldqa/models" / kBundledModel;
    if (ok(installed)) return installed;
  }
#ifdef LDQA_SOURCE_MODELS
  if (const auto source = std::filesystem::path(LDQA_SOURCE_MODELS) / kBundledModel; ok(source)) return source;
#endif
  std::string where;
  for (const auto& p : tried) where += (where.empty() ? "" : ", ") + p.string();
  fail("the bundled model was not found (looked in ", where, "); pass --model DIR or set LDQA_MODEL");
}

struct Engine::Impl {
  EngineOptions options;
  std::mutex mutex;
  std::optional<data::Store> store;
  std::optional<data::Retriever> retriever;
  std::optional<model::Reader> reader;
  model::Device device = model::Device::cpu;
  std::string device_note;
  // The model's calibration.json (`ldqa calibrate`); unset when the model has none.
  std::optional<double> threshold;
  std::filesystem::path model_dir;

  // Commands that only read open the index read-only (it may sit on read-only media)
  // and need it to exist; indexing and removal open it for writing, creating it.
  enum class Access { read, write };
  data::Store& open_store(Access access = Access::read) {
    if (store && access == Access::write && store_read_only) {
      retriever.reset();
      store.reset();
    }
    if (!store) {
      const bool read_only = access == Access::read;
      if (read_only && !std::filesystem::exists(options.db))
        fail("no index at ", options.db.string(), " (run 'ldqa index PATH...' first, or pass --db)");
      store.emplace(data::Store::open(options.db, read_only));
      store_read_only = read_only;
    }
    return *store;
  }
  bool store_read_only = false;

  // The threshold an ask applies: the caller's, or the model's calibration (a model
  // without one needs the caller's).
  double threshold_for(const AskOptions& ask) const {
    if (ask.min_score) return *ask.min_score;
    if (!threshold)
      fail("the model at ", model_dir.string(),
           " has no calibration.json, so an answer cannot be told from a guess: make one with 'ldqa calibrate "
           "FILE.json -o ",
           (model_dir / "calibration.json").string(),
           "', or choose a threshold with --min-score (-inf shows every answer)");
    return *threshold;
  }

  data::Retriever& open_retriever() {
    if (!retriever) retriever.emplace(open_store());
    return *retriever;
  }

  model::Reader& load_reader() {
    if (reader) return *reader;
    const auto dir = model_dir = options.model.empty() ? bundled_model_dir() : options.model;
    reader.emplace(model::Reader::load(dir));
    device = resolve_device(options.device, &device_note);
    if (options.threads > 0) model::set_cpu_threads(options.threads);
    std::ifstream in(dir / "calibration.json");
    if (in) {
      try {
        threshold = nlohmann::json::parse(in).at("no_answer_threshold").get<double>();
      } catch (const std::exception& e) {
        throw Error(
            (dir / "calibration.json").string() +
                " is not a calibration (no number \"no_answer_threshold\"): make it again with 'ldqa calibrate'",
            e.what());
      }
    }
    return *reader;
  }
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
Engine::~Engine() = default;

Engine Engine::open(const EngineOptions& options) {
  if (options.db.empty()) fail("Engine::open: no database path");
  if (!options.model.empty() && !std::filesystem::exists(options.model / "config.json"))
    fail("model config not found: ", (options.model / "config.json").string());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  return Engine(std::move(impl));
}

IndexReport Engine::index(const IndexRequest& request, const std::function<void(const IndexProgress&)>& progress) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  data::IndexOptions o;
  o.include = request.include;
  o.exclude = request.exclude;
  o.prune = request.prune;
  o.follow_links_outside = request.follow_links;
  o.threads = impl_->options.threads;
  o.passages.target_words = request.passage_words;
  o.passages.max_words = request.passage_words * 7 / 4;
  o.cancel = request.cancel;
  for (const auto& p : request.paths)
    if (!std::filesystem::exists(p)) fail("no such file or folder: ", p.string());
  const auto dir = impl_->options.db.parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("cannot create the index folder ", dir.string(), ": ", ec.message());
  }
  const auto s =
      data::index_paths(impl_->open_store(Impl::Access::write), request.paths, o, [&](const data::IndexProgress& p) {
        if (progress) progress(IndexProgress{p.files_done, p.files_total, p.bytes_done, p.bytes_total, p.current});
      });
  return IndexReport{.indexed = s.indexed,
                     .unchanged = s.unchanged,
                     .removed = s.removed,
                     .bytes_read = s.bytes_read,
                     .seconds = s.seconds,
                     .interrupted = s.interrupted,
                     .skipped = s.skipped,
                     .failed = s.failed,
                     .notes = s.notes,
                     .json = s.to_json()};
}

AskResult Engine::ask(std::string_view question, const AskOptions& options) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  detail::check_question(question, options);
  auto& reader = impl_->load_reader();
  const double threshold = impl_->threshold_for(options);
  return detail::answer_question({impl_->open_store(), impl_->open_retriever(), reader, impl_->device, threshold},
                                 question, options);
}

std::vector<BatchAnswer> Engine::ask_many(const std::vector<std::string>& questions, const AskOptions& options,
                                          const std::function<void(int, int)>& progress,
                                          const std::atomic<bool>* cancel) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const model::Reader& shared = impl_->load_reader();  // CPU workers share it; each GPU gets its own
  const double threshold = impl_->threshold_for(options);
  impl_->open_store();  // a missing index fails here, once
  std::vector<DeviceId> devices = impl_->options.devices;
  if (devices.empty()) devices.push_back({impl_->device, 0});
  std::vector<BatchAnswer> out(questions.size());
  std::mutex progress_mutex;
  int done = 0;
  struct Worker {
    std::unique_ptr<data::Store> store;
    std::unique_ptr<data::Retriever> retriever;
    std::unique_ptr<detail::DeviceReader> reader;
    Device device = Device::cpu;
  };
  detail::run_on_devices<Worker>(
      devices, questions.size(),
      [&](const DeviceId& id) {
        Worker w;
        w.store = std::make_unique<data::Store>(data::Store::open(impl_->options.db, true));
        w.retriever = std::make_unique<data::Retriever>(*w.store);
        w.device = id.device;
        w.reader = std::make_unique<detail::DeviceReader>(id, shared, impl_->model_dir);
        return w;
      },
      [&](Worker& w, std::size_t i) {
        try {
          out[i].result = detail::answer_question({*w.store, *w.retriever, *w.reader->reader, w.device, threshold},
                                                  questions[i], options);
        } catch (const Error& e) {
          out[i].error = e.what();
        }
        out[i].asked = true;
        if (progress) {
          std::lock_guard<std::mutex> guard(progress_mutex);
          progress(++done, static_cast<int>(questions.size()));
        }
      },
      cancel);
  return out;
}

std::vector<Passage> Engine::search(std::string_view question, int k) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto& store = impl_->open_store();
  std::vector<Passage> out;
  for (const auto& h : impl_->open_retriever().search(question, k))
    out.push_back(Passage{h.path, store.text(h.document_id, h.passage.byte_start, h.passage.byte_end), h.score,
                          h.passage.char_start, h.passage.char_end, h.passage.page});
  return out;
}

std::vector<DocumentInfo> Engine::documents() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<DocumentInfo> out;
  for (const auto& d : impl_->open_store().documents())
    out.push_back(DocumentInfo{d.path, d.format, d.title, d.status, d.error, d.size, d.passages});
  return out;
}

IndexStats Engine::stats() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto s = impl_->open_store().stats();
  return IndexStats{s.documents,  s.failed,         s.passages,  s.text_bytes,
                    s.file_bytes, s.schema_version, s.integrity, s.last_run_status};
}

int64_t Engine::document_count() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->open_store().document_count();
}

bool Engine::remove(const std::filesystem::path& path) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->open_store(Impl::Access::write).remove(std::filesystem::absolute(path).lexically_normal().string());
}

std::string Engine::device() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->load_reader();
  return device_name(impl_->device);
}

std::string Engine::device_note() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->load_reader();
  return impl_->device_note;
}

std::optional<double> Engine::calibrated_threshold() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->load_reader();
  return impl_->threshold;
}

}  // namespace ldqa
