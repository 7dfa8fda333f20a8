// Questions over contexts: tokenize each context once, cut windows (the question in
// each as global tokens), run windows of every question through shared forward passes,
// decode spans per window and rank them per question on one scale (start + end logit).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "ldqa/error.hpp"
#include "model/model.hpp"

namespace ldqa::model {

namespace {

bool is_space(unsigned char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

struct WindowJob {
  int question = 0, context = 0;
  tokenizer::Window window;
};

}  // namespace

Reader Reader::load(const std::filesystem::path& model_dir) {
  Reader r;
  r.encoder_ = std::make_shared<const Encoder>(Encoder::load(model_dir));
  const auto spm = model_dir / "tokenizer.model";
  if (!std::filesystem::exists(spm)) fail("model tokenizer not found: ", spm.string());
  r.tokenizer_ = std::make_shared<const tokenizer::Tokenizer>(tokenizer::Tokenizer::load(spm));
  if (r.tokenizer_->vocab_size() != r.encoder_->config().vocab_size)
    fail(spm.string(), " has ", r.tokenizer_->vocab_size(), " pieces, the model's config says ",
         r.encoder_->config().vocab_size);
  return r;
}

std::vector<std::vector<Answer>> Reader::answer(const std::vector<Question>& questions,
                                                const std::vector<std::string_view>& contexts,
                                                const ReaderOptions& options) const {
  const Config& c = encoder_->config();
  const Device device = resolve_device(options.device);
  tokenizer::PackingConfig packing;
  packing.cls_id = c.cls_id;
  packing.sep_id = c.sep_id;
  packing.max_question_tokens = c.max_question_tokens;
  packing.max_len = options.max_len > 0 ? options.max_len : c.max_len;
  packing.overlap = options.overlap >= 0 ? options.overlap : c.window_overlap;
  packing.overlap = std::min(packing.overlap, (packing.max_len - c.max_question_tokens - 3) / 2);
  if (packing.max_len < c.max_question_tokens + 8)
    fail("reader: windows of ", packing.max_len, " tokens cannot hold a question of up to ", c.max_question_tokens);

  // Tokenize what is needed, once.
  std::vector<std::optional<std::vector<tokenizer::Token>>> context_tokens(contexts.size());
  std::vector<WindowJob> jobs;
  for (std::size_t qi = 0; qi < questions.size(); ++qi) {
    const Question& q = questions[qi];
    const auto q_tokens = tokenizer_->encode(q.text);
    if (q_tokens.empty()) fail("reader: question ", qi + 1, " is empty");
    for (int ci : q.contexts) {
      if (ci < 0 || static_cast<std::size_t>(ci) >= contexts.size())
        fail("reader: question ", qi + 1, " names context ", ci, " of ", contexts.size());
      auto& toks = context_tokens[static_cast<std::size_t>(ci)];
      if (!toks) toks = tokenizer_->encode(contexts[static_cast<std::size_t>(ci)]);
      if (toks->empty()) continue;
      for (auto& w : tokenizer::pack(q_tokens, *toks, packing))
        jobs.push_back(WindowJob{static_cast<int>(qi), ci, std::move(w)});
    }
  }
  // Longest first, so each batch pads little.
  std::vector<std::size_t> order(jobs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return jobs[a].window.ids.size() > jobs[b].window.ids.size(); });
  const int64_t batch_tokens =
      options.batch_tokens > 0 ? options.batch_tokens : (device == Device::cuda ? 131072 : 16384);
  const int per_window = std::max(1, options.answers);

  std::vector<std::vector<Answer>> candidates(questions.size());
  for (std::size_t at = 0; at < order.size();) {
    const int longest = static_cast<int>(jobs[order[at]].window.ids.size());
    // CUDA caches one attention plan per length: round lengths to 64 to keep few.
    const int n = device == Device::cuda ? (longest + 63) / 64 * 64 : longest;
    const auto rows = static_cast<std::size_t>(std::max<int64_t>(1, batch_tokens / n));
    const std::size_t end = std::min(order.size(), at + rows);
    Batch batch;
    batch.batch = static_cast<int>(end - at);
    batch.n = n;
    batch.ids.assign(static_cast<std::size_t>(batch.batch) * n, c.pad_id);
    batch.types.assign(batch.ids.size(), 0);
    for (std::size_t k = at; k < end; ++k) {
      const auto& w = jobs[order[k]].window;
      const std::size_t row = (k - at) * static_cast<std::size_t>(n);
      std::copy(w.ids.begin(), w.ids.end(), batch.ids.begin() + static_cast<std::ptrdiff_t>(row));
      std::copy(w.types.begin(), w.types.end(), batch.types.begin() + static_cast<std::ptrdiff_t>(row));
      batch.valid_len.push_back(static_cast<int32_t>(w.ids.size()));
      batch.global_len.push_back(w.global_len);
    }
    const Outputs out = encoder_->forward(batch, device);
    // A model with broken weights or config answers nonsense with confidence: refuse it.
    for (std::size_t k = at; k < end; ++k) {
      const std::size_t row = (k - at) * static_cast<std::size_t>(n);
      const auto len = static_cast<std::size_t>(batch.valid_len[k - at]);
      for (std::size_t p = 0; p < len; ++p)
        if (!std::isfinite(out.start_logits[row + p]) || !std::isfinite(out.end_logits[row + p]))
          fail("the model in ", encoder_->directory().string(),
               " produced a non-finite score (NaN or infinity): its weights or config are broken");
    }
    for (std::size_t k = at; k < end; ++k) {
      const WindowJob& job = jobs[order[k]];
      const auto& w = job.window;
      const float* s = out.start_logits.data() + (k - at) * static_cast<std::size_t>(n);
      const float* e = out.end_logits.data() + (k - at) * static_cast<std::size_t>(n);
      const auto& toks = *context_tokens[static_cast<std::size_t>(job.context)];
      const std::string_view text = contexts[static_cast<std::size_t>(job.context)];
      for (const Span& span :
           top_spans(s, e, w.context_first, w.context_count, options.n_best, options.max_answer_tokens, per_window)) {
        const auto first = static_cast<std::size_t>(w.context_offset + (span.first - w.context_first));
        const auto last = static_cast<std::size_t>(w.context_offset + (span.last - w.context_first));
        int64_t b0 = toks[first].byte_start, b1 = toks[last].byte_end;
        while (b0 < b1 && is_space(static_cast<unsigned char>(text[static_cast<std::size_t>(b0)]))) ++b0;
        while (b1 > b0 && is_space(static_cast<unsigned char>(text[static_cast<std::size_t>(b1 - 1)]))) --b1;
        if (b0 >= b1) continue;
        candidates[static_cast<std::size_t>(job.question)].push_back(
            Answer{job.context, b0, b1, span.score, s[0] + e[0]});
      }
    }
    at = end;
  }
  std::vector<std::vector<Answer>> result(questions.size());
  for (std::size_t qi = 0; qi < questions.size(); ++qi) {
    auto& cand = candidates[qi];
    std::stable_sort(cand.begin(), cand.end(), [](const Answer& a, const Answer& b) { return a.score > b.score; });
    for (const Answer& a : cand) {
      if (static_cast<int>(result[qi].size()) >= std::max(1, options.answers)) break;
      const bool overlaps = std::any_of(result[qi].begin(), result[qi].end(), [&](const Answer& kept) {
        return kept.context == a.context && a.byte_start < kept.byte_end && kept.byte_start < a.byte_end;
      });
      if (!overlaps) result[qi].push_back(a);
    }
  }
  return result;
}

}  // namespace ldqa::model
