// The three evaluation settings and the no-answer calibration (ldqa/eval.hpp).
// Paragraph and document settings hand every question with its paragraph or article to
// the reader in one batched call; the corpus setting indexes the articles as files and
// asks every question through the Engine, as a user would.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>

#include "eval/squad.hpp"
#include "ldqa/eval.hpp"
#include "lib/answering.hpp"
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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::filesystem::path model_dir_of(const EngineOptions& options) {
  return options.model.empty() ? bundled_model_dir() : options.model;
}

// Paragraph setting: windows of 384 tokens overlapping by 128 (as training evaluates);
// document setting: the model's own windows over each whole article.
EvalReport read_directly(const EngineOptions& options, const EvalRequest& request, const eval::SquadData& squad) {
  const bool paragraph = request.setting == "paragraph";
  const auto model_dir = model_dir_of(options);
  const auto shared = model::Reader::load(model_dir);  // CPU workers share it; each GPU gets its own
  model::ReaderOptions ro;
  ro.device = resolve_device(options.device);
  ro.answers = 1;
  if (paragraph) {
    ro.max_len = 384;
    ro.overlap = 128;
  }
  const auto picked = eval::spread_sample(squad.items.size(), request.limit);
  const std::size_t count = picked.size();
  std::vector<std::string_view> contexts;
  if (paragraph) {
    contexts.assign(squad.paragraphs.begin(), squad.paragraphs.end());
  } else {
    contexts.assign(squad.articles.begin(), squad.articles.end());
  }
  std::vector<model::Question> questions;
  for (const std::size_t i : picked) {
    const auto& it = squad.items[i];
    questions.push_back(model::Question{it.question, {paragraph ? it.paragraph : it.article}});
  }
  // Batches of questions dealt to the devices as they free up (one device: the same
  // path); answers land in the questions' order.
  std::vector<DeviceId> devices = options.devices;
  if (devices.empty()) devices.push_back({ro.device, 0});
  constexpr std::size_t kJob = 256;
  std::vector<std::vector<model::Answer>> answers(count);
  struct Worker {
    std::unique_ptr<detail::DeviceReader> reader;
    model::ReaderOptions options;
  };
  const auto t0 = std::chrono::steady_clock::now();
  detail::run_on_devices<Worker>(
      devices, (count + kJob - 1) / kJob,
      [&](const DeviceId& id) {
        Worker w;
        w.options = ro;
        w.options.device = id.device;
        w.reader = std::make_unique<detail::DeviceReader>(id, shared, model_dir);
        return w;
      },
      [&](Worker& w, std::size_t job) {
        const std::size_t from = job * kJob, to = std::min(count, from + kJob);
        const std::vector<model::Question> part(questions.begin() + static_cast<std::ptrdiff_t>(from),
                                                questions.begin() + static_cast<std::ptrdiff_t>(to));
        auto found = w.reader->reader->answer(part, contexts, w.options);
        for (std::size_t i = from; i < to; ++i) answers[i] = std::move(found[i - from]);
      });
  EvalReport report;
  report.setting = request.setting;
  report.device = devices.size() == 1 ? device_name(devices[0].device) : std::to_string(devices.size()) + " devices";
  report.seconds = seconds_since(t0);
  double em = 0, f1 = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& item = squad.items[picked[i]];
    std::string text;
    if (!answers[i].empty()) {
      const model::Answer& a = answers[i].front();
      text = std::string(contexts[static_cast<std::size_t>(a.context)].substr(
          static_cast<std::size_t>(a.byte_start), static_cast<std::size_t>(a.byte_end - a.byte_start)));
    }
    em += eval::squad_exact(text, item.answers);
    f1 += eval::squad_f1(text, item.answers);
    report.predictions.emplace_back(item.id, std::move(text));
  }
  report.questions = static_cast<int>(count);
  report.articles = eval::articles_of(squad, picked);
  report.em = count ? 100.0 * em / static_cast<double>(count) : 0;
  report.f1 = count ? 100.0 * f1 / static_cast<double>(count) : 0;
  report.p50_ms = report.p95_ms = count ? 1e3 * report.seconds / static_cast<double>(count) : 0;
  return report;
}

