// Embedding ldqa: index a folder into a fresh database and answer a question with its
// source, through the installed library and the bundled model.
//   embed DOCS_DIR DB_PATH "question"
#include <iostream>

#include "ldqa/ldqa.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: embed DOCS_DIR DB_PATH \"question\"\n";
    return 2;
  }
  try {
    ldqa::EngineOptions options;
    options.db = argv[2];
    ldqa::Engine engine = ldqa::Engine::open(options);
    ldqa::IndexRequest request;
    request.paths = {argv[1]};
    const auto report = engine.index(request, [](const ldqa::IndexProgress& p) {
      std::cerr << "\rindexed " << p.files_done << "/" << p.files_total << std::flush;
    });
    std::cerr << "\n" << report.indexed << " documents indexed\n";
    const auto result = engine.ask(argv[3]);
    if (result.answers.empty()) {
      std::cout << "no answer found\n";
      return 1;
    }
    for (const auto& a : result.answers)
      std::cout << a.text << "\t" << a.source.path << ":" << a.source.char_start << "-" << a.source.char_end
                << (a.source.page ? " page " + std::to_string(a.source.page) : "") << "\n";
    return 0;
  } catch (const ldqa::Error& e) {
    std::cerr << "embed: " << e.what() << "\n";
    return 3;
  }
}
