// ldqa — the command line, a thin client of the library (include/ldqa/ldqa.hpp,
// ldqa/eval.hpp). One table of commands drives both `ldqa help` and dispatch.
// Exit codes (README): 0 success, 1 some files failed to index, 2 bad usage, 3 error
// (database, model, files), 4 no answer found (ask), 130 interrupted. A batch question
// without an answer is a record, not an error.
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include "app/output.hpp"
#include "app/progress_bar.hpp"
#include "app/questions.hpp"
#include "app/spinner.hpp"
#include "ldqa/error.hpp"
#include "ldqa/eval.hpp"
#include "ldqa/ldqa.hpp"
#include "util/utf8.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;
using namespace ldqa;
using namespace ldqa::cli;

namespace {

constexpr int kExitOk = 0, kExitFailedFiles = 1, kExitUsage = 2, kExitError = 3, kExitNoAnswer = 4,
              kExitInterrupted = 130;

std::atomic<bool> g_interrupted{false};

struct Global {
  fs::path db;
  EngineOptions engine_options;
  bool json = false, quiet = false, verbose = false;

  Engine engine() const { return Engine::open(engine_options); }
};

fs::path default_db() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg) return fs::path(xdg) / "ldqa" / "index.db";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".local/share/ldqa/index.db";
  return fs::path("ldqa-index.db");
}

po::options_description global_options() {
  po::options_description o("global options (before or after the command)");
  o.add_options()("help,h", "this text")("db", po::value<std::string>(),
                                         "index database (default: $XDG_DATA_HOME/ldqa/index.db)")(
      "json", "machine-readable output")("quiet,q", "no progress, no summary")(
      "verbose,v", "list every skipped file; full error details")(
      "threads", po::value<int>(), "worker threads for indexing and the CPU reader (default 0: all cores)")(
      "model", po::value<std::string>(), "model folder (default: the bundled model)")(
      "device", po::value<std::string>(), "where the reader runs: auto (default), cpu or cuda");
  return o;
}

// ----------------------------------------------------------------- command options
// What the reader reads per question (ask, batch and eval --setting corpus).
void add_reading_options(po::options_description& o) {
  const AskOptions defaults;
  static const std::string read_help =
      "context tokens read per question in all, best passages first (0: no limit; -1: " +
      std::to_string(AskOptions::kCpuReadTokens) + " on the CPU, no limit on CUDA)";
  o.add_options()("passages", po::value<int>()->default_value(defaults.passages),
                  "retrieved passages the reader sees (with neighbours)")(
      "context-tokens", po::value<int>()->default_value(defaults.context_tokens),
      "tokens of context per window around a passage")(
      "read-tokens", po::value<int>()->default_value(defaults.read_tokens), read_help.c_str());
}

void read_reading_options(const po::variables_map& vm, AskOptions& o) {
  o.passages = vm["passages"].as<int>();
  o.context_tokens = vm["context-tokens"].as<int>();
  o.read_tokens = vm["read-tokens"].as<int>();
}

po::options_description ask_options() {
  po::options_description o("options");
  o.add_options()("k,k", po::value<int>()->default_value(3), "answers to show");
  add_reading_options(o);
  o.add_options()("min-score", po::value<double>(),
                  "withhold answers scoring below this (default: the model's calibration)");
  return o;
}

AskOptions ask_settings(const po::variables_map& vm) {
  AskOptions o;
  o.answers = vm["k"].as<int>();
  read_reading_options(vm, o);
  if (vm.count("min-score")) o.min_score = vm["min-score"].as<double>();
  return o;
}

po::options_description batch_options() {
  po::options_description o = ask_options();
  o.add_options()("devices", po::value<std::string>(),
                  "spread the questions over these: all, or a list of cpu, cuda, cuda:N (one reader each)")(
      "output,o", po::value<std::string>(), "append answers to this JSONL file (default: stdout)")(
      "skip-done", "skip questions whose id is already in --output (resume an interrupted run)");
  return o;
}

po::options_description eval_options() {
  po::options_description o("options");
  o.add_options()("devices", po::value<std::string>(),
                  "spread the questions over these: all, or a list of cpu, cuda, cuda:N (one reader each)")(
      "setting", po::value<std::string>()->default_value("document"),
      "paragraph, document or corpus (index the articles, ask through retrieval)")(
      "limit", po::value<int>()->default_value(0), "N questions spread evenly over the file (0: all)")(
      "predictions", po::value<std::string>(), "write {id: answer} to this JSON file");
  add_reading_options(o);  // the corpus setting asks through retrieval, as ask does
  return o;
}

