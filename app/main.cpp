// ldqa — the command line. Today: the document index (index, search, list, stats,
// remove); questions answered by the reader model (ask, chat, batch, eval) arrive with
// the engine. Exit codes: 0 success, 1 some files failed to index, 2 bad usage,
// 3 error (database, files), 130 interrupted.
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include "data/store.hpp"
#include "ldqa/error.hpp"
#include "ldqa/json.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace ldqa;

namespace {

constexpr int kExitOk = 0, kExitFailedFiles = 1, kExitUsage = 2, kExitError = 3, kExitInterrupted = 130;

std::atomic<bool> g_interrupted{false};

struct Global {
  fs::path db;
  bool json = false;
  bool quiet = false;
  bool verbose = false;
  int threads = 0;
};

fs::path default_db() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return fs::path(xdg) / "ldqa" / "index.db";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".local/share/ldqa/index.db";
  return fs::path("ldqa-index.db");
}

// At most `bytes` bytes of text, never cutting a UTF-8 character.
std::string preview(const std::string& text, std::size_t bytes) {
  if (text.size() <= bytes) return text;
  while (bytes > 0 && (static_cast<unsigned char>(text[bytes]) & 0xC0) == 0x80) --bytes;
  return text.substr(0, bytes) + "...";
}

const char* kUsage =
    "usage: ldqa [--db PATH] [--json] [-q|-v] [--threads N] <command> [args]\n"
    "\n"
    "commands:\n"
    "  index PATH...        add or update files and folders in the index\n"
    "  search \"question\"    the best matching passages (retrieval only)\n"
    "  list                 indexed documents\n"
    "  stats                index size and health\n"
    "  remove PATH...       drop documents from the index\n"
    "  help [COMMAND]       this text, or a command's options\n"
    "\n"
    "exit codes: 0 ok, 1 some files failed to index, 2 bad usage, 3 error, 130 interrupted\n";

po::options_description index_options() {
  po::options_description o("ldqa index PATH... [options]");
  o.add_options()("include", po::value<std::vector<std::string>>()->composing(),
                  "only files matching this glob (repeatable; a glob without '/' matches the file name)")(
      "exclude", po::value<std::vector<std::string>>()->composing(), "skip files and folders matching this glob")(
      "prune", "remove documents under PATH whose files are gone")(
      "passage-words", po::value<int>()->default_value(200), "target words per passage");
  return o;
}

po::options_description search_options() {
  po::options_description o("ldqa search \"question\" [options]");
  o.add_options()("k,k", po::value<int>()->default_value(5), "how many passages");
  return o;
}