EvalReport ask_through_retrieval(const EngineOptions& options, const EvalRequest& request, const eval::SquadData& squad,
                                 const std::function<void(int, int)>& progress) {
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
  eo.model = model_dir_of(options);
  Engine engine = Engine::open(eo);
  IndexRequest ir;
  ir.paths = {articles};
  const auto indexed = engine.index(ir);
  if (!indexed.failed.empty()) fail("indexing the articles failed: ", indexed.failed.front().second);
  EvalReport report;
  report.setting = request.setting;
  report.device = engine.device();
  const auto picked = eval::spread_sample(squad.items.size(), request.limit);
  const std::size_t count = picked.size();
  AskOptions ask = request.ask;
  ask.answers = 1;
  ask.min_score = -std::numeric_limits<double>::infinity();  // SQuAD questions all have answers: never withhold
  std::vector<std::string> questions;
  for (const std::size_t i : picked) questions.push_back(squad.items[i].question);
  const auto t0 = std::chrono::steady_clock::now();
  const auto answers = engine.ask_many(questions, ask, progress);  // EngineOptions::devices
  report.seconds = seconds_since(t0);
  if (options.devices.size() > 1) report.device = std::to_string(options.devices.size()) + " devices";
  std::vector<double> latencies, retrieval, reading;
  double em = 0, f1 = 0, tokens = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto& item = squad.items[picked[i]];
    if (!answers[i].error.empty()) fail("question ", item.id, ": ", answers[i].error);
    const auto& r = answers[i].result;
    latencies.push_back(r.retrieval_ms + r.reader_ms);
    retrieval.push_back(r.retrieval_ms);
    reading.push_back(r.reader_ms);
    tokens += r.reader_tokens;
    const std::string text = r.answers.empty() ? "" : r.answers.front().text;
    em += eval::squad_exact(text, item.answers);
    f1 += eval::squad_f1(text, item.answers);
    report.predictions.emplace_back(item.id, text);
  }
  report.questions = static_cast<int>(count);
  report.articles = eval::articles_of(squad, picked);
  report.em = count ? 100.0 * em / static_cast<double>(count) : 0;
  report.f1 = count ? 100.0 * f1 / static_cast<double>(count) : 0;
  report.p50_ms = percentile(latencies, 0.5);
  report.p95_ms = percentile(latencies, 0.95);
  report.retrieval_p50_ms = percentile(retrieval, 0.5);
  report.reader_p50_ms = percentile(reading, 0.5);
  report.reader_tokens_mean = count ? tokens / static_cast<double>(count) : 0;
  return report;
}

}  // namespace

EvalReport evaluate_squad(const EngineOptions& options, const EvalRequest& request,
                          const std::function<void(int, int)>& progress) {
  if (request.setting != "paragraph" && request.setting != "document" && request.setting != "corpus")
    fail("unknown evaluation setting '", request.setting, "' (paragraph, document, corpus)");
  const auto squad = eval::load_squad(request.squad_file);
  auto report = request.setting == "corpus" ? ask_through_retrieval(options, request, squad, progress)
                                            : read_directly(options, request, squad);
  report.unanswerable = squad.unanswerable;
  return report;
}

std::string CalibrationReport::json() const {
  return nlohmann::json{{"no_answer_threshold", threshold},
                        {"accuracy", accuracy},
                        {"accuracy_same_article", accuracy_same_article},
                        {"accuracy_other_article", accuracy_other_article},
                        {"questions", questions},
                        {"articles", articles},
                        {"cases", cases},
                        {"device", device},
                        {"method", method}}
      .dump(1);
}

namespace {

// The best threshold on scores of (score, answerable) cases: answerable above it, the
// others below; and the share of cases it tells apart.
std::pair<double, double> best_threshold(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end());
  std::size_t answerable_total = 0;
  for (const auto& s : scored) answerable_total += s.second;
  std::size_t below_unanswerable = 0, below_answerable = 0, best_correct = answerable_total;
  double threshold = scored.empty() ? 0 : scored.front().first - 1;
  for (std::size_t i = 0; i < scored.size(); ++i) {
    (scored[i].second ? below_answerable : below_unanswerable) += 1;
    const std::size_t correct = below_unanswerable + (answerable_total - below_answerable);
    if (correct > best_correct && (i + 1 == scored.size() || scored[i + 1].first > scored[i].first)) {
      best_correct = correct;
      threshold = i + 1 < scored.size() ? (scored[i].first + scored[i + 1].first) / 2 : scored[i].first + 1;
    }
  }
  return {threshold, scored.empty() ? 0 : static_cast<double>(best_correct) / static_cast<double>(scored.size())};
}

