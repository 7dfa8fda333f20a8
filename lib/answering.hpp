// Internal to the library: answering one question (retrieval, contexts, the reader,
// answers mapped back to their documents) and spreading many over devices. Engine::ask,
// Engine::ask_many and the evaluation (eval/) share them.
#pragma once

#include <atomic>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "data/retrieval.hpp"
#include "data/store.hpp"
#include "ldqa/error.hpp"
#include "ldqa/ldqa.hpp"
#include "model/model.hpp"

namespace ldqa::detail {

struct AskContext {
  data::Store& store;
  data::Retriever& retriever;
  const model::Reader& reader;
  Device device;     // cpu or cuda (resolved)
  double threshold;  // answers below it are withheld
};

void check_question(std::string_view question, const AskOptions& options);

// The reader of a worker on one device: CPU workers share one (immutable, thread-safe);
// a GPU worker loads its own copy of the weights, on its device.
struct DeviceReader {
  std::unique_ptr<model::Reader> own;
  const model::Reader* reader = nullptr;
  DeviceReader(const DeviceId& id, const model::Reader& shared, const std::filesystem::path& model_dir) {
    if (id.device == Device::cuda) {
      own = std::make_unique<model::Reader>(model::Reader::load(model_dir));
      reader = own.get();
    } else {
      reader = &shared;
    }
  }
};
AskResult answer_question(const AskContext& context, std::string_view question, const AskOptions& options);

// Jobs 0..count-1 over one worker thread per device, each taking the next job as it
// frees up. On its thread a worker first selects its CUDA device, then builds its state
// with setup(device) (a reader, a store connection); work(state, job) then runs there.
// The first error stops the dealing and is rethrown here once every worker has ended.
template <typename State>
void run_on_devices(const std::vector<DeviceId>& devices, std::size_t count,
                    const std::function<State(const DeviceId&)>& setup,
                    const std::function<void(State&, std::size_t)>& work, const std::atomic<bool>* cancel = nullptr) {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  std::vector<std::thread> workers;
  for (const DeviceId& id : devices)
    workers.emplace_back([&, id] {
      try {
        if (id.device == Device::cuda) select_cuda_device(id.index);
        State state = setup(id);
        for (std::size_t job; !failed && !(cancel && cancel->load()) && (job = next++) < count;) work(state, job);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed = true;
      }
    });
  for (auto& w : workers) w.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace ldqa::detail
