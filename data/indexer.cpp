// Folder indexing: discovery (globs, symbolic links kept inside the roots, loops,
// pseudo-filesystems, unreadable entries), change detection (size + mtime, then
// SHA-256; failed files are tried again), parallel read/parse/split, one writer, and
// the documents of files that are gone removed.
#include <fnmatch.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <unordered_set>

#include "data/fts_tokenizer.hpp"
#include "data/indexer.hpp"
#include "ldqa/error.hpp"

namespace ldqa::data {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxFileBytes = int64_t{512} << 20;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) != 1) fail("SHA-256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

bool glob_match(const std::string& pattern, const std::string& name, const std::string& relative) {
  const bool path_pattern = pattern.find('/') != std::string::npos;
  return fnmatch(pattern.c_str(), path_pattern ? relative.c_str() : name.c_str(), 0) == 0;
}

bool any_match(const std::vector<std::string>& globs, const std::string& name, const std::string& relative) {
  for (const auto& g : globs)
    if (glob_match(g, name, relative)) return true;
  return false;
}

struct Candidate {
  std::string path;  // absolute, lexically normal
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

// Filesystems that hold no documents, only the kernel's view of itself: never entered
// (`ldqa index /` must not walk /proc or /sys).
const char* pseudo_filesystem(const fs::path& dir) {
  struct statfs sf {};
  if (::statfs(dir.c_str(), &sf) != 0) return nullptr;
  switch (static_cast<unsigned long>(sf.f_type)) {
    case 0x9fa0:
      return "proc";
    case 0x62656572:
      return "sysfs";
    case 0x1cd1:
      return "devpts";
    case 0x27e0eb:
      return "cgroup";
    case 0x63677270:
      return "cgroup2";
    case 0x64626720:
      return "debugfs";
    case 0x74726163:
      return "tracefs";
    case 0x73636673:
      return "securityfs";
    case 0x6165676c:
      return "pstore";
    case 0xcafe4a11:
      return "bpf";
    case 0x62656570:
      return "configfs";
    case 0x65735543:
      return "fusectl";
    case 0x19800202:
      return "mqueue";
    case 0x958458f6:
      return "hugetlbfs";
    case 0x42494e4d:
      return "binfmt_misc";
    case 0x6e736673:
      return "nsfs";
    case 0xde5e81e4:
      return "efivarfs";
    case 0xf97cff8c:
      return "selinuxfs";
    default:
      return nullptr;
  }
}

bool under(const std::string& path, const std::string& root) {
  return path == root || root == "/" || path.rfind(root.back() == '/' ? root : root + "/", 0) == 0;
}

struct Walker {
  const IndexOptions& options;
  std::vector<Candidate>& files;
  IndexSummary& summary;
  std::vector<std::string> canonical_roots;  // where links may lead
  std::set<std::pair<dev_t, ino_t>> visited_dirs;
  std::vector<std::string> refused;  // links and mounts not followed: what was indexed through them goes

  bool cancelled() const { return options.cancel != nullptr && options.cancel->load(); }

  void add_file(const fs::path& path, const struct stat& st) {
    files.push_back({path.string(), static_cast<int64_t>(st.st_size),
                     static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
  }

  // A symbolic link is followed only to a place inside the indexed roots (unless
  // options say otherwise): a link to /etc must not make /etc/passwd searchable.
  bool link_allowed(const fs::path& path) {
    std::error_code ec;
    const fs::path target = fs::canonical(path, ec);
    if (ec) return true;  // broken: stat reports it below
    if (options.follow_links_outside) return true;
    const std::string t = target.string();
    for (const auto& root : canonical_roots)
      if (under(t, root)) return true;
    summary.skipped.emplace_back(
        path.string(), "symbolic link to " + t + ", outside the indexed folders (--follow-links to index it)");
    refused.push_back(path.string());
    return false;
  }

  void visit(const fs::path& path, const std::string& relative, bool is_root, dev_t parent_dev) {
    if (cancelled()) return;
    struct stat lst {};
    if (!is_root && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode) && !link_allowed(path)) return;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {  // follows symlinks
      summary.skipped.emplace_back(path.string(), errno == ENOENT
                                                      ? "broken symbolic link or vanished"
                                                      : std::string("cannot stat: ") + std::strerror(errno));
      return;
    }
    const std::string name = path.filename().string();
    if (!is_root) {
      if (name.size() > 1 && name[0] == '.') return;  // hidden files and folders (.git, ...)
      if (any_match(options.exclude, name, relative)) return;
    }
    if (S_ISDIR(st.st_mode)) {
      if (is_root || st.st_dev != parent_dev) {  // a mount point: what is mounted here?
        if (const char* pseudo = pseudo_filesystem(path)) {
          summary.skipped.emplace_back(path.string(), std::string("pseudo-filesystem (") + pseudo + "), not entered");
          refused.push_back(path.string());
          return;
        }
      }
      if (!visited_dirs.insert({st.st_dev, st.st_ino}).second) {
        summary.skipped.emplace_back(path.string(), "symbolic link loop (folder already visited)");
        return;
      }
      std::error_code ec;
      fs::directory_iterator it(path, fs::directory_options::none, ec);
      if (ec) {
        summary.skipped.emplace_back(path.string(), "cannot read folder: " + ec.message());
        return;
      }
      std::vector<fs::path> children;
      for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) {
          summary.skipped.emplace_back(path.string(), "cannot list folder: " + ec.message());
          break;
        }
        children.push_back(it->path());
      }
      std::sort(children.begin(), children.end());
      for (const auto& child : children)
        visit(child, relative.empty() ? child.filename().string() : relative + "/" + child.filename().string(), false,
              st.st_dev);
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      summary.skipped.emplace_back(path.string(), "not a regular file");
      return;
    }
    if (!options.include.empty() && !any_match(options.include, name, relative.empty() ? name : relative)) return;
    add_file(path, st);
  }
};

// What a reader thread hands to the writer.
struct Result {
  enum Kind { kIndex, kTouch, kFailed, kSkipped } kind = kFailed;
  Candidate file;
  std::string hash;
  std::string message;
  ExtractedText text;
  std::vector<Passage> passages;
};

Result process(const Candidate& file, const std::optional<DocumentRecord>& known, const PassageOptions& options) {
  Result r;
  r.file = file;
  if (file.size > kMaxFileBytes) {
    r.kind = Result::kSkipped;
    r.message = "larger than 512 MiB";
    return r;
  }
  std::ifstream in(file.path, std::ios::binary);
  if (!in) {
    r.message = std::string("cannot read: ") + std::strerror(errno);
    return r;
  }
  // The first 8 KiB decide whether the rest is worth reading (a video named .dat is not).
  std::string bytes(static_cast<std::size_t>(std::min<int64_t>(file.size, 8192)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (!has_supported_extension(file.path) && !may_hold_text(file.path, bytes)) {
    r.kind = Result::kSkipped;
    const std::string ext = fs::path(file.path).extension().string();
    r.message = ext.empty() ? "binary content" : "binary content or unsupported file type " + ext;
    return r;
  }
  if (file.size > static_cast<int64_t>(bytes.size())) {
    const std::size_t head = bytes.size();
    bytes.resize(static_cast<std::size_t>(file.size));
    in.read(bytes.data() + head, static_cast<std::streamsize>(bytes.size() - head));
    bytes.resize(head + static_cast<std::size_t>(in.gcount()));  // the file may have shrunk since stat
  }
  if (in.bad()) {
    r.message = "read error";
    return r;
  }
  r.hash = sha256_hex(bytes);
  if (known && known->hash == r.hash && known->status == "indexed") {
    r.kind = Result::kTouch;
    return r;
  }
  try {
    auto extracted = extract_text(file.path, bytes);
    if (auto* skip = std::get_if<SkipReason>(&extracted)) {
      r.kind = Result::kSkipped;
      r.message = skip->reason;
      return r;
    }
    r.text = std::move(std::get<ExtractedText>(extracted));
    r.message = r.text.note;
    r.passages = split_passages(r.text.text, r.text.pages, options);
    // Tokenized here, on this reader thread, so that the one writer only stores.
    thread_local const IndexTokenizer tokenizer;
    for (Passage& p : r.passages) p.index_tokens = tokenizer.tokenize(passage_text(r.text.text, p));
    r.kind = Result::kIndex;
  } catch (const std::exception& e) {
    r.kind = Result::kFailed;
    r.message = e.what();
  }
  return r;
}

}  // namespace

std::string IndexSummary::to_json() const {
  using Json = nlohmann::ordered_json;
  Json skipped_json = Json::array(), failed_json = Json::array();
  for (const auto& [path, reason] : skipped) skipped_json.push_back(Json{{"path", path}, {"reason", reason}});
  for (const auto& [path, error] : failed) failed_json.push_back(Json{{"path", path}, {"error", error}});
  Json notes_json = Json::array();
  for (const auto& [path, note] : notes) notes_json.push_back(Json{{"path", path}, {"note", note}});
  // Paths that are not UTF-8 (a file name is any bytes) become U+FFFD: always valid JSON.
  return Json{{"indexed", indexed},
              {"unchanged", unchanged},
              {"removed", removed},
              {"bytes_read", bytes_read},
              {"seconds", seconds},
              {"skipped", std::move(skipped_json)},
              {"failed", std::move(failed_json)},
              {"notes", std::move(notes_json)}}
      .dump(-1, ' ', false, Json::error_handler_t::replace);
}

IndexSummary index_paths(Store& store, const std::vector<fs::path>& roots, const IndexOptions& options,
                         const std::function<void(const IndexProgress&)>& progress) {
  const double t0 = now();
  IndexSummary summary;
  std::vector<Candidate> files;
  std::vector<std::string> root_paths;
  // A damaged index is not written into: what is wrong would only spread.
  if (const std::string check = store.quick_check(); check != "ok")
    throw Error("the index is damaged (" + check.substr(0, 200) +
                "): move it away and index again into a new one; nothing was written");
  Walker walker{options, files, summary, {}, {}, {}};
  for (const auto& root : roots) {
    std::error_code ec;
    fs::path clean = fs::absolute(root, ec).lexically_normal();
    if (!clean.has_filename() && clean.has_parent_path()) clean = clean.parent_path();  // "docs/" -> "docs"
    root_paths.push_back(clean.string());
    const fs::path canonical = fs::canonical(clean, ec);
    walker.canonical_roots.push_back(ec ? clean.string() : canonical.string());
  }
  for (const auto& root : root_paths) walker.visit(root, "", true, 0);
  // Unchanged files need no reading at all; a file that failed is tried again.
  std::vector<std::pair<Candidate, std::optional<DocumentRecord>>> work;
  IndexProgress prog;
  for (const auto& f : files) {
    auto known = store.find(f.path);
    if (known && known->status == "indexed" && known->size == f.size && known->mtime_ns == f.mtime_ns) {
      ++summary.unchanged;
      continue;
    }
    prog.bytes_total += f.size;
    work.emplace_back(f, std::move(known));
  }
  prog.files_total = static_cast<int64_t>(work.size());
  std::string roots_text;
  for (const auto& r : root_paths) roots_text += (roots_text.empty() ? "" : "\n") + r;
  const int64_t run_id = store.begin_run(roots_text);

  // Readers/parsers; by default one core is left to the writer (SQLite/FTS5 is the bottleneck).
  const int threads =
      std::max(1, options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency()) - 1);
  std::mutex mutex;
  std::condition_variable ready, room;
  std::deque<Result> queue;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  auto cancelled = [&] { return options.cancel != nullptr && options.cancel->load(); };
  int running = threads;
  // Parsed documents waiting for the writer: two per parser, fewer when they are huge
  // (each holds its text and tokens). A deeper queue kept the writer from ever waiting
  // but made runs slower on 2 cores, the parsers then taking CPU from the writer.
  const std::size_t max_queue = static_cast<std::size_t>(threads) * 2;
  constexpr int64_t kMaxQueuedBytes = 64 << 20;
  int64_t queued_bytes = 0;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (std::size_t i; !stop && !cancelled() && (i = next++) < work.size();) {
        Result r = process(work[i].first, work[i].second, options.passages);
        std::unique_lock<std::mutex> lock(mutex);
        room.wait(lock, [&] {
          return (queue.size() < max_queue && queued_bytes < kMaxQueuedBytes) || queue.empty() || stop;
        });
        queued_bytes += r.file.size;
        queue.push_back(std::move(r));
        ready.notify_one();
      }
      std::lock_guard<std::mutex> lock(mutex);
      --running;
      ready.notify_one();
    });
  }
  auto writer_error = std::exception_ptr();
  try {
    store.begin_batch();
    double batch_start = now();
    int batch_size = 0;
    for (;;) {
      if (batch_size > 0 && (batch_size >= 2048 || now() - batch_start > 2.0)) {
        store.commit_batch();
        store.begin_batch();
        batch_start = now();
        batch_size = 0;
      }
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return !queue.empty() || running == 0; });
      if (queue.empty()) break;
      if (cancelled()) {  // drop what is queued; the workers stop on their own
        queue.clear();
        queued_bytes = 0;
        room.notify_all();
        continue;
      }
      Result r = std::move(queue.front());
      queue.pop_front();
      queued_bytes -= r.file.size;
      room.notify_one();
      lock.unlock();
      DocumentRecord rec;
      rec.path = r.file.path;
      rec.size = r.file.size;
      rec.mtime_ns = r.file.mtime_ns;
      rec.hash = r.hash;
      switch (r.kind) {
        case Result::kIndex:
          store.put(rec, r.text, r.passages, run_id);
          ++summary.indexed;
          if (!r.message.empty()) summary.notes.emplace_back(rec.path, r.message);
          break;
        case Result::kTouch:
          store.touch(rec.path, rec.mtime_ns);
          ++summary.unchanged;
          break;
        case Result::kSkipped:
          summary.skipped.emplace_back(rec.path, r.message);
          if (store.find(rec.path)) store.remove(rec.path);  // was a document, is no longer one
          break;
        case Result::kFailed:
          rec.format = "unknown";
          rec.error = r.message;
          if (rec.hash.empty()) rec.hash = "-";
          store.put_failed(rec, run_id);
          summary.failed.emplace_back(rec.path, r.message);
          break;
      }
      ++batch_size;
      ++prog.files_done;
      prog.bytes_done += r.file.size;
      summary.bytes_read += r.file.size;
      prog.current = r.file.path;
      if (progress) progress(prog);
    }
    store.commit_batch();
  } catch (...) {
    writer_error = std::current_exception();
    stop = true;
    room.notify_all();
  }
  for (auto& t : pool) t.join();
  if (writer_error) {
    store.end_run(run_id, "failed", "{}");
    std::rethrow_exception(writer_error);
  }
  summary.interrupted = cancelled();
  if (options.prune && !summary.interrupted) {
    // The documents under the roots whose files are gone, or that were reached through
    // a link or mount this walk refused to follow.
    for (const auto& doc : store.documents()) {
      if (cancelled()) break;
      const bool under_root =
          std::any_of(root_paths.begin(), root_paths.end(), [&](const std::string& r) { return under(doc.path, r); });
      if (!under_root) continue;
      std::error_code ec;
      const bool refused = std::any_of(walker.refused.begin(), walker.refused.end(),
                                       [&](const std::string& r) { return under(doc.path, r); });
      if ((refused || !fs::exists(doc.path, ec)) && store.remove(doc.path)) ++summary.removed;
    }
    summary.interrupted = cancelled();
  }
  summary.seconds = now() - t0;
  store.end_run(run_id, summary.interrupted ? "interrupted" : "done", summary.to_json());
  return summary;
}

}  // namespace ldqa::data
