// The evaluation module's face (the library's public side is ldqa/eval.hpp): SQuAD
// v1.1-format files and the official metric (the normalisation of the SQuAD v1.1
// evaluate script: lower case, punctuation and articles removed, whitespace folded;
// EM and token F1, max over the references).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ldqa::eval {

std::string squad_normalize(std::string_view answer);
double squad_exact(std::string_view prediction, const std::vector<std::string>& references);
double squad_f1(std::string_view prediction, const std::vector<std::string>& references);

struct SquadData {
  struct Item {
    std::string id, question;
    int paragraph = 0, article = 0;
    std::vector<std::string> answers;
  };
  std::vector<std::string> paragraphs;
  std::vector<std::string> articles;  // an article's paragraphs joined with blank lines
  std::vector<std::string> article_titles;
  std::vector<Item> items;
  int unanswerable = 0;  // questions without a reference answer, left out
};
// Any SQuAD-format file a user is likely to have: ids strings or numbers (or none),
// titles optional, unanswerable questions left out. What is malformed is named by its
// JSON path (data[3].paragraphs[0].qas[5] has no "question").
SquadData load_squad(const std::filesystem::path& file);  // .json or .json.gz
SquadData parse_squad(std::string_view json, const std::string& name);

// `wanted` of `total` questions spread evenly over the file, in order: the middle one of
// each of `wanted` equal stretches. A file's questions come article by article, so the
// first N would all be about the first article (SQuAD dev's first 50 are). wanted <= 0 or
// >= total: every index.
std::vector<std::size_t> spread_sample(std::size_t total, int wanted);
// How many different articles the questions at `picked` come from.
int articles_of(const SquadData& data, const std::vector<std::size_t>& picked);

}  // namespace ldqa::eval