po::options_description calibrate_options() {
  po::options_description o("options");
  o.add_options()("questions", po::value<int>()->default_value(400),
                  "questions used, spread evenly over the file (each asked three times)")(
      "output,o", po::value<std::string>(), "write calibration.json here (default: stdout)");
  return o;
}

po::options_description index_options() {
  po::options_description o("options");
  o.add_options()("include", po::value<std::vector<std::string>>()->composing(),
                  "only files matching this glob (repeatable; a glob without '/' matches the file name)")(
      "exclude", po::value<std::vector<std::string>>()->composing(), "skip files and folders matching this glob")(
      "keep-missing", "keep the documents of files that are gone (default: the index reflects PATH)")(
      "prune", "drop the documents of files that are gone (the default; kept for scripts)")(
      "follow-links", "follow symbolic links that lead outside PATH")(
      "passage-words", po::value<int>()->default_value(200), "target words per passage");
  return o;
}

po::options_description search_options() {
  po::options_description o("options");
  o.add_options()("k,k", po::value<int>()->default_value(5), "how many passages");
  return o;
}

po::options_description no_options() { return po::options_description("options"); }

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
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

bool interactive_stderr(const Global& g) { return !g.quiet && isatty(fileno(stderr)); }

// ------------------------------------------------------------------------ commands
using Args = std::vector<std::string>;

int cmd_index(const Global& g, const po::variables_map& vm, const Args& paths) {
  if (paths.empty()) throw po::error("index needs at least one PATH");
  IndexRequest request;
  if (vm.count("include")) request.include = vm["include"].as<std::vector<std::string>>();
  if (vm.count("exclude")) request.exclude = vm["exclude"].as<std::vector<std::string>>();
  request.prune = vm.count("keep-missing") == 0;
  request.follow_links = vm.count("follow-links") > 0;
  request.passage_words = vm["passage-words"].as<int>();
  request.cancel = &g_interrupted;
  for (const auto& p : paths) request.paths.emplace_back(p);
  Engine engine = g.engine();
  const bool bar = !g.json && interactive_stderr(g);
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
    for (const auto& [reason, count] : reasons)
      std::fprintf(stderr, "  skipped %d: %s\n", count, terminal_text(reason).c_str());
    if (g.verbose)
      for (const auto& s : summary.skipped)
        std::fprintf(stderr, "  skipped %s: %s\n", terminal_text(s.first).c_str(), terminal_text(s.second).c_str());
    for (const auto& n : summary.notes)
      std::fprintf(stderr, "  note %s: %s\n", terminal_text(n.first).c_str(), terminal_text(n.second).c_str());
    for (const auto& f : summary.failed)
      std::fprintf(stderr, "  FAILED %s: %s\n", terminal_text(f.first).c_str(), terminal_text(f.second).c_str());
  }
  if (summary.interrupted) {
    std::fprintf(stderr, "interrupted: the index is consistent; run the same command again to finish\n");
    return kExitInterrupted;
  }
  return summary.failed.empty() ? kExitOk : kExitFailedFiles;
}

AskResult ask_with_spinner(const Global& g, Engine& engine, const std::string& question, const AskOptions& options) {
  Spinner spinner(interactive_stderr(g), "reading");
  return engine.ask(question, options);
}

void show(const Global& g, const AskResult& result) {
  if (g.json) {
    print_json(to_json(result));
  } else {
    print_answers(result, isatty(fileno(stdout)));
  }
  std::fflush(stdout);
}

