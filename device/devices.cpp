// ldqa/device.hpp: names, and whether a CUDA device is usable (asked of the CUDA
// runtime once per process; a build without CUDA has none).
#include "ldqa/device.hpp"

#ifdef LDQA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

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
