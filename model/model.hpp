// The ldqa reader on the CPU: loads a model folder (config.json, safetensors shards;
// docs/model-format.md) and runs the Longformer-style encoder in float32 with Eigen and
// the attention library. Errors: ldqa::Error naming the file and the tensor.
// An Encoder is immutable after load and may be shared by threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ldqa::model {

struct Config {
  int vocab_size = 0, hidden = 0, layers = 0, heads = 0, ffn = 0, window = 0;
  int rotary_dims = 0, type_vocab = 2, max_question_tokens = 64, max_len = 0;
  double rotary_base = 0, layer_norm_eps = 1e-5;
  int cls_id = 2, sep_id = 3, pad_id = 0;
  int head_dim() const { return hidden / heads; }
};

// One batch: token ids and types [batch, n] row-major; per sequence the number of real
// tokens and of global tokens (a prefix: [CLS] question [SEP]).
struct Batch {
  int batch = 0, n = 0;
  std::vector<int32_t> ids, types, valid_len, global_len;
};

struct Outputs {
  std::vector<float> start_logits, end_logits;  // [batch, n]
  // With keep_states: after the embeddings, after each layer, after the final norm; [batch, n, hidden] each.
  std::vector<std::vector<float>> states;
};

class Encoder {
 public:
  static Encoder load(const std::filesystem::path& model_dir);
  Encoder(Encoder&&) noexcept;
  Encoder& operator=(Encoder&&) noexcept;
  ~Encoder();

  const Config& config() const;
  Outputs forward_cpu(const Batch& batch, bool keep_states = false) const;

  struct Impl;

 private:
  explicit Encoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The best answer span of one window: among the n_best start and n_best end positions
// inside the context ([context_first, + context_count) of the packed sequence), end >=
// start and at most max_tokens long, the highest start + end logit (one scale across
// windows and documents). Positions are in the packed sequence.
struct Span {
  int first = 0, last = 0;
  float score = 0;
};
std::optional<Span> best_span(const float* start_logits, const float* end_logits, int context_first, int context_count,
                              int n_best = 20, int max_tokens = 30);

}  // namespace ldqa::model
