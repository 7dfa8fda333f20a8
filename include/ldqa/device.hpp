// Where the reader runs: one Device type for the library, the command and the tools.
// Names are parsed once, at the edge (a flag, an option); everything below takes a
// Device.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace ldqa
