// The bench tools' one argument parser: `--key value` pairs, each key bound to a
// variable (text, integer, real, flag 0/1, or a comma-separated list of integers).
// Unknown keys, missing or malformed values: the usage and exit code 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace ldqa::bench {

class Args {
 public:
  explicit Args(std::string usage) : usage_(std::move(usage)) {}

  template <typename T>
  Args& add(std::string key, T* target, std::string help) {
    options_.push_back({std::move(key), target, std::move(help)});
    return *this;
  }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; i += 2) {
      const std::string key = argv[i];
      const Option* option = nullptr;
      for (const auto& o : options_)
        if (o.key == key) option = &o;
      if (!option) die("unknown option " + key);
      if (i + 1 >= argc) die(key + " needs a value");
      const std::string value = argv[i + 1];
      try {
        std::visit([&](auto* t) { assign(t, value); }, option->target);
      } catch (const std::exception&) {
        die("bad value for " + key + ": " + value);
      }
    }
  }

 private:
  using Target = std::variant<std::string*, int*, double*, bool*, std::vector<int>*>;
  struct Option {
    std::string key;
    Target target;
    std::string help;
  };

  static void assign(std::string* t, const std::string& v) { *t = v; }
  static void assign(int* t, const std::string& v) { *t = std::stoi(v); }
  static void assign(double* t, const std::string& v) { *t = std::stod(v); }
  static void assign(bool* t, const std::string& v) { *t = v == "1" || v == "true"; }
  static void assign(std::vector<int>* t, const std::string& v) {
    t->clear();
    std::stringstream in(v);
    for (std::string item; std::getline(in, item, ',');) t->push_back(std::stoi(item));
  }

  [[noreturn]] void die(const std::string& message) const {
    std::fprintf(stderr, "%s\nusage: %s\n", message.c_str(), usage_.c_str());
    for (const auto& o : options_) std::fprintf(stderr, "  %-12s %s\n", o.key.c_str(), o.help.c_str());
    std::exit(2);
  }

  std::string usage_;
  std::vector<Option> options_;
};

}  // namespace ldqa::bench
