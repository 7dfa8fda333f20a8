// Internal to model/: what the encoder backends share. The weights stay in their
// memory maps; each backend converts them once, on first use, into what it computes
// with (float32 matrices on the CPU, bf16 buffers on the GPU).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/model.hpp"
#include "model/weights.hpp"

namespace ldqa::model {

namespace detail {
struct CpuWeights;
struct GpuState;

// Tensor names and shapes the config implies (docs/model-format.md).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> expected_tensors(const Config& config);

// Rotary cos/sin table [n, rotary_dims / 2], computed in double as in training.
void rotary_table(const Config& config, int n, std::vector<float>& cos_table, std::vector<float>& sin_table);

void check_batch(const Config& config, const Batch& batch);
}  // namespace detail

struct Encoder::Impl {
  Config config;
  std::filesystem::path dir;
  detail::Shards shards;
  std::once_flag cpu_once;
  std::shared_ptr<const detail::CpuWeights> cpu;
  std::mutex gpu_mutex;  // one forward at a time per GPU state (shared workspaces)
  std::shared_ptr<detail::GpuState> gpu;
};

}  // namespace ldqa::model
