// Fuzz target: any bytes -> the tokenizer wrapper's ids and byte spans. Ids are in the
// vocabulary, spans inside the input and in order.
#include <cstdint>
#include <cstdlib>

#include "ldqa/error.hpp"
#include "tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizer = ldqa::tokenizer::Tokenizer::load(LDQA_TOKENIZER_MODEL);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  int64_t last = 0;
  for (const auto& t : tokenizer.encode(text)) {
    if (t.id < 0 || t.id >= tokenizer.vocab_size()) std::abort();
    if (t.byte_start < last || t.byte_end < t.byte_start || t.byte_end > static_cast<int64_t>(size)) std::abort();
    last = t.byte_start;
  }
  return 0;
}
