// What the GPU tests share: device buffers, fp16/bf16 conversions of the float64
// test cases, and uploads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "attention/attention.hpp"
#include "support/attention_grid.hpp"

namespace ldqa::test::gpu {

using attention::DType;

#define CUDA_OK(expr) REQUIRE((expr) == cudaSuccess)

// LDQA_GPU_SMALL=N, for runs under compute-sanitizer (racecheck runs a kernel hundreds
// of times slower): the grids keep one point in N and no length of 1000 or more.
// scripts/device-sanitize.sh sets it.
inline bool skipped_in_small_mode(const test::GridPoint& p) {
  static const int thinning = [] {
    const char* value = std::getenv("LDQA_GPU_SMALL");
    return value == nullptr ? 0 : std::max(1, std::atoi(value));
  }();
  return thinning > 0 && (p.n >= 1000 || p.index % thinning != 0);
}

// Saves the named environment variables and puts them back (or unsets them) when it
// goes: for tests that set the kernel choice.
class SavedEnvironment {
 public:
  explicit SavedEnvironment(std::initializer_list<const char*> names) {
    for (const char* name : names) {
      const char* value = std::getenv(name);
      saved_.push_back({name, value != nullptr, value != nullptr ? value : ""});
    }
  }
  ~SavedEnvironment() {
    for (const Saved& s : saved_) {
      if (s.had) {
        setenv(s.name, s.value.c_str(), 1);
      } else {
        unsetenv(s.name);
      }
    }
  }
  SavedEnvironment(const SavedEnvironment&) = delete;
  SavedEnvironment& operator=(const SavedEnvironment&) = delete;

 private:
  struct Saved {
    const char* name;
    bool had;
    std::string value;
  };
  std::vector<Saved> saved_;
};

// Whether the current device is compute capability 9.0 (the sm_90a units' machine code).
inline bool hopper_device() {
  int device = 0, major = 0, minor = 0;
  CUDA_OK(cudaGetDevice(&device));
  CUDA_OK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_OK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0;
}

// Sends this process's head-dim-64 attention, forward and backward, through Hopper's
// wgmma kernels while alive (LDQA_ATTENTION_KERNEL=wgmma, no backward override),
// restoring both variables after. `active` says whether the device takes that path for
// both passes (compute capability 9.0); where it cannot, there is nothing to test, and a
// 9.0 device that does not take it is an error the caller reports.
struct ForceWgmmaPath {
  SavedEnvironment saved{"LDQA_ATTENTION_KERNEL", "LDQA_ATTENTION_BACKWARD_KERNEL"};
  bool active = false;
  bool hopper = hopper_device();
  ForceWgmmaPath() {
    setenv("LDQA_ATTENTION_KERNEL", "wgmma", 1);
    unsetenv("LDQA_ATTENTION_BACKWARD_KERNEL");
    const attention::SparseAttention probe(64, 1, 64, attention::Pattern{4, nullptr, 0});
    active = std::string(probe.cuda_kernel_path(attention::AttentionPass::forward)) == "wgmma" &&
             std::string(probe.cuda_kernel_path(attention::AttentionPass::backward)) == "wgmma";
  }
  // Whether a case has a wgmma path to test: on a compute capability 9.0 device this
  // build must take it; elsewhere the case says so, and nothing may claim wgmma.
  bool applies() const {
    if (!hopper) {
      WARN("not a compute capability 9.0 device: no wgmma path to test");
      CHECK(!active);
      return false;
    }
    REQUIRE(active);
    return true;
  }
};

// A case's description with its dtype: what a test prints (trace, INFO) for one run.
inline std::string describe(const test::AttentionCase& c, DType dtype) {
  return c.describe() + (dtype == DType::f16 ? " f16" : " bf16");
}

inline double round_f16(double x) { return static_cast<double>(__half2float(__float2half_rn(static_cast<float>(x)))); }
inline double round_bf16(double x) {
  return static_cast<double>(__bfloat162float(__float2bfloat16_rn(static_cast<float>(x))));
}

struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(std::size_t bytes) {
    REQUIRE(cudaMalloc(&ptr, std::max<std::size_t>(bytes, 1)) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

inline std::vector<uint16_t> to_bits(const std::vector<double>& x, DType dtype) {
  std::vector<uint16_t> bits(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (dtype == DType::f16) {
      bits[i] = static_cast<__half_raw>(__float2half_rn(static_cast<float>(x[i]))).x;
    } else {
      bits[i] = static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(static_cast<float>(x[i]))).x;
    }
  }
  return bits;
}

inline std::vector<double> from_bits(const std::vector<uint16_t>& bits, DType dtype) {
  std::vector<double> x(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) {
    if (dtype == DType::f16) {
      __half_raw raw{};
      raw.x = bits[i];
      x[i] = __half2float(__half(raw));
    } else {
      __nv_bfloat16_raw raw{};
      raw.x = bits[i];
      x[i] = __bfloat162float(__nv_bfloat16(raw));
    }
  }
  return x;
}

template <typename X>
std::unique_ptr<DeviceBuffer> upload(const std::vector<X>& host) {
  if (host.empty()) return nullptr;
  auto buf = std::make_unique<DeviceBuffer>(host.size() * sizeof(X));
  REQUIRE(cudaMemcpy(buf->ptr, host.data(), host.size() * sizeof(X), cudaMemcpyHostToDevice) == cudaSuccess);
  return buf;
}

inline void* ptr(const std::unique_ptr<DeviceBuffer>& b) { return b ? b->ptr : nullptr; }

}  // namespace ldqa::test::gpu
