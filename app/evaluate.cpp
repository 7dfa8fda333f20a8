// SQuAD evaluation through the facade: paragraph and document settings call the
// reader's batched evaluation; the corpus setting indexes the articles as files and
// asks every question as a user would.
#include <algorithm>
#include <chrono>
#include <fstream>

#include "ldqa/ldqa.hpp"
#include "model/model.hpp"

namespace ldqa {

namespace {

struct TempFolder {
  std::filesystem::path path;
  bool owned = false;
  ~TempFolder() {
    std::error_code ec;
    if (owned) std::filesystem::remove_all(path, ec);
  }
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

EvalReport evaluate_squad(const EngineOptions& options, const EvalRequest& request,
                          const std::function<void(int, int)>& progress) {
  const auto squad = model::load_squad(request.squad_file);
  EvalReport report;
  report.setting = request.setting;
  const auto model_dir = options.model.empty() ? bundled_model_dir() : options.model;
  if (request.setting == "paragraph" || request.setting == "document") {
    const auto reader = model::Reader::load(model_dir);
    model::ReaderOptions ro;
    ro.device = model::choose_device(model::parse_device(options.device));
    report.device = model::device_name(ro.device);
    const auto r = model::evaluate_squad(
        reader, squad, request.setting == "paragraph" ? model::SquadSetting::paragraph : model::SquadSetting::document,
        ro, request.limit);
    report.questions = r.questions;
    report.em = r.em;
    report.f1 = r.f1;
    report.seconds = r.seconds;
    report.p50_ms = report.p95_ms = r.questions ? 1e3 * r.seconds / r.questions : 0;
    report.predictions.assign(r.predictions.begin(), r.predictions.end());
    return report;
  }
  if (request.setting != "corpus")
    fail("unknown evaluation setting '", request.setting, "' (paragraph, document, corpus)");
  TempFolder work;
  if (request.workdir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ldqa-eval-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) fail("cannot create a temporary folder in ", std::filesystem::temp_directory_path());
    work.path = tmpl;
    work.owned = true;
  } else {
    work.path = request.workdir;
    std::filesystem::create_directories(work.path);
  }
  const auto articles = work.path / "articles";
  std::filesystem::create_directories(articles);
  for (std::size_t i = 0; i < squad.articles.size(); ++i) {
    std::ofstream out(articles / ("article-" + std::to_string(i + 1) + ".txt"), std::ios::binary);
    out << squad.articles[i] << "\n";
    if (!out) fail("cannot write the articles into ", articles.string());
  }
  EngineOptions eo = options;
  eo.db = work.path / "index.db";
  eo.model = model_dir;
  Engine engine = Engine::open(eo);
  IndexRequest ir;
  ir.paths = {articles};
  const auto indexed = engine.index(ir);
  if (!indexed.failed.empty()) fail("indexing the articles failed: ", indexed.failed.front().second);
  report.device = engine.device();
  const std::size_t count = request.limit > 0
                                ? std::min<std::size_t>(squad.items.size(), static_cast<std::size_t>(request.limit))
                                : squad.items.size();
  AskOptions ask = request.ask;
  ask.answers = 1;
  ask.min_score = -1e299;  // SQuAD questions all have answers: never withhold
  std::vector<double> latencies;
  double em = 0, f1 = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < count; ++i) {
    const auto& item = squad.items[i];
    const auto q0 = std::chrono::steady_clock::now();
    const auto r = engine.ask(item.question, ask);
    latencies.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - q0).count());
    const std::string text = r.answers.empty() ? "" : r.answers.front().text;
    em += model::squad_exact(text, item.answers);
    f1 += model::squad_f1(text, item.answers);
    report.predictions.emplace_back(item.id, text);
    if (progress) progress(static_cast<int>(i + 1), static_cast<int>(count));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.questions = static_cast<int>(count);
  report.em = count ? 100.0 * em / static_cast<double>(count) : 0;
  report.f1 = count ? 100.0 * f1 / static_cast<double>(count) : 0;
  report.p50_ms = percentile(latencies, 0.5);
  report.p95_ms = percentile(latencies, 0.95);
  return report;
}

}  // namespace ldqa
