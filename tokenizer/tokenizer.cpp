#include "tokenizer/tokenizer.hpp"

#include <sentencepiece_processor.h>

#include <algorithm>

#include "ldqa/error.hpp"

namespace ldqa::tokenizer {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& model_file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_file, ec)) fail("tokenizer model not found: ", model_file.string());
  auto impl = std::make_unique<Impl>();
  const auto status = impl->processor.Load(model_file.string());
  if (!status.ok()) fail("cannot load tokenizer model ", model_file.string(), ": ", status.ToString());
  return Tokenizer(std::move(impl));
}

std::vector<Token> Tokenizer::encode(std::string_view text) const {
  const auto proto = impl_->processor.EncodeAsImmutableProto(text);
  std::vector<Token> out;
  out.reserve(proto.pieces_size());
  const auto size = static_cast<int64_t>(text.size());
  int64_t last = 0;
  for (const auto& piece : proto.pieces()) {
    Token t;
    t.id = static_cast<int32_t>(piece.id());
    // Clamp defensively: spans must stay inside the input and in order, whatever it holds.
    t.byte_start = std::clamp<int64_t>(piece.begin(), last, size);
    t.byte_end = std::clamp<int64_t>(piece.end(), t.byte_start, size);
    last = t.byte_start;
    out.push_back(t);
  }
  return out;
}

int32_t Tokenizer::piece_id(std::string_view piece) const {
  const int id = impl_->processor.PieceToId(piece);
  if (id == impl_->processor.unk_id() && piece != impl_->processor.IdToPiece(id))
    fail("tokenizer has no piece '", piece, "'");
  return id;
}

int32_t Tokenizer::vocab_size() const { return impl_->processor.GetPieceSize(); }

std::vector<Window> pack(const std::vector<Token>& question, const std::vector<Token>& context,
                         const PackingConfig& config) {
  const int q = std::min<int>(static_cast<int>(question.size()), config.max_question_tokens);
  const int budget = config.max_len - q - 3;
  if (budget < 1)
    fail("packing: max_len ", config.max_len, " leaves no room for context after ", q, " question tokens");
  const int overlap = std::clamp(config.overlap, 0, budget / 2);
  const int64_t n = static_cast<int64_t>(context.size());
  // Same starts as training: every (budget - overlap) tokens; the last window ends at the end.
  std::vector<int64_t> starts;
  if (n <= budget) {
    starts.push_back(0);
  } else {
    for (int64_t s = 0; s < n - budget; s += budget - overlap) starts.push_back(s);
    starts.push_back(n - budget);
  }
  std::vector<Window> out;
  out.reserve(starts.size());
  for (int64_t start : starts) {
    Window w;
    w.global_len = q + 2;
    w.context_first = w.global_len;
    w.context_offset = start;
    w.context_count = static_cast<int>(std::min<int64_t>(budget, n - start));
    w.ids.reserve(static_cast<std::size_t>(w.global_len + w.context_count + 1));
    w.ids.push_back(config.cls_id);
    for (int i = 0; i < q; ++i) w.ids.push_back(question[static_cast<std::size_t>(i)].id);
    w.ids.push_back(config.sep_id);
    for (int i = 0; i < w.context_count; ++i) w.ids.push_back(context[static_cast<std::size_t>(start + i)].id);
    w.ids.push_back(config.sep_id);
    w.types.assign(w.ids.size(), 1);
    std::fill(w.types.begin(), w.types.begin() + w.global_len, 0);
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace ldqa::tokenizer
