// Evaluation of ldqa's reader on SQuAD-format files (eval/), and the calibration of its
// "no answer found" threshold. `ldqa eval` and `ldqa calibrate` are these calls.
//
// Settings (official SQuAD v1.1 EM / token F1, max over the references):
//   paragraph  each question against its paragraph (windows of 384 tokens);
//   document   each question against its whole article (the model's windows);
//   corpus     the articles indexed as files, each question asked through retrieval
//              and the reader exactly as `ldqa ask` does.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ldqa/ldqa.hpp"

namespace ldqa {

struct EvalRequest {
  std::filesystem::path squad_file;  // .json or .json.gz
  std::string setting = "document";
  int limit = 0;                  // > 0: that many questions spread evenly over the file (not the first)
  std::filesystem::path workdir;  // corpus: where the articles and their index go (empty: a temp folder)
  AskOptions ask;                 // corpus: retrieval and reader settings
};

struct EvalReport {
  std::string setting, device;
  int questions = 0;
  int articles = 0;      // how many articles the questions asked come from
  int unanswerable = 0;  // questions of the file without a reference answer, left out
  double em = 0, f1 = 0, seconds = 0;
  double p50_ms = 0, p95_ms = 0;  // per question (corpus); mean per question otherwise
  double retrieval_p50_ms = 0, reader_p50_ms = 0, reader_tokens_mean = 0;  // corpus: where the time goes
  std::vector<std::pair<std::string, std::string>> predictions;            // id, answer
};

// options.db is ignored (corpus builds its own index); progress(done, total) per question (corpus).
EvalReport evaluate_squad(const EngineOptions& options, const EvalRequest& request,
                          const std::function<void(int, int)>& progress = {});

// The no-answer threshold `ldqa ask` applies (MODEL/calibration.json): `questions`
// questions spread evenly over a SQuAD-format file (all if it holds fewer), each asked against its own paragraph
// (answerable), against another paragraph of its own article (a hard negative: same
// topic, same names) and against a paragraph of another article; the threshold on the
// best answer's score that tells the answerable cases from the others best.
struct CalibrationRequest {
  std::filesystem::path squad_file;
  int questions = 400;
};

struct CalibrationReport {
  double threshold = 0, accuracy = 0;  // accuracy over every case
  // The share told apart when the negatives are only those of one kind.
  double accuracy_same_article = 0, accuracy_other_article = 0;
  int questions = 0, articles = 0, cases = 0;
  std::string device, method;
  std::string json() const;  // what calibration.json holds
};

CalibrationReport calibrate(const EngineOptions& options, const CalibrationRequest& request);

}  // namespace ldqa
