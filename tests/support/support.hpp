// What every test binary shares: the run's random seed, temporary folders and files,
// and where the source tree's models are.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace ldqa::test {

// Seed from LDQA_TEST_SEED if set, else fresh from std::random_device (printed on failure).
uint64_t test_seed();

// With LDQA_TEST_TRACE set, writes `what` (a case about to run) to stderr, flushed: a case
// that never returns (a kernel that hangs) is then named by the last line.
void trace_case(const std::string& what);

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ldqa-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

#ifdef LDQA_SOURCE_DIR
// The source tree; LDQA_SOURCE_DIR in the environment overrides the configure-time path
// (test binaries carried to another machine).
inline const std::filesystem::path kSourceDir = [] {
  const char* env = std::getenv("LDQA_SOURCE_DIR");
  return std::filesystem::path(env && *env ? env : LDQA_SOURCE_DIR);
}();
inline const std::filesystem::path kModels = kSourceDir / "models";
#endif

}  // namespace ldqa::test
