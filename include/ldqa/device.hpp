// Where the reader runs: one Device type for the library, the command and the tools.
// Names are parsed once, at the edge (a flag, an option); everything below takes a
// Device.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ldqa {

enum class Device { automatic, cpu, cuda };

// "auto", "cpu" or "cuda"; anything else throws ldqa::Error naming it.
Device parse_device(std::string_view name);
const char* device_name(Device device);
// cpu: always; cuda: this build has the CUDA kernels and a CUDA device is usable;
// automatic: true.
bool device_available(Device device);
// The device a request runs on: CUDA when asked for (or automatic) and available,
// else the CPU. When CUDA was asked for explicitly but is unavailable, `note` says why.
Device resolve_device(Device requested, std::string* note = nullptr);

// One of several devices a batch of questions is spread over: the CPU, or one CUDA
// device by its index.
struct DeviceId {
  Device device = Device::cpu;
  int index = 0;  // CUDA device ordinal
  // Spelled out: CUDA sources include this header as C++17.
  bool operator==(const DeviceId& other) const { return device == other.device && index == other.index; }
};
// "all" (every CUDA device, or the CPU when there is none), or a comma-separated list of
// "cpu", "cuda" (device 0) and "cuda:N"; a device may repeat ("cpu,cpu": two CPU
// workers). Throws naming a bad item or a CUDA device that is not there.
std::vector<DeviceId> parse_devices(std::string_view list);
std::string device_id_name(const DeviceId& id);  // "cpu", "cuda:1"
int cuda_device_count();                         // 0 without CUDA
// The calling thread's CUDA device from now on (throws without CUDA, or for a bad index).
void select_cuda_device(int index);

}  // namespace ldqa