int cmd_index(const Global& g, const std::vector<std::string>& args) {
  po::options_description opts = index_options();
  po::options_description hidden;
  hidden.add_options()("paths", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("paths", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (!vm.count("paths")) throw po::error("index needs at least one PATH");
  data::IndexOptions options;
  if (vm.count("include")) options.include = vm["include"].as<std::vector<std::string>>();
  if (vm.count("exclude")) options.exclude = vm["exclude"].as<std::vector<std::string>>();
  options.prune = vm.count("prune") > 0;
  options.threads = g.threads;
  options.passages.target_words = vm["passage-words"].as<int>();
  options.passages.max_words = options.passages.target_words * 7 / 4;
  options.cancel = &g_interrupted;
  std::vector<fs::path> roots;
  for (const auto& p : vm["paths"].as<std::vector<std::string>>()) {
    if (!fs::exists(p)) throw Error("no such file or folder: " + p);
    roots.emplace_back(p);
  }
  fs::create_directories(g.db.parent_path().empty() ? fs::path(".") : g.db.parent_path());
  data::Store store = data::Store::open(g.db);
  const bool bar = !g.quiet && !g.json && isatty(fileno(stderr));
  data::ProgressBar progress(stderr);
  const auto summary = data::index_paths(store, roots, options, [&](const data::IndexProgress& p) {
    if (bar) progress.update(p);
  });
  if (bar) progress.finish();
  if (g.json) {
    std::printf("%s\n", summary.to_json().c_str());
  } else if (!g.quiet) {
    std::map<std::string, int> reasons;
    for (const auto& s : summary.skipped) ++reasons[s.second];
    std::fprintf(stderr, "indexed %lld, unchanged %lld, removed %lld, skipped %zu, failed %zu (%.1f MB in %.1f s)\n",
                 static_cast<long long>(summary.indexed), static_cast<long long>(summary.unchanged),
                 static_cast<long long>(summary.removed), summary.skipped.size(), summary.failed.size(),
                 static_cast<double>(summary.bytes_read) / 1e6, summary.seconds);
    for (const auto& [reason, count] : reasons) std::fprintf(stderr, "  skipped %d: %s\n", count, reason.c_str());
    if (g.verbose)
      for (const auto& s : summary.skipped)
        std::fprintf(stderr, "  skipped %s: %s\n", s.first.c_str(), s.second.c_str());
    for (const auto& f : summary.failed) std::fprintf(stderr, "  FAILED %s: %s\n", f.first.c_str(), f.second.c_str());
  }
  if (summary.interrupted) {
    std::fprintf(stderr, "interrupted: the index is consistent; run the same command again to finish\n");
    return kExitInterrupted;
  }
  return summary.failed.empty() ? kExitOk : kExitFailedFiles;
}

int cmd_search(const Global& g, const std::vector<std::string>& args) {
  po::options_description opts = search_options();
  po::options_description hidden;
  hidden.add_options()("question", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("question", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  if (!vm.count("question")) throw po::error("search needs a question");
  std::string question;
  for (const auto& w : vm["question"].as<std::vector<std::string>>()) question += (question.empty() ? "" : " ") + w;
  data::Store store = data::Store::open(g.db, true);
  const auto hits = store.search(question, vm["k"].as<int>());
  if (g.json) std::printf("[");
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    const std::string text = store.text(h.document_id, h.passage.byte_start, h.passage.byte_end);
    if (g.json) {
      std::printf(
          "%s{\"path\":%s,\"score\":%.4f,\"passage\":%d,\"char_start\":%lld,\"char_end\":%lld,\"page\":%d,"
          "\"text\":%s}",
          i ? "," : "", json_quote(h.path).c_str(), h.score, h.ordinal, static_cast<long long>(h.passage.char_start),
          static_cast<long long>(h.passage.char_end), h.passage.page, json_quote(text).c_str());
    } else {
      std::printf("%.2f  %s  chars %lld-%lld%s\n  %s\n\n", h.score, h.path.c_str(),
                  static_cast<long long>(h.passage.char_start), static_cast<long long>(h.passage.char_end),
                  h.passage.page ? (" page " + std::to_string(h.passage.page)).c_str() : "",
                  preview(text, 300).c_str());
    }
  }
  if (g.json) std::printf("]\n");
  if (hits.empty() && !g.json && !g.quiet) std::fprintf(stderr, "no matching passage\n");
  return kExitOk;
}

int cmd_list(const Global& g) {
  data::Store store = data::Store::open(g.db, true);
  const auto docs = store.documents();
  if (g.json) std::printf("[");
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const auto& d = docs[i];
    if (g.json) {
      std::printf(
          "%s{\"path\":%s,\"status\":%s,\"format\":%s,\"title\":%s,\"size\":%lld,\"passages\":%lld,"
          "\"error\":%s}",
          i ? "," : "", json_quote(d.path).c_str(), json_quote(d.status).c_str(), json_quote(d.format).c_str(),
          json_quote(d.title).c_str(), static_cast<long long>(d.size), static_cast<long long>(d.passages),
          json_quote(d.error).c_str());
    } else {
      std::printf("%-8s %-5s %6lld passages  %s%s%s\n", d.status.c_str(), d.format.c_str(),
                  static_cast<long long>(d.passages), d.path.c_str(), d.error.empty() ? "" : "  -- ", d.error.c_str());
    }
  }
  if (g.json) std::printf("]\n");
  return kExitOk;
}

int cmd_stats(const Global& g) {
  data::Store store = data::Store::open(g.db, true);
  const auto s = store.stats();
  if (g.json) {
    std::printf(
        "{\"db\":%s,\"documents\":%lld,\"failed\":%lld,\"passages\":%lld,\"text_bytes\":%lld,"
        "\"file_bytes\":%lld,\"schema_version\":%d,\"integrity\":%s,\"last_run\":%s}\n",
        json_quote(g.db.string()).c_str(), static_cast<long long>(s.documents), static_cast<long long>(s.failed),
        static_cast<long long>(s.passages), static_cast<long long>(s.text_bytes), static_cast<long long>(s.file_bytes),
        s.schema_version, json_quote(s.integrity).c_str(), json_quote(s.last_run_status).c_str());
  } else {
    std::printf(
        "index      %s\ndocuments  %lld (%lld failed)\npassages   %lld\ntext       %.1f MB\n"
        "schema     %d\nintegrity  %s\nlast run   %s\n",
        g.db.c_str(), static_cast<long long>(s.documents), static_cast<long long>(s.failed),
        static_cast<long long>(s.passages), static_cast<double>(s.text_bytes) / 1e6, s.schema_version,
        s.integrity.c_str(), s.last_run_status.c_str());
  }
  return s.integrity == "ok" ? kExitOk : kExitError;
}

int cmd_remove(const Global& g, const std::vector<std::string>& args) {
  if (args.empty()) throw po::error("remove needs at least one PATH");
  data::Store store = data::Store::open(g.db);
  int missing = 0;
  for (const auto& a : args) {
    const std::string path = fs::absolute(a).lexically_normal().string();
    if (!store.remove(path)) {
      std::fprintf(stderr, "not in the index: %s\n", path.c_str());
      ++missing;
    }
  }
  return missing ? kExitError : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  po::options_description global("global options");
  global.add_options()("help,h", "this text")("db", po::value<std::string>(),
                                              "index database (default: $XDG_DATA_HOME/ldqa/index.db)")(
      "json", "machine-readable output")("quiet,q", "no progress, no summary")("verbose,v", "list every skipped file")(
      "threads", po::value<int>()->default_value(0), "worker threads (0: all cores)");
  po::options_description hidden;
  hidden.add_options()("command", po::value<std::string>(), "")("args", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(global).add(hidden);
  po::positional_options_description pos;
  pos.add("command", 1).add("args", -1);
  try {
    po::variables_map vm;
    po::parsed_options parsed =
        po::command_line_parser(argc, argv).options(all).positional(pos).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
    std::vector<std::string> rest = po::collect_unrecognized(parsed.options, po::include_positional);
    if (!rest.empty()) rest.erase(rest.begin());  // the command itself
    const std::string command = vm.count("command") ? vm["command"].as<std::string>() : "";
    if (vm.count("help") || command.empty() || command == "help") {
      const std::string topic = command == "help" && !rest.empty() ? rest[0] : "";
      if (topic == "index") {
        std::cout << index_options();
      } else if (topic == "search") {
        std::cout << search_options();
      } else {
        std::cout << kUsage << "\n" << global;
      }
      return command.empty() && !vm.count("help") ? kExitUsage : kExitOk;
    }
    Global g;
    g.db = vm.count("db") ? fs::path(vm["db"].as<std::string>()) : default_db();
    g.json = vm.count("json") > 0;
    g.quiet = vm.count("quiet") > 0;
    g.verbose = vm.count("verbose") > 0;
    g.threads = vm["threads"].as<int>();
    if (command == "index") return cmd_index(g, rest);
    if (command == "search") return cmd_search(g, rest);
    if (command == "list") return cmd_list(g);
    if (command == "stats") return cmd_stats(g);
    if (command == "remove") return cmd_remove(g, rest);
    std::fprintf(stderr, "ldqa: unknown command '%s' (try 'ldqa help')\n", command.c_str());
    return kExitUsage;
  } catch (const po::error& e) {
    std::fprintf(stderr, "ldqa: %s (try 'ldqa help')\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ldqa: %s\n", e.what());
    return kExitError;
  }
}
