"""Tokenisation with character spans, question + context packing, windows, SQuAD
features, span decoding and the official SQuAD v1.1 metrics. The packing here is the
contract the C++ tokenizer follows (docs/model-format.md):

    [CLS] question (<= 64 tokens) [SEP] context window [SEP]
    type 0 for [CLS] question [SEP], type 1 after; global = [CLS] question [SEP].
"""
import collections
import gzip
import json
import re
import string

import numpy as np


def load_squad(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)["data"]


def spread_sample(total, wanted):
    """`wanted` of `total` indices spread evenly, in order: the middle one of each of
    `wanted` equal stretches (wanted <= 0 or >= total: all). The same indices as the C++
    eval::spread_sample, so that `--limit N` here and in `ldqa eval` ask the same
    questions; the first N would all be about the first article."""
    n = min(total, wanted) if wanted > 0 else total
    return [(2 * k + 1) * total // (2 * n) for k in range(n)]


class Tokenizer:
    def __init__(self, model_path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor()
        self.sp.load(model_path)
        probe = self._proto("\u00e9")
        self.byte_offsets = probe.pieces[-1].end == 2

    def ids(self, text):
        return self.sp.encode_as_ids(text)

    def _proto(self, text):
        try:  # sentencepiece 0.1.9x
            return self.sp.encode_as_immutable_proto(text)
        except ValueError:  # 0.2.x dropped it for the protobuf message
            return self.sp.encode(text, out_type="proto")

    def with_spans(self, text):
        """ids and, per token, [start, end) character offsets into `text`. The C++
        library reports byte offsets; this Python wrapper reports code points (checked
        once, below). Byte-fallback pieces of one character: the last carries its span."""
        proto = self._proto(text)
        ids = np.fromiter((p.id for p in proto.pieces), dtype=np.int32)
        starts = np.fromiter((p.begin for p in proto.pieces), dtype=np.int64)
        ends = np.fromiter((p.end for p in proto.pieces), dtype=np.int64)
        if self.byte_offsets:
            raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            char_of_byte = np.concatenate([np.cumsum((raw & 0xC0) != 0x80) - 1, [len(text)]])
            starts, ends = char_of_byte[starts], np.where(ends > starts, char_of_byte[ends - 1] + 1, char_of_byte[starts])
        return ids, starts, ends


def windows(n_context, budget, stride):
    """Start offsets of context windows of `budget` tokens, `stride` apart, covering all."""
    if n_context <= budget:
        return [0]
    starts = list(range(0, n_context - budget, stride))
    starts.append(n_context - budget)
    return starts


def pack(cfg, question_ids, context_ids):
    q = list(question_ids[:cfg.max_question_tokens])
    ids = [cfg.cls_id] + q + [cfg.sep_id] + list(context_ids) + [cfg.sep_id]
    global_len = len(q) + 2
    types = [0] * global_len + [1] * (len(ids) - global_len)
    return ids, types, global_len


def answer_tokens(starts, ends, a_start, a_end):
    """First and last context token overlapping the character span [a_start, a_end)."""
    hit = np.nonzero((ends > a_start) & (starts < a_end))[0]
    if len(hit) == 0:
        return None
    return int(hit[0]), int(hit[-1])


class Feature:
    __slots__ = ("ids", "types", "global_len", "context_first", "window_start", "n_window",
                 "qid", "start", "end")


def make_features(cfg, tok_q, ctx, max_len, stride_overlap, qid=None, answer=None):
    """All windows of one (question, context) pair. ctx = (ids, starts, ends).
    answer = (first token, last token) in context tokens, or None."""
    ctx_ids = ctx[0]
    q = tok_q[:cfg.max_question_tokens]
    budget = max_len - len(q) - 3
    out = []
    for w0 in windows(len(ctx_ids), budget, budget - min(stride_overlap, budget // 2)):
        f = Feature()
        window = ctx_ids[w0:w0 + budget]
        f.ids, f.types, f.global_len = pack(cfg, q, window)
        f.context_first = f.global_len
        f.window_start, f.n_window, f.qid = w0, len(window), qid
        f.start = f.end = 0  # [CLS]: the answer is not in this window
        if answer is not None and answer[0] >= w0 and answer[1] < w0 + len(window):
            f.start, f.end = answer[0] - w0 + f.context_first, answer[1] - w0 + f.context_first
        out.append(f)
    return out


def collate(features, cfg, length, device):
    """(ids, types, valid, span_ok, global_len, start, end) of the features, padded to
    `length`, on `device`."""
    import torch
    b = len(features)
    ids = np.full((b, length), cfg.pad_id, dtype=np.int64)
    types = np.ones((b, length), dtype=np.int64)
    valid = np.zeros((b, length), dtype=bool)
    span_ok = np.zeros((b, length), dtype=bool)
    glen = np.zeros(b, dtype=np.int64)
    start = np.zeros(b, dtype=np.int64)
    end = np.zeros(b, dtype=np.int64)
    for i, f in enumerate(features):
        n = len(f.ids)
        ids[i, :n] = f.ids
        types[i, :n] = f.types
        valid[i, :n] = True
        span_ok[i, 0] = True
        span_ok[i, f.context_first:f.context_first + f.n_window] = True
        glen[i] = f.global_len
        start[i], end[i] = f.start, f.end
    return [torch.from_numpy(t).to(device, non_blocking=True) for t in (ids, types, valid, span_ok, glen, start, end)]


class FeatureTable:
    """Every training feature of one window length collated once, kept on the device:
    a batch is an index (no per-step collation on the CPU, no host-to-device copy)."""

    def __init__(self, features, cfg, length, device):
        import torch
        self.length = length
        cols = collate(features, cfg, length, "cpu")
        # ids and types in narrow types on the device (a SQuAD epoch of 384-token windows
        # is ~90 k rows); widened per batch
        narrow = (torch.int32, torch.int8, None, None, None, None, None)
        self.columns = [(c.to(t) if t is not None else c).to(device) for c, t in zip(cols, narrow)]

    def __len__(self):
        return self.columns[0].shape[0]

    def batch(self, index):
        ids, types, valid, span_ok, glen, start, end = (c[index] for c in self.columns)
        return ids.long(), types.long(), valid, span_ok, glen, start, end


def best_span(start_logits, end_logits, f, n_best=20, max_answer_tokens=30):
    """Best (score, first, last) over context tokens of one window, in context-token
    coordinates of the whole document; score = start + end logit (one scale across
    windows and documents)."""
    lo, hi = f.context_first, f.context_first + f.n_window
    s = start_logits[lo:hi]
    e = end_logits[lo:hi]
    if len(s) == 0:
        return None
    top_s = np.argsort(-s)[:n_best]
    top_e = np.argsort(-e)[:n_best]
    best = None
    for i in top_s:
        for j in top_e:
            if j < i or j - i + 1 > max_answer_tokens:
                continue
            score = float(s[i] + e[j])
            if best is None or score > best[0]:
                best = (score, int(i) + f.window_start, int(j) + f.window_start)
    return best


# Official SQuAD v1.1 evaluation (normalisation, EM, token F1, max over references).
def normalize_answer(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, truth):
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(p) & collections.Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, truth):
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_scores(predictions, references):
    """predictions: {qid: text}; references: {qid: [texts]} -> (EM, F1) in percent."""
    em = f1 = 0.0
    for qid, refs in references.items():
        pred = predictions.get(qid, "")
        em += max(exact_match(pred, r) for r in refs)
        f1 += max(f1_score(pred, r) for r in refs)
    n = max(1, len(references))
    return 100.0 * em / n, 100.0 * f1 / n
