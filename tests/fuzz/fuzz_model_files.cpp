// Fuzz target: any bytes as a model's config.json (first byte even) or a safetensors
// shard (odd): accepted with every value in range, or refused with ldqa::Error.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "ldqa/error.hpp"
#include "model/weights.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      std::vector<std::string> files;
      const auto c = ldqa::model::detail::parse_config(bytes, "config.json", &files);
      if (c.hidden % c.heads != 0 || c.window < 1 || !(c.layer_norm_eps > 0) || files.empty()) std::abort();
      for (const auto& f : files)
        if (f.find('/') != std::string::npos) std::abort();
    } else {
      // A shard is read through a memory map, as from disk.
      struct Fd {
        int fd;
        ~Fd() {
          if (fd >= 0) close(fd);
        }
      } file{memfd_create("shard", 0)};
      if (file.fd < 0) return 0;
      if (write(file.fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size())) {
        ldqa::model::detail::Shards shards;
        shards.add("/proc/self/fd/" + std::to_string(file.fd));
      }
    }
  } catch (const ldqa::Error&) {
  }
  return 0;
}
