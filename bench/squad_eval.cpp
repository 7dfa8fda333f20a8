// SQuAD evaluation of the C++ reader, for machines without the full ldqa command (the
// GPU machine): the library call `ldqa eval` wraps, with predictions written out so
// they can be compared with train/'s PyTorch evaluation question by question.
//   ldqa_squad_eval --model models/ldqa-small --data dev-v1.1.json.gz --setting document
//                   [--device auto|cpu|cuda] [--limit N] [--predictions FILE]
//   ldqa_squad_eval --model models/ldqa-small --data dev-v1.1.json.gz --calibrate 300 > calibration.json
#include <cstdio>
#include <fstream>
#include <string>

#include "ldqa/json.hpp"
#include "model/model.hpp"

int main(int argc, char** argv) try {
  std::string model_dir = "models/ldqa-small", data, setting = "paragraph", device = "auto", predictions;
  int limit = 0, calibrate = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--model") {
      model_dir = value;
    } else if (key == "--data") {
      data = value;
    } else if (key == "--setting") {
      setting = value;
    } else if (key == "--device") {
      device = value;
    } else if (key == "--limit") {
      limit = std::stoi(value);
    } else if (key == "--calibrate") {
      calibrate = std::stoi(value);
    } else if (key == "--predictions") {
      predictions = value;
    } else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      return 2;
    }
  }
  if (calibrate > 0) {  // the no-answer threshold ldqa ask applies (models/NAME/calibration.json)
    const auto reader = ldqa::model::Reader::load(model_dir);
    ldqa::model::ReaderOptions options;
    options.device = ldqa::model::choose_device(ldqa::model::parse_device(device));
    const auto c = ldqa::model::calibrate_no_answer(reader, ldqa::model::load_squad(data), calibrate, options);
    std::printf(
        "{\"no_answer_threshold\": %.3f, \"accuracy\": %.4f, \"questions\": %d, \"method\": \"each question against "
        "its paragraph and against a paragraph of another article (SQuAD v1.1 dev, first %d questions); threshold "
        "on the best start+end logit that separates them best\"}\n",
        c.threshold, c.accuracy, c.questions, c.questions);
    return 0;
  }
  if (setting != "paragraph" && setting != "document") {
    std::fprintf(stderr, "--setting is paragraph or document\n");
    return 2;
  }
  const auto reader = ldqa::model::Reader::load(model_dir);
  const auto squad = ldqa::model::load_squad(data);
  ldqa::model::ReaderOptions options;
  options.device = ldqa::model::choose_device(ldqa::model::parse_device(device));
  const auto result = ldqa::model::evaluate_squad(
      reader, squad,
      setting == "paragraph" ? ldqa::model::SquadSetting::paragraph : ldqa::model::SquadSetting::document, options,
      limit);
  std::printf(
      "{\"setting\": \"%s\", \"device\": \"%s\", \"questions\": %d, \"em\": %.3f, \"f1\": %.3f, \"seconds\": %.2f}\n",
      setting.c_str(), ldqa::model::device_name(options.device), result.questions, result.em, result.f1,
      result.seconds);
  if (!predictions.empty()) {
    std::ofstream out(predictions);
    out << "{";
    bool first = true;
    for (const auto& [id, text] : result.predictions) {
      out << (first ? "" : ",\n") << ldqa::json_quote(id) << ": " << ldqa::json_quote(text);
      first = false;
    }
    out << "}\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ldqa_squad_eval: %s\n", e.what());
  return 1;
}
