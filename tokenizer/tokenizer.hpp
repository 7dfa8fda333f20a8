// ldqa's tokenizer: SentencePiece ids with every token's byte span in the original text,
// and the question + context packing the model was trained with (docs/model-format.md):
//   [CLS] question (cut to max_question_tokens) [SEP] context window [SEP]
// types 0 for [CLS] question [SEP] and 1 after; global positions = that prefix. A
// context longer than one window is cut into windows `overlap` tokens apart from each
// other's ends, each repeating the question.
//
// Errors: ldqa::Error (a missing or unreadable model names the file). Any input bytes
// are accepted (invalid UTF-8, NULs): spans always lie inside the input, in order.
// Thread-safety: a loaded Tokenizer is immutable and may be shared by threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ldqa::tokenizer {

struct Token {
  int32_t id = 0;
  // [byte_start, byte_end) in the encoded text. Byte-fallback pieces of one character:
  // the last piece carries the character's span, the others are empty at its start.
  int64_t byte_start = 0, byte_end = 0;
};

class Tokenizer {
 public:
  static Tokenizer load(const std::filesystem::path& model_file);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<Token> encode(std::string_view text) const;
  int32_t piece_id(std::string_view piece) const;  // throws if the piece is unknown
  int32_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct PackingConfig {
  int32_t cls_id = 2, sep_id = 3;
  int max_question_tokens = 64;
  int max_len = 4096;  // tokens per window, specials included
  int overlap = 512;   // context tokens shared by consecutive windows (at most half a window)
};

struct Window {
  std::vector<int32_t> ids;
  std::vector<int32_t> types;
  int global_len = 0;          // [CLS] question [SEP]
  int context_first = 0;       // position of the first context token in ids
  int64_t context_offset = 0;  // index of that token in the whole context's tokens
  int context_count = 0;
};

// Windows over the whole context (at least one, even for an empty context).
std::vector<Window> pack(const std::vector<Token>& question, const std::vector<Token>& context,
                         const PackingConfig& config);

}  // namespace ldqa::tokenizer
