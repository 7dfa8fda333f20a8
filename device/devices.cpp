// ldqa/device.hpp: names, and whether a CUDA device is usable (asked of the CUDA
// runtime once per process; a build without CUDA has none).
#include "ldqa/device.hpp"

#ifdef LDQA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include <algorithm>

#include "ldqa/error.hpp"

namespace ldqa {

Device parse_device(std::string_view name) {
  if (name == "auto") return Device::automatic;
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  fail("unknown device '", name, "' (auto, cpu or cuda)");
}

const char* device_name(Device device) {
  switch (device) {
    case Device::automatic:
      return "auto";
    case Device::cpu:
      return "cpu";
    case Device::cuda:
      return "cuda";
  }
  return "?";
}

bool device_available(Device device) {
  if (device != Device::cuda) return true;
#ifdef LDQA_HAVE_CUDA
  static const bool usable = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return usable;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef LDQA_HAVE_CUDA
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
#else
  return 0;
#endif
}

void select_cuda_device(int index) {
  const int count = cuda_device_count();
  if (index < 0 || index >= count) fail("no CUDA device ", index, " (this machine has ", count, ")");
#ifdef LDQA_HAVE_CUDA
  if (const cudaError_t rc = cudaSetDevice(index); rc != cudaSuccess)
    fail("cannot use CUDA device ", index, ": ", cudaGetErrorString(rc));
#endif
}

std::vector<DeviceId> parse_devices(std::string_view list) {
  std::vector<DeviceId> out;
  if (list == "all") {
    for (int i = 0; i < cuda_device_count(); ++i) out.push_back({Device::cuda, i});
    if (out.empty()) out.push_back({Device::cpu, 0});
    return out;
  }
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t end = std::min(list.find(',', at), list.size());
    const std::string_view item = list.substr(at, end - at);
    at = end + 1;
    if (item == "cpu") {
      out.push_back({Device::cpu, 0});
    } else if (item == "cuda" || item.substr(0, 5) == "cuda:") {
      int index = 0;
      if (item.size() > 5) {
        const std::string digits(item.substr(5));
        if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos)
          fail("devices: '", item, "' is not cuda:N");
        index = std::stoi(digits);
      }
      if (index >= cuda_device_count())
        fail("devices: ", item, " is not there (this machine has ", cuda_device_count(), " CUDA devices)");
      out.push_back({Device::cuda, index});
    } else {
      fail("devices: '", item, "' is not cpu, cuda or cuda:N (or 'all' alone)");
    }
  }
  return out;
}

std::string device_id_name(const DeviceId& id) {
  return id.device == Device::cuda ? "cuda:" + std::to_string(id.index) : device_name(id.device);
}

Device resolve_device(Device requested, std::string* note) {
  if (requested == Device::cpu) return Device::cpu;
  if (device_available(Device::cuda)) return Device::cuda;
  if (requested == Device::cuda && note)
    *note =
        "CUDA was requested but no usable CUDA device was found (or this build has no CUDA kernels); "
        "running on the CPU";
  return Device::cpu;
}

}  // namespace ldqa
