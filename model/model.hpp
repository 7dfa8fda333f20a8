// The ldqa reader model: loads a model folder (config.json, safetensors shards,
// tokenizer.model; docs/model-format.md), runs the Longformer-style encoder on the CPU
// (float32, Eigen) or CUDA (bf16 cuBLAS GEMMs, ldqa's sparse attention, fused kernels),
// and turns start/end logits into answer spans over any number of long contexts.
//
// Errors: ldqa::Error, naming the file and the tensor for anything wrong in a model.
// Thread-safety: Encoder and Reader are immutable after load and may be shared by
// threads; CUDA forward passes of one Encoder are serialised (one set of workspaces).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ldqa/device.hpp"
#include "tokenizer/tokenizer.hpp"

namespace ldqa::model {

struct Config {
  int vocab_size = 0, hidden = 0, layers = 0, heads = 0, ffn = 0, window = 0;
  int rotary_dims = 0, type_vocab = 2, max_question_tokens = 64, max_len = 0;
  double rotary_base = 0, layer_norm_eps = 1e-5;
  int cls_id = 2, sep_id = 3, pad_id = 0;
  int window_overlap = 512;  // packing.window_overlap_tokens
  int head_dim() const { return hidden / heads; }
};

using ldqa::Device;  // ldqa/device.hpp

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

// Threads of the CPU forward pass (OpenMP, process-wide); 0 leaves OpenMP's default
// (all cores).
void set_cpu_threads(int threads);

class Encoder {
 public:
  static Encoder load(const std::filesystem::path& model_dir);
  Encoder(Encoder&&) noexcept;
  Encoder& operator=(Encoder&&) noexcept;
  ~Encoder();

  const Config& config() const;
  const std::filesystem::path& directory() const;
  // device: cpu or cuda (resolve `automatic` with resolve_device first).
  Outputs forward(const Batch& batch, Device device, bool keep_states = false) const;
  Outputs forward_cpu(const Batch& batch, bool keep_states = false) const;
  // bf16 weights and activations, fp32 accumulation, residual stream and logits.
  Outputs forward_cuda(const Batch& batch, bool keep_states = false) const;
  // Peak GPU memory the last CUDA forward pass held in its workspaces (bytes).
  std::size_t cuda_workspace_bytes() const;
  // Sequence lengths whose attention plan the CUDA path keeps (bounded: least recently
  // used dropped).
  std::size_t cuda_cached_lengths() const;
  // Forward passes held as CUDA graphs. A shape (batch, padded length, global capacity
  // rounded to 16) seen a second time is captured and from then on replayed as one
  // launch; passes that keep states are never captured. LDQA_CUDA_GRAPHS=0 turns capture
  // off for the process (read when the encoder first runs on CUDA).
  std::size_t cuda_graphs() const;

  struct Impl;

 private:
  explicit Encoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Answer spans of one window, best first: among the n_best start and n_best end
// positions inside the context ([context_first, + context_count) of the packed
// sequence), end >= start and at most max_tokens long, the highest start + end logit
// (one scale across windows and documents). Positions are in the packed sequence.
struct Span {
  int first = 0, last = 0;
  float score = 0;
};
std::vector<Span> top_spans(const float* start_logits, const float* end_logits, int context_first, int context_count,
                            int n_best, int max_tokens, int count);
std::optional<Span> best_span(const float* start_logits, const float* end_logits, int context_first, int context_count,
                              int n_best = 20, int max_tokens = 30);

struct ReaderOptions {
  Device device = Device::automatic;
  int max_len = 0;   // tokens per window; 0: the model's max_len
  int overlap = -1;  // context tokens shared by consecutive windows; -1: the model's
  int n_best = 20;   // start/end candidates per window
  int max_answer_tokens = 30;
  int answers = 5;           // per question
  int64_t batch_tokens = 0;  // padded tokens per forward pass; 0: 16k on CPU, 128k on CUDA
};

struct Answer {
  int context = 0;                       // index into the contexts passed to answer()
  int64_t byte_start = 0, byte_end = 0;  // into that context, whitespace trimmed
  float score = 0;                       // start + end logit
  float null_score = 0;                  // the window's [CLS] start + end logit
};

struct Question {
  std::string text;
  std::vector<int> contexts;  // indices into the shared contexts
};

class Reader {
 public:
  // model_dir holds config.json, the weights and tokenizer.model.
  static Reader load(const std::filesystem::path& model_dir);
  const Encoder& encoder() const { return *encoder_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }

  // The best answers of each question over every window of each of its contexts,
  // best first, non-overlapping within a context. Contexts are tokenized once each;
  // windows of all questions share forward passes. An empty question is an error; a
  // question whose contexts are empty gets no answers.
  std::vector<std::vector<Answer>> answer(const std::vector<Question>& questions,
                                          const std::vector<std::string_view>& contexts,
                                          const ReaderOptions& options) const;

 private:
  std::shared_ptr<const Encoder> encoder_;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
};

}  // namespace ldqa::model
