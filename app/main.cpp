// ldqa — the command line, a thin client of the library (include/ldqa/ldqa.hpp).
// Exit codes (README): 0 success, 1 some files failed to index, 2 bad usage, 3 error
// (database, model, files), 4 no answer found (ask), 130 interrupted. A batch question
// without an answer is a record, not an error.
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "ldqa/error.hpp"
#include "ldqa/json.hpp"
#include "ldqa/ldqa.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace ldqa;

namespace {

constexpr int kExitOk = 0, kExitFailedFiles = 1, kExitUsage = 2, kExitError = 3, kExitNoAnswer = 4,
              kExitInterrupted = 130;

std::atomic<bool> g_interrupted{false};

struct Global {
  fs::path db;
  fs::path model;
  std::string device = "auto";
  bool json = false;
  bool quiet = false;
  bool verbose = false;
  int threads = 0;

  Engine engine() const { return Engine::open(EngineOptions{db, model, device, threads}); }
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
    "usage: ldqa [--db PATH] [--model DIR] [--device auto|cpu|cuda] [--json] [-q|-v] [--threads N] <command> [args]\n"
    "\n"
    "commands:\n"
    "  index PATH...        add or update files and folders in the index\n"
    "  ask \"question\"       the best answers, each with its source\n"
    "  chat                 ask one question after another (model and index loaded once; Ctrl-D leaves)\n"
    "  batch FILE           questions from a text file (one per line) or JSONL; answers as JSONL\n"
    "  eval FILE.json       SQuAD evaluation: paragraph, document or corpus setting\n"
    "  search \"question\"    the best matching passages (retrieval only)\n"
    "  list                 indexed documents\n"
    "  stats                index size and health\n"
    "  remove PATH...       drop documents from the index\n"
    "  help [COMMAND]       this text, or a command's options\n"
    "\n"
    "exit codes: 0 ok, 1 some files failed to index, 2 bad usage, 3 error, 4 no answer found, 130 interrupted\n";

po::options_description ask_options(const char* title) {
  po::options_description o(title);
  o.add_options()("k,k", po::value<int>()->default_value(3), "answers to show")(
      "passages", po::value<int>()->default_value(12), "retrieved passages the reader sees (with neighbours)")(
      "context-tokens", po::value<int>()->default_value(1536), "tokens of context per document")(
      "min-score", po::value<double>(), "withhold answers scoring below this (default: the model's calibration)");
  return o;
}

AskOptions ask_settings(const po::variables_map& vm) {
  AskOptions o;
  o.answers = vm["k"].as<int>();
  o.passages = vm["passages"].as<int>();
  o.context_tokens = vm["context-tokens"].as<int>();
  if (vm.count("min-score")) o.min_score = vm["min-score"].as<double>();
  return o;
}

po::options_description batch_options() {
  po::options_description o = ask_options("ldqa batch FILE [options]");
  o.add_options()("output,o", po::value<std::string>(), "append answers to this JSONL file (default: stdout)")(
      "skip-done", "skip questions whose id is already in --output (resume an interrupted run)");
  return o;
}

po::options_description eval_options() {
  po::options_description o("ldqa eval FILE.json [options]");
  o.add_options()("setting", po::value<std::string>()->default_value("document"),
                  "paragraph, document or corpus (index the articles, ask through retrieval)")(
      "limit", po::value<int>()->default_value(0), "only the first N questions")(
      "predictions", po::value<std::string>(), "write {id: answer} to this JSON file");
  return o;
}

std::string answer_json(const Answer& a) {
  return "{\"text\":" + json_quote(a.text) + ",\"score\":" + std::to_string(a.score) +
         ",\"path\":" + json_quote(a.source.path) + ",\"char_start\":" + std::to_string(a.source.char_start) +
         ",\"char_end\":" + std::to_string(a.source.char_end) + ",\"page\":" + std::to_string(a.source.page) +
         ",\"before\":" + json_quote(a.before) + ",\"after\":" + json_quote(a.after) + "}";
}

std::string result_json(const AskResult& r) {
  std::string out = "{\"answers\":[";
  for (std::size_t i = 0; i < r.answers.size(); ++i) out += (i ? "," : "") + answer_json(r.answers[i]);
  out += "],\"best_score\":" + std::to_string(r.best_score) + ",\"threshold\":" + std::to_string(r.threshold) +
         ",\"retrieval_ms\":" + std::to_string(r.retrieval_ms) + ",\"reader_ms\":" + std::to_string(r.reader_ms) + "}";
  return out;
}

// One line of surrounding text, whitespace folded (runs become one space).
std::string one_line(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const bool space = ch == '\n' || ch == '\r' || ch == '\t' || ch == ' ';
    if (space && !out.empty() && out.back() == ' ') continue;
    out += space ? ' ' : ch;
  }
  return out;
}

void print_answers(const AskResult& r, bool color) {
  if (r.answers.empty()) {
    std::printf("no answer found (best score %.2f, threshold %.2f)\n", r.best_score, r.threshold);
    return;
  }
  const char* on = color ? "\033[1;33m" : "[[";
  const char* off = color ? "\033[0m" : "]]";
  for (std::size_t i = 0; i < r.answers.size(); ++i) {
    const auto& a = r.answers[i];
    const std::string page = a.source.page ? " page " + std::to_string(a.source.page) : "";
    std::printf("%zu. %s  (score %.2f)\n   %s  chars %lld-%lld%s\n   ...%s%s%s%s%s...\n\n", i + 1, a.text.c_str(),
                a.score, a.source.path.c_str(), static_cast<long long>(a.source.char_start),
                static_cast<long long>(a.source.char_end), page.c_str(), one_line(a.before).c_str(), on, a.text.c_str(),
                off, one_line(a.after).c_str());
  }
}

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

std::vector<std::string> positional(const std::vector<std::string>& args, const po::options_description& opts,
                                    const char* name, po::variables_map& vm) {
  po::options_description hidden;
  hidden.add_options()(name, po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add(name, -1);
  po::store(po::command_line_parser(args).options(all).positional(pos).run(), vm);
  po::notify(vm);
  return vm.count(name) ? vm[name].as<std::vector<std::string>>() : std::vector<std::string>{};
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

int cmd_index(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  const auto paths = positional(args, index_options(), "paths", vm);
  if (paths.empty()) throw po::error("index needs at least one PATH");
  IndexRequest request;
  if (vm.count("include")) request.include = vm["include"].as<std::vector<std::string>>();
  if (vm.count("exclude")) request.exclude = vm["exclude"].as<std::vector<std::string>>();
  request.prune = vm.count("prune") > 0;
  request.passage_words = vm["passage-words"].as<int>();
  request.cancel = &g_interrupted;
  for (const auto& p : paths) request.paths.emplace_back(p);
  Engine engine = g.engine();
  const bool bar = !g.quiet && !g.json && isatty(fileno(stderr));
  ProgressBar progress(stderr);
  const auto summary = engine.index(request, [&](const IndexProgress& p) {
    if (bar) progress.update(p);
  });
  if (bar) progress.finish();
  if (g.json) {
    std::printf("%s\n", summary.json.c_str());
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

// A missing or empty index fails before the model loads (one count, no scan).
int64_t require_documents(const Global& g, Engine& engine) {
  const int64_t documents = engine.document_count();
  if (documents == 0)
    throw Error("the index at " + g.db.string() + " holds no documents: run 'ldqa index PATH...' first");
  return documents;
}

void note_device(const Global& g, Engine& engine) {
  const auto note = engine.device_note();
  if (!note.empty() && !g.quiet) std::fprintf(stderr, "ldqa: %s\n", note.c_str());
  if (g.verbose) std::fprintf(stderr, "ldqa: reader on %s\n", engine.device().c_str());
}

int cmd_ask(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  const auto words = positional(args, ask_options("ldqa ask \"question\" [options]"), "question", vm);
  if (words.empty()) throw po::error("ask needs a question");
  Engine engine = g.engine();
  require_documents(g, engine);
  note_device(g, engine);
  const auto result = engine.ask(joined(words), ask_settings(vm));
  if (g.json) {
    std::printf("%s\n", result_json(result).c_str());
  } else {
    print_answers(result, isatty(fileno(stdout)));
  }
  return result.answers.empty() ? kExitNoAnswer : kExitOk;
}

// Reads one question: a line, or several joined while a line ends with a backslash.
// Returns false at end of input (Ctrl-D).
bool read_question(std::string& question, bool prompt) {
  question.clear();
  std::string line;
  if (prompt) std::fprintf(stderr, "? ");
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line.back() == '\\') {
      line.pop_back();
      question += line + " ";
      if (prompt) std::fprintf(stderr, "  ");
      continue;
    }
    question += line;
    return true;
  }
  return !question.empty();
}

int cmd_chat(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  positional(args, ask_options("ldqa chat [options]"), "rest", vm);
  const AskOptions options = ask_settings(vm);
  Engine engine = g.engine();
  const int64_t documents = require_documents(g, engine);
  const bool tty = isatty(fileno(stdin)) && isatty(fileno(stderr));
  if (tty && !g.quiet) {
    std::fprintf(stderr, "ldqa chat: %lld documents indexed. Loading the model...\n",
                 static_cast<long long>(documents));
  }
  note_device(g, engine);
  if (tty && !g.quiet)
    std::fprintf(stderr,
                 "Ask a question (end a line with \\ to continue it; :history lists past questions; Ctrl-D leaves).\n");
  std::vector<std::string> history;
  std::string question;
  while (!g_interrupted && read_question(question, tty)) {
    if (question.find_first_not_of(" \t") == std::string::npos) continue;
    if (question == ":history") {
      for (std::size_t i = 0; i < history.size(); ++i) std::printf("%zu  %s\n", i + 1, history[i].c_str());
      continue;
    }
    if (question.size() > 1 && question[0] == ':' && std::isdigit(static_cast<unsigned char>(question[1]))) {
      const std::size_t n = std::stoul(question.substr(1));  // :N asks history entry N again
      if (n < 1 || n > history.size()) {
        std::fprintf(stderr, "no question %zu in the history\n", n);
        continue;
      }
      question = history[n - 1];
    }
    history.push_back(question);
    try {
      const auto result = engine.ask(question, options);
      if (g.json) {
        std::printf("%s\n", result_json(result).c_str());
      } else {
        print_answers(result, isatty(fileno(stdout)));
      }
      std::fflush(stdout);
    } catch (const Error& e) {
      std::fprintf(stderr, "ldqa: %s\n", e.what());
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  return g_interrupted ? kExitInterrupted : kExitOk;
}

int cmd_batch(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  const auto files = positional(args, batch_options(), "file", vm);
  if (files.size() != 1) throw po::error("batch needs one FILE");
  std::ifstream in(files[0]);
  if (!in) throw Error("cannot read " + files[0]);
  // Questions: plain lines (id = line number) or JSON objects {"id", "question"}.
  std::vector<std::pair<std::string, std::string>> questions;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line[line.find_first_not_of(" \t")] == '{') {
      try {
        const auto j = nlohmann::json::parse(line);
        const std::string id = j.contains("id") ? (j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump())
                                                : std::to_string(number);
        questions.emplace_back(id, j.at("question").get<std::string>());
      } catch (const std::exception& e) {
        throw Error(files[0] + ":" + std::to_string(number) + ": not a JSON question: " + e.what());
      }
    } else {
      if (line.back() == '\r') line.pop_back();
      questions.emplace_back(std::to_string(number), line);
    }
  }
  std::set<std::string> done;
  const std::string output = vm.count("output") ? vm["output"].as<std::string>() : "";
  if (vm.count("skip-done")) {
    if (output.empty()) throw po::error("--skip-done needs --output FILE");
    std::ifstream prev(output);
    for (std::string l; std::getline(prev, l);) {
      try {
        done.insert(nlohmann::json::parse(l).at("id").get<std::string>());
      } catch (const std::exception&) {  // a line cut by an interruption: asked again
      }
    }
  }
  std::FILE* out = stdout;
  if (!output.empty()) {
    out = std::fopen(output.c_str(), "a");
    if (!out) throw Error("cannot write " + output);
  }
  Engine engine = g.engine();
  require_documents(g, engine);
  note_device(g, engine);
  const AskOptions options = ask_settings(vm);
  const bool progress = !g.quiet && isatty(fileno(stderr));
  int asked = 0, skipped = 0, unanswered = 0;
  for (std::size_t i = 0; i < questions.size() && !g_interrupted; ++i) {
    const auto& [id, question] = questions[i];
    if (done.count(id)) {
      ++skipped;
      continue;
    }
    std::string record = "{\"id\":" + json_quote(id) + ",\"question\":" + json_quote(question) + ",";
    try {
      const auto result = engine.ask(question, options);
      unanswered += result.answers.empty();
      record += result_json(result).substr(1);
    } catch (const Error& e) {
      record += "\"error\":" + json_quote(e.what()) + "}";
    }
    std::fprintf(out, "%s\n", record.c_str());
    std::fflush(out);
    ++asked;
    if (progress) std::fprintf(stderr, "\r%zu/%zu questions", i + 1, questions.size());
  }
  if (progress) std::fprintf(stderr, "\n");
  if (out != stdout) std::fclose(out);
  if (!g.quiet) std::fprintf(stderr, "asked %d, skipped %d (already done), no answer %d\n", asked, skipped, unanswered);
  return g_interrupted ? kExitInterrupted : kExitOk;
}

int cmd_eval(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  const auto files = positional(args, eval_options(), "file", vm);
  if (files.size() != 1) throw po::error("eval needs one SQuAD FILE.json");
  EvalRequest request;
  request.squad_file = files[0];
  request.setting = vm["setting"].as<std::string>();
  request.limit = vm["limit"].as<int>();
  if (request.setting != "paragraph" && request.setting != "document" && request.setting != "corpus")
    throw po::error("--setting is paragraph, document or corpus, not '" + request.setting + "'");
  const bool progress = !g.quiet && isatty(fileno(stderr));
  const auto r = evaluate_squad(EngineOptions{g.db, g.model, g.device, g.threads}, request, [&](int done, int total) {
    if (progress) std::fprintf(stderr, "\r%d/%d questions", done, total);
  });
  if (progress && request.setting == "corpus") std::fprintf(stderr, "\n");
  if (vm.count("predictions")) {
    std::ofstream out(vm["predictions"].as<std::string>());
    out << "{";
    for (std::size_t i = 0; i < r.predictions.size(); ++i)
      out << (i ? ",\n" : "") << json_quote(r.predictions[i].first) << ": " << json_quote(r.predictions[i].second);
    out << "}\n";
  }
  if (g.json) {
    std::printf(
        "{\"setting\":%s,\"device\":%s,\"questions\":%d,\"em\":%.3f,\"f1\":%.3f,\"seconds\":%.3f,\"p50_ms\":%.2f,"
        "\"p95_ms\":%.2f}\n",
        json_quote(r.setting).c_str(), json_quote(r.device).c_str(), r.questions, r.em, r.f1, r.seconds, r.p50_ms,
        r.p95_ms);
  } else {
    std::printf("%s setting, %d questions on %s: EM %.2f  F1 %.2f  (%.1f s; per question p50 %.1f ms, p95 %.1f ms)\n",
                r.setting.c_str(), r.questions, r.device.c_str(), r.em, r.f1, r.seconds, r.p50_ms, r.p95_ms);
  }
  return kExitOk;
}

int cmd_search(const Global& g, const std::vector<std::string>& args) {
  po::variables_map vm;
  const auto words = positional(args, search_options(), "question", vm);
  if (words.empty()) throw po::error("search needs a question");
  Engine engine = g.engine();
  const auto hits = engine.search(joined(words), vm["k"].as<int>());
  if (g.json) std::printf("[");
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const auto& h = hits[i];
    if (g.json) {
      std::printf("%s{\"path\":%s,\"score\":%.4f,\"char_start\":%lld,\"char_end\":%lld,\"page\":%d,\"text\":%s}",
                  i ? "," : "", json_quote(h.path).c_str(), h.score, static_cast<long long>(h.char_start),
                  static_cast<long long>(h.char_end), h.page, json_quote(h.text).c_str());
    } else {
      const std::string page = h.page ? " page " + std::to_string(h.page) : "";
      std::printf("%.2f  %s  chars %lld-%lld%s\n  %s\n\n", h.score, h.path.c_str(),
                  static_cast<long long>(h.char_start), static_cast<long long>(h.char_end), page.c_str(),
                  preview(h.text, 300).c_str());
    }
  }
  if (g.json) std::printf("]\n");
  if (hits.empty() && !g.json && !g.quiet) std::fprintf(stderr, "no matching passage\n");
  return kExitOk;
}

int cmd_list(const Global& g) {
  Engine engine = g.engine();
  const auto docs = engine.documents();
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
  Engine engine = g.engine();
  const auto s = engine.stats();
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
  Engine engine = g.engine();
  int missing = 0;
  for (const auto& a : args) {
    if (!engine.remove(a)) {
      std::fprintf(stderr, "not in the index: %s\n", fs::absolute(a).lexically_normal().c_str());
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
      "threads", po::value<int>()->default_value(0), "worker threads (0: all cores)")(
      "model", po::value<std::string>(), "model folder (default: the bundled model)")(
      "device", po::value<std::string>()->default_value("auto"), "where the reader runs: auto, cpu or cuda");
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
      } else if (topic == "ask") {
        std::cout << ask_options("ldqa ask \"question\" [options]");
      } else if (topic == "chat") {
        std::cout << ask_options("ldqa chat [options]");
      } else if (topic == "batch") {
        std::cout << batch_options();
      } else if (topic == "eval") {
        std::cout << eval_options();
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
    if (vm.count("model")) g.model = vm["model"].as<std::string>();
    g.device = vm["device"].as<std::string>();
    if (g.device != "auto" && g.device != "cpu" && g.device != "cuda")
      throw po::error("--device is auto, cpu or cuda, not '" + g.device + "'");
    if (command == "index") return cmd_index(g, rest);
    if (command == "search") return cmd_search(g, rest);
    if (command == "ask") return cmd_ask(g, rest);
    if (command == "chat") return cmd_chat(g, rest);
    if (command == "batch") return cmd_batch(g, rest);
    if (command == "eval") return cmd_eval(g, rest);
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