int cmd_ask(const Global& g, const po::variables_map& vm, const Args& words) {
  if (words.empty()) throw po::error("ask needs a question");
  Engine engine = g.engine();
  require_documents(g, engine);
  note_device(g, engine);
  const auto result = ask_with_spinner(g, engine, joined(words), ask_settings(vm));
  show(g, result);
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

int cmd_chat(const Global& g, const po::variables_map& vm, const Args& rest) {
  if (!rest.empty()) throw po::error("chat takes no question (it reads them from the terminal)");
  const AskOptions options = ask_settings(vm);
  Engine engine = g.engine();
  const int64_t documents = require_documents(g, engine);
  const bool tty = isatty(fileno(stdin)) && isatty(fileno(stderr));
  if (tty && !g.quiet)
    std::fprintf(stderr, "ldqa chat: %lld documents indexed. Loading the model...\n",
                 static_cast<long long>(documents));
  note_device(g, engine);
  if (tty && !g.quiet)
    std::fprintf(stderr,
                 "Ask a question (end a line with \\ to continue it; :history lists past questions, :N asks one "
                 "again; :quit or Ctrl-D leaves).\n");
  std::vector<std::string> history;
  std::string question;
  while (!g_interrupted && read_question(question, tty)) {
    const auto first = question.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    const std::string command = question.substr(first, question.find_last_not_of(" \t") - first + 1);
    if (command == ":quit" || command == ":q" || command == ":exit") break;
    if (command == ":history") {
      for (std::size_t i = 0; i < history.size(); ++i)
        std::printf("%zu  %s\n", i + 1, terminal_text(history[i]).c_str());
      std::fflush(stdout);
      continue;
    }
    if (command.size() > 1 && command[0] == ':') {
      if (!std::isdigit(static_cast<unsigned char>(command[1]))) {
        std::fprintf(stderr, "unknown chat command %s (:history, :N, :quit)\n", terminal_text(command).c_str());
        continue;
      }
      const std::size_t n = std::stoul(command.substr(1));  // :N asks history entry N again
      if (n < 1 || n > history.size()) {
        std::fprintf(stderr, "no question %zu in the history\n", n);
        continue;
      }
      question = history[n - 1];
    }
    history.push_back(question);
    try {
      show(g, ask_with_spinner(g, engine, question, options));
    } catch (const Error& e) {
      std::fprintf(stderr, "ldqa: %s\n", terminal_text(e.what()).c_str());
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  return g_interrupted ? kExitInterrupted : kExitOk;
}

int cmd_batch(const Global& g, const po::variables_map& vm, const Args& files) {
  if (files.size() != 1) throw po::error("batch needs one FILE");
  const auto questions = read_questions(files[0]);
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
  const bool progress = interactive_stderr(g);
  int asked = 0, skipped = 0, unanswered = 0;
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < questions.size(); ++i) {
    if (done.count(questions[i].id)) {
      ++skipped;
    } else {
      todo.push_back(i);
    }
  }
  // In chunks, each spread over the devices and written in input order as soon as it is
  // done: an interrupted run keeps what it wrote, and --skip-done resumes after it.
  const std::size_t chunk = 16 * std::max<std::size_t>(1, g.engine_options.devices.size());
  for (std::size_t from = 0; from < todo.size() && !g_interrupted; from += chunk) {
    std::vector<std::string> texts;
    for (std::size_t k = from; k < std::min(todo.size(), from + chunk); ++k)
      texts.push_back(questions[todo[k]].question);
    const auto answers = engine.ask_many(texts, options, {}, &g_interrupted);
    for (std::size_t k = 0; k < answers.size() && answers[k].asked; ++k) {
      const auto& q = questions[todo[from + k]];
      Json record{{"id", q.id}, {"question", q.question}};
      if (answers[k].error.empty()) {
        unanswered += answers[k].result.answers.empty();
        record.update(to_json(answers[k].result));
      } else {
        record["error"] = answers[k].error;
      }
      const std::string line = json_text(record) + "\n";
      std::fwrite(line.data(), 1, line.size(), out);
      ++asked;
    }
    std::fflush(out);
    if (progress)
      std::fprintf(stderr, "\r%zu/%zu questions", skipped + std::min(todo.size(), from + chunk), questions.size());
  }
  if (progress) std::fprintf(stderr, "\n");
  if (out != stdout) std::fclose(out);
  if (!g.quiet) std::fprintf(stderr, "asked %d, skipped %d (already done), no answer %d\n", asked, skipped, unanswered);
  return g_interrupted ? kExitInterrupted : kExitOk;
}

int cmd_eval(const Global& g, const po::variables_map& vm, const Args& files) {
  if (files.size() != 1) throw po::error("eval needs one SQuAD FILE.json");
  EvalRequest request;
  request.squad_file = files[0];
  request.setting = vm["setting"].as<std::string>();
  request.limit = vm["limit"].as<int>();
  read_reading_options(vm, request.ask);
  if (request.setting != "paragraph" && request.setting != "document" && request.setting != "corpus")
    throw po::error("--setting is paragraph, document or corpus, not '" + request.setting + "'");
  const bool progress = interactive_stderr(g);
  const auto r = evaluate_squad(g.engine_options, request, [&](int done, int total) {
    if (progress) std::fprintf(stderr, "\r%d/%d questions", done, total);
  });
  if (progress && request.setting == "corpus") std::fprintf(stderr, "\n");
  if (vm.count("predictions")) {
    Json predictions = Json::object();
    for (const auto& [id, text] : r.predictions) predictions[id] = text;
    std::ofstream out(vm["predictions"].as<std::string>());
    out << json_text(predictions) << "\n";
    if (!out) throw Error("cannot write " + vm["predictions"].as<std::string>());
  }
  if (g.json) {
    print_json(to_json(r));
  } else {
    std::printf(
        "%s setting, %d questions (%d articles) on %s: EM %.2f  F1 %.2f  (%.1f s; per question p50 %.1f ms, p95 %.1f "
        "ms)\n",
        r.setting.c_str(), r.questions, r.articles, r.device.c_str(), r.em, r.f1, r.seconds, r.p50_ms, r.p95_ms);
    if (request.setting == "corpus")
      std::printf("per question: retrieval p50 %.1f ms, reader p50 %.1f ms, %.0f context tokens read on average\n",
                  r.retrieval_p50_ms, r.reader_p50_ms, r.reader_tokens_mean);
    if (r.unanswerable) std::printf("%d questions without a reference answer were left out\n", r.unanswerable);
  }
  return kExitOk;
}

int cmd_calibrate(const Global& g, const po::variables_map& vm, const Args& files) {
  if (files.size() != 1) throw po::error("calibrate needs one SQuAD FILE.json");
  const auto c = calibrate(g.engine_options, CalibrationRequest{files[0], vm["questions"].as<int>()});
  const std::string json = c.json() + "\n";
  if (vm.count("output")) {
    std::ofstream out(vm["output"].as<std::string>());
    out << json;
    if (!out) throw Error("cannot write " + vm["output"].as<std::string>());
    if (!g.quiet)
      std::fprintf(stderr, "threshold %.3f tells %.1f%% of %d cases (%d questions, %d articles) apart; written to %s\n",
                   c.threshold, 100 * c.accuracy, c.cases, c.questions, c.articles,
                   vm["output"].as<std::string>().c_str());
  } else {
    std::fwrite(json.data(), 1, json.size(), stdout);
  }
  return kExitOk;
}

int cmd_search(const Global& g, const po::variables_map& vm, const Args& words) {
  if (words.empty()) throw po::error("search needs a question");
  Engine engine = g.engine();
  const auto hits = engine.search(joined(words), vm["k"].as<int>());
  if (g.json) {
    Json out = Json::array();
    for (const auto& h : hits) out.push_back(to_json(h));
    print_json(out);
    return kExitOk;
  }
  for (const auto& h : hits) {
    const std::string page = h.page ? " page " + std::to_string(h.page) : "";
    const auto preview = utf8::prefix(h.text, 300);
    std::printf("%.2f  %s  chars %lld-%lld%s\n  %s%s\n\n", h.score, terminal_text(h.path).c_str(),
                static_cast<long long>(h.char_start), static_cast<long long>(h.char_end), page.c_str(),
                one_line(preview).c_str(), preview.size() < h.text.size() ? "..." : "");
  }
  if (hits.empty() && !g.quiet) std::fprintf(stderr, "no matching passage\n");
  return kExitOk;
}

int cmd_list(const Global& g, const po::variables_map&, const Args& rest) {
  if (!rest.empty()) throw po::error("list takes no arguments");
  Engine engine = g.engine();
  const auto docs = engine.documents();
  if (g.json) {
    Json out = Json::array();
    for (const auto& d : docs) out.push_back(to_json(d));
    print_json(out);
    return kExitOk;
  }
  for (const auto& d : docs)
    std::printf("%-8s %-5s %6lld passages  %s%s%s\n", d.status.c_str(), d.format.c_str(),
                static_cast<long long>(d.passages), terminal_text(d.path).c_str(), d.error.empty() ? "" : "  -- ",
                terminal_text(d.error).c_str());
  return kExitOk;
}

int cmd_stats(const Global& g, const po::variables_map&, const Args& rest) {
  if (!rest.empty()) throw po::error("stats takes no arguments");
  Engine engine = g.engine();
  const auto s = engine.stats();
  if (g.json) {
    print_json(Json{{"db", g.db.string()},
                    {"documents", s.documents},
                    {"failed", s.failed},
                    {"passages", s.passages},
                    {"text_bytes", s.text_bytes},
                    {"file_bytes", s.file_bytes},
                    {"schema_version", s.schema_version},
                    {"integrity", s.integrity},
                    {"last_run", s.last_run_status}});
  } else {
    std::printf(
        "index      %s\ndocuments  %lld (%lld failed)\npassages   %lld\ntext       %.1f MB\n"
        "schema     %d\nintegrity  %s\nlast run   %s\n",
        terminal_text(g.db.string()).c_str(), static_cast<long long>(s.documents), static_cast<long long>(s.failed),
        static_cast<long long>(s.passages), static_cast<double>(s.text_bytes) / 1e6, s.schema_version,
        terminal_text(s.integrity).c_str(), s.last_run_status.c_str());
  }
  return s.integrity == "ok" ? kExitOk : kExitError;
}

int cmd_remove(const Global& g, const po::variables_map&, const Args& paths) {
  if (paths.empty()) throw po::error("remove needs at least one PATH");
  Engine engine = g.engine();
  Json removed = Json::array(), missing = Json::array();
  for (const auto& a : paths) {
    const std::string path = fs::absolute(a).lexically_normal().string();
    if (engine.remove(a)) {
      removed.push_back(path);
    } else {
      missing.push_back(path);
      if (!g.json) std::fprintf(stderr, "not in the index: %s\n", terminal_text(path).c_str());
    }
  }
  if (g.json) print_json(Json{{"removed", removed}, {"not_in_index", missing}});
  return missing.empty() ? kExitOk : kExitError;
}

// ------------------------------------------------------------------ the one table
struct Command {
  const char* name;
  const char* arguments;  // the synopsis after the name
  const char* summary;
  po::options_description (*options)();
  int (*run)(const Global&, const po::variables_map&, const Args&);
};

const Command kCommands[] = {
    {"index", "PATH...", "add or update files and folders in the index", index_options, cmd_index},
    {"ask", "\"question\"", "the best answers, each with its source", ask_options, cmd_ask},
    {"chat", "", "ask one question after another (model and index loaded once; :quit or Ctrl-D leaves)", ask_options,
     cmd_chat},
    {"batch", "FILE", "questions from a text file (one per line) or JSONL; answers as JSONL", batch_options, cmd_batch},
    {"eval", "FILE.json", "SQuAD-format evaluation: paragraph, document or corpus setting", eval_options, cmd_eval},
    {"calibrate", "FILE.json", "the no-answer threshold of the model (its calibration.json)", calibrate_options,
     cmd_calibrate},
    {"search", "\"question\"", "the best matching passages (retrieval only)", search_options, cmd_search},
    {"list", "", "indexed documents", no_options, cmd_list},
    {"stats", "", "index size and health", no_options, cmd_stats},
    {"remove", "PATH...", "drop documents from the index", no_options, cmd_remove},
};

const Command* find_command(const std::string& name) {
  for (const auto& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

void print_usage() {
  std::cout << "usage: ldqa [global options] <command> [args] [options]\n\ncommands:\n";
  for (const auto& c : kCommands) {
    const std::string head = std::string(c.name) + (*c.arguments ? " " : "") + c.arguments;
    std::printf("  %-22s %s\n", head.c_str(), c.summary);
  }
  std::printf("  %-22s %s\n", "help [COMMAND]", "this text, or a command's options");
  std::cout << "\nexit codes: 0 ok, 1 some files failed to index, 2 bad usage, 3 error, 4 no answer found, "
               "130 interrupted\n\n"
            << global_options();
}

void print_command_help(const Command& c) {
  std::printf("usage: ldqa %s%s%s [options]\n%s\n\n", c.name, *c.arguments ? " " : "", c.arguments, c.summary);
  const auto options = c.options();
  if (!options.options().empty()) std::cout << options << "\n";
  std::cout << global_options();
}

// Where the command word is in argv: global options (and their values) come before it.
int command_position(int argc, char** argv, const po::options_description& globals) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") return i + 1 < argc ? i + 1 : -1;
    if (arg.size() < 2 || arg[0] != '-') return i;
    if (arg.find('=') != std::string::npos) continue;
    const std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    const auto* option = globals.find_nothrow(name, false, false, arg[1] != '-');
    if (option && option->semantic()->max_tokens() > 0) ++i;  // its value
  }
  return -1;
}

void apply_globals(const po::variables_map& vm, Global& g) {
  if (vm.count("db")) g.db = vm["db"].as<std::string>();
  if (vm.count("json")) g.json = true;
  if (vm.count("quiet")) g.quiet = true;
  if (vm.count("verbose")) g.verbose = true;
  if (vm.count("threads")) {
    g.engine_options.threads = vm["threads"].as<int>();
    if (g.engine_options.threads < 0) throw po::error("--threads must be 0 (all cores) or more");
  }
  if (vm.count("model")) g.engine_options.model = vm["model"].as<std::string>();
  if (vm.count("device")) {
    try {
      g.engine_options.device = parse_device(vm["device"].as<std::string>());
    } catch (const Error& e) {
      throw po::error(std::string("--device: ") + e.what());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, [](int) { g_interrupted = true; });
  const po::options_description globals = global_options();
  Global g;
  g.db = default_db();
  try {
    const int at = command_position(argc, argv, globals);
    po::variables_map before;
    po::store(po::command_line_parser(at < 0 ? argc : at, argv).options(globals).run(), before);
    po::notify(before);
    apply_globals(before, g);
    if (at < 0) {
      print_usage();
      return before.count("help") ? kExitOk : kExitUsage;
    }
    const std::string name = argv[at];
    const std::vector<std::string> rest(argv + at + 1, argv + argc);
    if (name == "help") {
      if (rest.empty()) {
        print_usage();
        return kExitOk;
      }
      const Command* topic = find_command(rest[0]);
      if (!topic) throw po::error("no help on '" + rest[0] + "': not a command");
      print_command_help(*topic);
      return kExitOk;
    }
    const Command* command = find_command(name);
    if (!command) {
      std::fprintf(stderr, "ldqa: unknown command '%s' (try 'ldqa help')\n", terminal_text(name).c_str());
      return kExitUsage;
    }
    // The command's options and the global ones, then its positional arguments ("--"
    // ends the options: `ldqa ask -- "-5 degrees?"`).
    po::options_description all;
    all.add(command->options()).add(globals);
    po::options_description hidden;
    hidden.add_options()("positional", po::value<std::vector<std::string>>(), "");
    all.add(hidden);
    po::positional_options_description pos;
    pos.add("positional", -1);
    po::variables_map vm;
    po::store(po::command_line_parser(rest).options(all).positional(pos).run(), vm);
    po::notify(vm);
    apply_globals(vm, g);
    if (vm.count("help")) {
      print_command_help(*command);
      return kExitOk;
    }
    g.engine_options.db = g.db;
    if (vm.count("devices")) {
      try {
        g.engine_options.devices = parse_devices(vm["devices"].as<std::string>());
      } catch (const Error& e) {
        throw po::error(std::string("--devices: ") + e.what());
      }
    }
    const Args positional = vm.count("positional") ? vm["positional"].as<Args>() : Args{};
    return command->run(g, vm, positional);
  } catch (const po::error& e) {
    std::fprintf(stderr, "ldqa: %s (try 'ldqa help')\n", terminal_text(e.what()).c_str());
    return kExitUsage;
  } catch (const Error& e) {
    // What is wrong and what to do; the underlying cause in its own words with -v.
    std::fprintf(stderr, "ldqa: %s\n", terminal_text(e.what()).c_str());
    if (!e.detail().empty()) {
      if (g.verbose) {
        std::fprintf(stderr, "  detail: %s\n", terminal_text(e.detail()).c_str());
      } else {
        std::fprintf(stderr, "  (-v for details)\n");
      }
    }
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ldqa: %s\n", terminal_text(e.what()).c_str());
    return kExitError;
  }
}