double share_told_apart(const std::vector<std::pair<double, bool>>& scored, double threshold) {
  std::size_t right = 0;
  for (const auto& [score, answerable] : scored) right += (score >= threshold) == answerable;
  return scored.empty() ? 0 : static_cast<double>(right) / static_cast<double>(scored.size());
}

}  // namespace

CalibrationReport calibrate(const EngineOptions& options, const CalibrationRequest& request) {
  if (request.questions < 1) fail("calibrate: questions (", request.questions, ") must be positive");
  const auto data = eval::load_squad(request.squad_file);
  if (data.items.empty()) fail(request.squad_file.string(), " holds no questions");
  if (data.articles.size() < 2)
    fail(request.squad_file.string(), " holds one article: calibration asks each question against another article too");
  const auto reader = model::Reader::load(model_dir_of(options));
  model::ReaderOptions ro;
  ro.device = resolve_device(options.device);
  ro.max_len = 384;
  ro.overlap = 128;
  ro.answers = 1;
  const std::size_t size = data.items.size();
  const auto picked = eval::spread_sample(size, request.questions);
  const std::size_t n = picked.size();
  // The paragraphs of each article, to pick a hard negative from.
  std::vector<std::vector<int>> article_paragraphs(data.articles.size());
  for (const auto& it : data.items) {
    auto& list = article_paragraphs[static_cast<std::size_t>(it.article)];
    if (std::find(list.begin(), list.end(), it.paragraph) == list.end()) list.push_back(it.paragraph);
  }
  enum Kind { own, same_article, other_article };
  std::vector<model::Question> questions;
  std::vector<Kind> kinds;
  for (const std::size_t i : picked) {
    const auto& it = data.items[i];
    questions.push_back(model::Question{it.question, {it.paragraph}});
    kinds.push_back(own);
    // Hard negative: another paragraph of the same article (the next one, cyclically).
    const auto& list = article_paragraphs[static_cast<std::size_t>(it.article)];
    if (list.size() > 1) {
      const auto at = std::find(list.begin(), list.end(), it.paragraph) - list.begin();
      questions.push_back(model::Question{it.question, {list[static_cast<std::size_t>(at + 1) % list.size()]}});
      kinds.push_back(same_article);
    }
    // Easy negative: a paragraph of another article, searched from half the set away.
    for (std::size_t step = 0; step < size; ++step) {
      const auto& other = data.items[(i + size / 2 + step) % size];
      if (other.article != it.article) {
        questions.push_back(model::Question{it.question, {other.paragraph}});
        kinds.push_back(other_article);
        break;
      }
    }
  }
  std::vector<std::string_view> contexts(data.paragraphs.begin(), data.paragraphs.end());
  const auto answers = reader.answer(questions, contexts, ro);
  std::vector<std::pair<double, bool>> all, against_same, against_other;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const double score = answers[i].empty() ? -1e9 : answers[i].front().score;
    all.emplace_back(score, kinds[i] == own);
    if (kinds[i] != other_article) against_same.emplace_back(score, kinds[i] == own);
    if (kinds[i] != same_article) against_other.emplace_back(score, kinds[i] == own);
  }
  CalibrationReport c;
  std::tie(c.threshold, c.accuracy) = best_threshold(all);
  c.accuracy_same_article = share_told_apart(against_same, c.threshold);
  c.accuracy_other_article = share_told_apart(against_other, c.threshold);
  c.questions = static_cast<int>(n);
  c.articles = eval::articles_of(data, picked);
  c.cases = static_cast<int>(all.size());
  c.device = device_name(ro.device);
  c.method = "each of " + std::to_string(n) + " of the " + std::to_string(size) + " questions of " +
             request.squad_file.filename().string() + " (spread evenly over the file, " + std::to_string(c.articles) +
             " articles)" +
             " against its own paragraph (answerable), the next paragraph of its article (a hard negative) and a "
             "paragraph of another article; the threshold on the best start+end logit that tells them apart best";
  return c;
}

}  // namespace ldqa
