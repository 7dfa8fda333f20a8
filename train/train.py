#!/usr/bin/env python3
"""The ldqa training recipe: MLM pretraining (short, then long sequences), SQuAD v1.1
fine-tuning on paragraph AND whole-article contexts, evaluation in both settings, and
export for the C++ engine. Entry point: train/run_gpu.sh (see train/README.md).

Phases have wall-clock budgets; each learning-rate schedule is a function of the
elapsed share of its budget, so a phase always completes its decay whatever the
throughput. Seeds are fixed; data order is deterministic; step counts are logged.
"""
import argparse
import contextlib
import dataclasses
import gzip
import json
import math
import multiprocessing as mp
import os
import pathlib
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import distributed  # noqa: E402
import export  # noqa: E402
import qa_data  # noqa: E402
from model import HAVE_FLEX, Config, Encoder, add_pretraining_heads, rtd_logits  # noqa: E402

LOG = None
DIST = None  # distributed.Dist: this process's rank among torchrun's


def log(record):
    if DIST is not None and not DIST.main:
        return
    record = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in record.items()}
    print(json.dumps(record), flush=True)
    if LOG is not None:
        LOG.write(json.dumps(record) + "\n")
        LOG.flush()


# ----------------------------------------------------------------------------- corpus
def corpus_stream(data_dir, tokenizer_path, cfg, limit_docs, workers):
    """The corpus text tokenised here (pretokenize.py's encoder): documents' ids
    concatenated, each followed by [SEP]."""
    import pretokenize
    docs = []
    for shard in sorted((pathlib.Path(data_dir) / "corpus").glob("*.txt.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as f:
            docs.extend(d for d in f.read().split("\n\n<doc>\n") if d.strip())
    if limit_docs:
        docs = docs[:limit_docs]
    return pretokenize.encode_documents(docs, tokenizer_path, cfg.sep_id, workers).astype(np.int32), len(docs)


def lr_at(frac, peak, warmup):
    return peak * max(0.0, min(frac / warmup, (1.0 - frac) / (1.0 - warmup)))


def make_optimizer(model, lr, weight_decay=0.01):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    kwargs = dict(lr=lr, betas=(0.9, 0.98), eps=1e-6)
    if torch.cuda.is_available():
        kwargs["fused"] = True
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], **kwargs)


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def load_corpus_ids(ids_dir, tokenizer_path):
    """The pre-tokenised corpus (train/pretokenize.py): every *.u16.xz under ids_dir, in
    name order, concatenated; refuses ids made with another tokenizer."""
    import pretokenize
    root = pathlib.Path(ids_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    digest = pretokenize.tokenizer_digest(tokenizer_path)
    if manifest["tokenizer_sha256_16"] != digest:
        raise SystemExit(f"{root}: ids made with tokenizer {manifest['tokenizer_sha256_16']}, not {tokenizer_path} ({digest})")
    files = sorted(root.rglob("*.u16.xz"), key=lambda f: f.name)
    missing = set(manifest["shards"]) - {f.name for f in files}
    if missing:
        raise SystemExit(f"{root}: shards missing (stage every part): {sorted(missing)}")
    with mp.Pool(min(len(files), 16)) as pool:
        parts = pool.map(_read_ids, files)
    return np.concatenate(parts).astype(np.int32), sum(s["documents"] for s in manifest["shards"].values())


def _read_ids(path):
    import lzma
    return np.frombuffer(lzma.decompress(pathlib.Path(path).read_bytes()), dtype="<u2")


def mask_tokens(ids, cfg, objective, g):
    """15% of the non-special tokens are chosen. MLM: 80% [MASK], 10% random, 10% kept;
    ELECTRA: all [MASK] (the generator's samples replace them afterwards)."""
    special = (ids == cfg.cls_id) | (ids == cfg.sep_id)
    chosen = (torch.rand(ids.shape, device=ids.device, generator=g) < 0.15) & ~special
    inputs = ids.clone()
    if objective == "electra":
        inputs[chosen] = cfg.mask_id
        return inputs, chosen
    r2 = torch.rand(ids.shape, device=ids.device, generator=g)
    inputs[chosen & (r2 < 0.8)] = cfg.mask_id
    rand_ids = torch.randint(5, cfg.vocab_size, ids.shape, device=ids.device, generator=g)
    swap = chosen & (r2 >= 0.8) & (r2 < 0.9)
    inputs[swap] = rand_ids[swap]
    return inputs, chosen


def pretraining_loss(model, forward, inputs, ids, chosen, types, plan, objective, rtd_weight, sample_u,
                     token_scale=None):
    """Returns (loss, stats). forward(module, ids, types, plan) runs an encoder stack
    (compiled or not). sample_u (ELECTRA): a uniform number per position, drawn for the
    global batch and sliced like it, so that the generator's samples do not depend on
    the number of processes. token_scale: what a masked token's loss counts (processes over
    masked tokens of the global batch: each rank's sum, averaged by DDP, is then the
    global batch's mean); None: the mean over this batch."""
    labels = ids[chosen]
    if objective == "mlm":
        hidden = forward(model, inputs, types, plan)
        logits = model.mlm_logits(hidden[chosen])
        if token_scale is None:
            loss = F.cross_entropy(logits.float(), labels)
        else:
            loss = F.cross_entropy(logits.float(), labels, reduction="sum") * token_scale
        return loss, lambda: dict(mlm_loss=loss.item(), mlm_acc=(logits.argmax(-1) == labels).float().mean().item())
    gen = model.generator
    g_hidden = forward(gen, inputs, types, plan, model.token_embedding)
    g_logits = gen.logits(g_hidden[chosen], model.token_embedding).float()
    g_loss = (F.cross_entropy(g_logits, labels) if token_scale is None else
              F.cross_entropy(g_logits, labels, reduction="sum") * token_scale)
    with torch.no_grad():  # sample from the generator (inverse CDF); no gradient through it
        cdf = torch.softmax(g_logits, -1).cumsum_(-1)
        sampled = torch.searchsorted(cdf, sample_u[chosen].unsqueeze(-1).float()).squeeze(-1)
        sampled.clamp_(max=g_logits.shape[-1] - 1)  # u above the rounded total
        d_inputs = ids.clone()
        d_inputs[chosen] = sampled
        replaced = (d_inputs != ids).float()
    hidden = forward(model, d_inputs, types, plan)
    d_logits = rtd_logits(model, hidden).float()
    d_loss = F.binary_cross_entropy_with_logits(d_logits, replaced)
    loss = g_loss + rtd_weight * d_loss

    def stats():
        with torch.no_grad():
            pred = d_logits > 0
            truth = replaced > 0.5
            return dict(gen_loss=g_loss.item(), rtd_loss=d_loss.item(),
                        gen_acc=(g_logits.argmax(-1) == labels).float().mean().item(),
                        rtd_acc=(pred == truth).float().mean().item(),
                        rtd_recall=(pred & truth).sum().item() / max(1, truth.sum().item()),
                        replaced_share=truth.float().mean().item())
    return loss, stats


class PretrainingStep(torch.nn.Module):
    """The pretraining loss as one module, so that DistributedDataParallel sees every
    parameter that gets a gradient in its forward."""

    def __init__(self, model, forward, objective, rtd_weight):
        super().__init__()
        self.model = model
        self.stack_forward = forward
        self.objective = objective
        self.rtd_weight = rtd_weight

    def forward(self, inputs, ids, chosen, types, plan, sample_u, token_scale):
        return pretraining_loss(self.model, self.stack_forward, inputs, ids, chosen, types, plan, self.objective,
                                self.rtd_weight, sample_u, token_scale)


def trainable_only(model, prefixes):
    """requires_grad off for the parameters a phase does not train (DDP waits for a
    gradient of every parameter that requires one)."""
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(prefixes))


def pretrain(model, opt, stream, cfg, args, device, phase, length, batch, minutes, peak_lr, forward, steps=0):
    """batch is the global batch: every rank draws it (same seeds) and keeps its rows.
    The phase ends after `steps` steps, or else after `minutes` (rank 0's clock)."""
    g = torch.Generator(device="cpu").manual_seed(args.seed + length)
    gd = torch.Generator(device=device).manual_seed(args.seed + 7 * length)
    stream_t = torch.from_numpy(stream).to(device)
    n_tokens = stream_t.numel()
    offs = torch.arange(length - 1, device=device)
    rows = DIST.rows(batch)
    local = rows.stop - rows.start
    valid = torch.ones(local, length, dtype=torch.bool, device=device)
    glen = torch.ones(local, dtype=torch.long, device=device)  # [CLS] is the global token
    types = torch.ones(local, length, dtype=torch.long, device=device)
    types[:, 0] = 0
    plan = model.plan(valid, glen, args.attention)  # same pattern for every batch of the phase
    budget = minutes * 60.0
    model.train()
    # ELECTRA trains the generator's MLM head, not the main model's (kept from an earlier
    # MLM checkpoint or for a later switch): DDP must not wait for its gradients.
    trainable_only(model, ("span.", "mlm_") if args.objective == "electra" else ("span.",))
    step_module = DIST.wrap(PretrainingStep(model, forward, args.objective, args.rtd_weight))

    def local_batch():
        ids = batch_ids()
        inputs, chosen = mask_tokens(ids, cfg, args.objective, gd)
        sample_u = torch.rand(ids.shape, device=device, generator=gd)[rows] if args.objective == "electra" else None
        token_scale = DIST.world / max(1, int(chosen.sum().item())) if DIST.enabled else None
        return inputs[rows], ids[rows], chosen[rows], sample_u, token_scale

    def batch_ids():
        starts = torch.randint(0, n_tokens - length, (batch,), generator=g).to(device)
        body = stream_t[starts[:, None] + offs[None, :]].long()
        return torch.cat([torch.full((batch, 1), cfg.cls_id, device=device, dtype=torch.long), body], 1)

    # One untimed forward/backward first (compilation, autotuning), no update.
    t_warm = time.time()
    inputs, ids, chosen, sample_u, token_scale = local_batch()
    for attempt in range(2):
        try:
            with autocast(device):
                loss, _ = step_module(inputs, ids, chosen, types, plan, sample_u, token_scale)
            loss.backward()
            break
        except Exception as e:  # noqa: BLE001 - a compiler failure: once more, eagerly
            if attempt or not forward.compile:
                raise
            opt.zero_grad(set_to_none=True)
            forward.eager(e)
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    log(dict(phase=phase, event="warm", seconds=time.time() - t_warm))
    if phase == "pretrain-short":
        ab_barrier(args.objective)
    t0 = time.time()
    step, seen = 0, 0
    while True:
        frac = step / steps if steps else DIST.agree((time.time() - t0) / budget)
        if frac >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(frac, peak_lr, args.warmup)
        inputs, ids, chosen, sample_u, token_scale = local_batch()
        with autocast(device):
            loss, stats = step_module(inputs, ids, chosen, types, plan, sample_u, token_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += batch * length
        if DIST.main and (step % args.log_every == 0 or step == 1):
            el = time.time() - t0
            log(dict(phase=phase, step=step, elapsed=el, loss=loss.item(), **stats(),
                     lr=opt.param_groups[0]["lr"], tokens_per_s=seen / el))
    log(dict(phase=phase, event="done", steps=step, tokens=seen, seconds=time.time() - t0, processes=DIST.world))
    trainable_only(model, ())
    return seen


class StackForward:
    """The encoder stacks' forward for training: with --compile, each stack (the encoder,
    ELECTRA's generator) compiled whole, once per fixed shape (a pretraining phase; a
    fine-tuning window length); evaluation runs the modules eagerly. eager() falls back
    for good (a compiler failure must not cost a session's GPU time)."""

    def __init__(self, compile_):
        self.compile = compile_
        self.compiled = {}

    def eager(self, error):
        log(dict(phase="compile", event="failed, training eagerly", error=repr(error)[:800]))
        self.compile = False
        self.compiled.clear()

    def __call__(self, module, ids, types, plan, *extra):
        if not self.compile:
            return module(ids, types, plan, *extra)
        fn = self.compiled.get(id(module))
        if fn is None:
            fn = self.compiled[id(module)] = torch.compile(module.forward, dynamic=False)
        return fn(ids, types, plan, *extra)


def ab_barrier(name):
    """Side-by-side runs (scripts/device-pretrain.sh ab) start their clocks together:
    each announces it is warm and waits for the others."""
    pattern = os.environ.get("AB_BARRIER")
    if not pattern:
        return
    root = pathlib.Path(pattern)
    (root / f"{name}.ready").write_text("")
    expected = int(os.environ.get("AB_COUNT", "2"))
    t0 = time.time()
    while len(list(root.glob("*.ready"))) < expected and time.time() - t0 < 600:
        time.sleep(0.5)
    log(dict(phase="barrier", waited=time.time() - t0))


# ------------------------------------------------------------------------------- SQuAD
def _tokenize_texts(args_):
    model_path, texts = args_
    tok = qa_data.Tokenizer(model_path)
    return [tok.with_spans(t) for t in texts]


def tokenize_many(model_path, texts, workers):
    chunks = [(model_path, texts[i:i + 32]) for i in range(0, len(texts), 32)]
    with mp.Pool(workers) as pool:
        return [x for part in pool.map(_tokenize_texts, chunks) for x in part]


def squad_items(articles):
    """Per question: (qid, question, paragraph index, article index, answer char span in
    paragraph, in article, reference texts)."""
    paragraphs, article_texts, items = [], [], []
    for ai, art in enumerate(articles):
        offset = 0
        texts = []
        for para in art["paragraphs"]:
            ctx = para["context"]
            pi = len(paragraphs)
            paragraphs.append(ctx)
            for qa in para["qas"]:
                ans = qa["answers"][0]
                a0 = ans["answer_start"]
                a1 = a0 + len(ans["text"])
                qid = qa.get("id") or f"train-{len(items)}"
                items.append((qid, qa["question"], pi, ai, (a0, a1), (offset + a0, offset + a1),
                              [a["text"] for a in qa["answers"]]))
            texts.append(ctx)
            offset += len(ctx) + 2
        article_texts.append("\n\n".join(texts))
    return paragraphs, article_texts, items


def long_window(cfg, rng, q, actx, aans, long_len, qid):
    """One window of up to `long_len` tokens of a whole document for a question: around
    the answer three times in four, elsewhere (target [CLS]: "not in this window") once
    in four; None when no such window exists. actx = (ids, starts, ends); aans = answer
    (first, last) in document tokens."""
    qq = q[:cfg.max_question_tokens]
    budget = long_len - len(qq) - 3
    total = len(actx[0])
    if total <= budget:
        w0 = 0
    elif rng.random() < 0.25:
        choices = [s for s in (rng.randrange(0, total - budget + 1) for _ in range(8))
                   if not (s <= aans[0] and aans[1] < s + budget)]
        if not choices:
            return None
        w0 = choices[0]
    else:
        lo = max(0, aans[1] - budget + 1)
        hi = min(aans[0], total - budget)
        w0 = rng.randint(lo, max(lo, hi))
    f = qa_data.Feature()
    window = actx[0][w0:w0 + budget]
    f.ids, f.types, f.global_len = qa_data.pack(cfg, qq, window)
    f.context_first, f.window_start, f.n_window, f.qid = f.global_len, w0, len(window), qid
    f.start = f.end = 0
    if w0 <= aans[0] and aans[1] < w0 + len(window):
        f.start, f.end = aans[0] - w0 + f.context_first, aans[1] - w0 + f.context_first
    return f


def finetune_features(cfg, args, tok, train_articles, document_articles=()):
    """SQuAD: every question's paragraph windows, and for a share (--long-share) a
    whole-article window; document_articles (SQuAD format whose contexts are whole
    documents, e.g. FairytaleQA): a long window for every question."""
    paragraphs, article_texts, items = squad_items(train_articles)
    para_tok = tokenize_many(args.tokenizer, paragraphs, args.workers)
    art_tok = tokenize_many(args.tokenizer, article_texts, args.workers)
    rng = random.Random(args.seed)
    para_feats, long_feats = [], []
    long_every = max(1, round(1 / args.long_share)) if args.long_share > 0 else 0
    for n, (qid, question, pi, ai, pspan, aspan, _) in enumerate(items):
        q = tok.ids(question)
        ctx = para_tok[pi]
        ans = qa_data.answer_tokens(ctx[1], ctx[2], *pspan)
        if ans is None:
            continue
        if args.para_batch > 0:  # 0: long windows only (a throughput measurement at --long-len)
            para_feats.extend(qa_data.make_features(cfg, q, ctx, args.para_len, 128, qid, ans))
        if not long_every or n % long_every:
            continue
        actx = art_tok[ai]
        aans = qa_data.answer_tokens(actx[1], actx[2], *aspan)
        f = long_window(cfg, rng, q, actx, aans, args.long_len, qid) if aans is not None else None
        if f is not None:
            long_feats.append(f)
    if document_articles:
        doc_paragraphs, _, doc_items = squad_items(document_articles)
        doc_tok = tokenize_many(args.tokenizer, doc_paragraphs, args.workers)
        for qid, question, pi, _, pspan, _, _ in doc_items:
            actx = doc_tok[pi]
            aans = qa_data.answer_tokens(actx[1], actx[2], *pspan)
            f = long_window(cfg, rng, tok.ids(question), actx, aans, args.long_len, qid) if aans is not None else None
            if f is not None:
                long_feats.append(f)
    return para_feats, long_feats


def span_loss(model, forward, batch, args, device):
    ids, types, valid, span_ok, glen, start, end = batch
    # every window's globals are [CLS] question [SEP], at most max_question_tokens + 2:
    # a constant bound keeps the shapes fixed (one compiled graph per window length)
    plan = model.plan(valid, glen, args.attention, global_rows=model.cfg.max_question_tokens + 2)
    with autocast(device):
        hidden = forward(model, ids, types, plan)
    s, e = model.span_logits(hidden)
    s = s.masked_fill(~span_ok, -1e4)
    e = e.masked_fill(~span_ok, -1e4)
    return (F.cross_entropy(s, start) + F.cross_entropy(e, end)) / 2


class SpanStep(torch.nn.Module):
    """The span loss as one module (for DistributedDataParallel)."""

    def __init__(self, model, forward, args, device):
        super().__init__()
        self.model, self.stack_forward, self.args, self.device_ = model, forward, args, device

    def forward(self, *batch):
        return span_loss(self.model, self.stack_forward, batch, self.args, self.device_)


def finetune(model, cfg, args, device, para_feats, long_feats, forward):
    """Every feature collated once onto the device (qa_data.FeatureTable); each epoch
    reshuffles which features share a batch and the order of the batches (the same on
    every rank: seeded); fixed shapes per kind, so --compile compiles twice."""
    tables = {kind: qa_data.FeatureTable(feats, cfg, length, device)
              for kind, feats, length in (("para", para_feats, args.para_len), ("long", long_feats, args.long_len))
              if feats}
    sizes = {"para": args.para_batch, "long": args.long_batch}
    log(dict(phase="finetune", event="data", paragraph_features=len(para_feats), long_features=len(long_feats),
             batches_per_epoch=sum(len(t) // sizes[k] for k, t in tables.items())))

    def epoch_batches(epoch):
        g = torch.Generator().manual_seed(args.seed + 100 + epoch)
        batches = []
        for kind, table in tables.items():
            perm = torch.randperm(len(table), generator=g)
            full = len(table) // sizes[kind] * sizes[kind]  # fixed shapes: the remainder sits this epoch out
            batches += [(kind, perm[i:i + sizes[kind]]) for i in range(0, full, sizes[kind])]
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in order]

    opt = make_optimizer(model, args.finetune_lr)
    budget = args.finetune_minutes * 60.0
    model.train()
    from model import PRETRAINING_PREFIXES
    trainable_only(model, PRETRAINING_PREFIXES)
    step_module = DIST.wrap(SpanStep(model, forward, args, device))
    losses = {"para": [], "long": []}  # on the device until logged (no sync per step)
    warm = set()
    t0 = time.time()
    step, epoch, seen = 0, 0, 0
    lengths = {"para": args.para_len, "long": args.long_len}
    while True:
        batches = epoch_batches(epoch)
        for bi, (kind, index) in enumerate(batches):
            frac = step / args.finetune_steps if args.finetune_steps else DIST.agree((time.time() - t0) / budget)
            if frac >= 1.0:
                log(dict(phase="finetune", event="done", steps=step, epochs=epoch + bi / len(batches),
                         seconds=time.time() - t0, processes=DIST.world))
                trainable_only(model, ())
                return
            for group in opt.param_groups:
                group["lr"] = lr_at(frac, args.finetune_lr, 0.08)
            batch = tables[kind].batch(index[DIST.rows(len(index))].to(device))
            if kind not in warm:  # first step of a shape: compile, or fall back to eager
                warm.add(kind)
                try:
                    loss = step_module(*batch)
                except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the run
                    if not forward.compile:
                        raise
                    forward.eager(e)
                    loss = step_module(*batch)
            else:
                loss = step_module(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += sizes[kind] * lengths[kind]  # window tokens, padding included (all ranks)
            losses[kind].append(loss.detach())
            if DIST.main and step % args.log_every == 0:
                mean = {k: torch.stack(v[-50:]).mean().item() if v else None for k, v in losses.items()}
                for k in losses:
                    del losses[k][:-50]
                log(dict(phase="finetune", step=step, epoch=epoch, elapsed=time.time() - t0, loss_para=mean["para"],
                         loss_long=mean["long"], lr=opt.param_groups[0]["lr"], tokens_per_s=seen / (time.time() - t0)))
        epoch += 1


@torch.no_grad()
def predict(model, cfg, args, device, features, length, batch, contexts):
    """Best span per question over its windows; contexts[qid] = (text, ids, starts, ends)."""
    model.eval()
    best = {}
    for i in range(0, len(features), batch):
        feats = features[i:i + batch]
        # fixed shapes (one compiled kernel): pad the last batch with copies, ignored below
        padded = feats + [feats[-1]] * (batch - len(feats))
        ids, types, valid, span_ok, glen, _, _ = qa_data.collate(padded, cfg, length, device)
        plan = model.plan(valid, glen, args.attention)
        with autocast(device):
            hidden = model(ids, types, plan)
        s, e = model.span_logits(hidden)
        s, e = s.float().cpu().numpy(), e.float().cpu().numpy()
        for k, f in enumerate(feats):
            span = qa_data.best_span(s[k], e[k], f)
            if span is not None and (f.qid not in best or span[0] > best[f.qid][0]):
                best[f.qid] = span
    out = {}
    for qid, (score, first, last) in best.items():
        text, _, starts, ends = contexts[qid]
        out[qid] = dict(text=text[starts[first]:ends[last]].strip(), score=score, first=first, last=last)
    return out


def evaluate(model, cfg, args, device, tok, dev_articles, limit):
    paragraphs, article_texts, items = squad_items(dev_articles)
    if limit:  # spread over the file, the same questions as `ldqa eval --limit`
        items = [items[i] for i in qa_data.spread_sample(len(items), limit)]
    para_tok = tokenize_many(args.tokenizer, paragraphs, args.workers)
    art_tok = tokenize_many(args.tokenizer, article_texts, args.workers)
    refs = {it[0]: it[6] for it in items}
    results = {}
    for setting, length, overlap, batch, toks, texts, index in (
            ("paragraph", args.eval_para_len, 128, args.eval_para_batch, para_tok, paragraphs, 2),
            ("document", args.long_len, 512, args.eval_long_batch, art_tok, article_texts, 3)):
        if setting not in getattr(args, "settings", ("paragraph", "document")):
            continue
        feats, contexts = [], {}
        for it in items:
            ctx = toks[it[index]]
            contexts[it[0]] = (texts[it[index]],) + ctx
            feats.extend(qa_data.make_features(cfg, tok.ids(it[1]), ctx, length, overlap, it[0]))
        feats.sort(key=lambda f: len(f.ids))
        t0 = time.time()
        preds = predict(model, cfg, args, device, feats, length, batch, contexts)
        em, f1 = qa_data.squad_scores({q: p["text"] for q, p in preds.items()}, refs)
        results[setting] = dict(em=em, f1=f1, questions=len(refs), windows=len(feats), seconds=time.time() - t0,
                                max_len=length)
        results[setting + "_predictions"] = preds
        log(dict(phase="eval", setting=setting, em=em, f1=f1, questions=len(refs), windows=len(feats)))
    return results


def check_against_dense(model, cfg, device, attention):
    """The training path's attention computes the dense reference's function, on a padded
    batch with two question lengths: the encoder's output and every parameter's gradient,
    for our op and for FlexAttention alike (the A/B of 2026-12-06 saw Flex's loss curve
    stray further from the dense path's than ours: its logged gradient error is what the
    next A/B compares)."""
    g = torch.Generator(device="cpu").manual_seed(5)
    b, n = 2, 640
    ids = torch.randint(5, cfg.vocab_size, (b, n), generator=g).to(device)
    types = torch.ones_like(ids)
    valid = torch.ones(b, n, dtype=torch.bool, device=device)
    valid[1, n // 2 + 5:] = False
    glen = torch.tensor([9, 30], device=device)
    weight = torch.randn(b, n, cfg.hidden, generator=g).to(device)
    # On CUDA training runs under bf16 autocast (our kernels take bf16): both paths run as
    # they train, with tolerances for bf16; elsewhere in float32.
    bf16 = device.type == "cuda"
    results = []
    for path in (attention, "dense"):
        model.zero_grad(set_to_none=True)
        with autocast(device) if bf16 else contextlib.nullcontext():
            out = model(ids, types, model.plan(valid, glen, path)).float()
        (out * weight).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((out.detach(), grads))
    model.zero_grad(set_to_none=True)
    (out_a, grad_a), (out_d, grad_d) = results
    err = ((out_a - out_d)[valid].norm() / out_d[valid].norm()).item()
    grad_err = ((grad_a - grad_d).norm() / grad_d.norm()).item()
    log(dict(phase="check", attention=attention, vs_dense_rel_err=err, grad_vs_dense_rel_err=grad_err))
    if not err < (3e-2 if bf16 else 1e-3) or not grad_err < (5e-2 if bf16 else 1e-2):
        raise SystemExit(f"the {attention} attention path disagrees with the dense reference: output {err}, "
                         f"gradients {grad_err}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--config", default="{}", help="JSON overrides of model.Config")
    ap.add_argument("--pretrain-minutes", type=float, default=6.5)
    ap.add_argument("--pretrain-long-minutes", type=float, default=1.5)
    ap.add_argument("--finetune-minutes", type=float, default=4.5)
    ap.add_argument("--pretrain-len", type=int, default=512)
    ap.add_argument("--pretrain-batch", type=int, default=256)
    ap.add_argument("--pretrain-long-len", type=int, default=2048)
    ap.add_argument("--pretrain-long-batch", type=int, default=64)
    ap.add_argument("--pretrain-lr", type=float, default=1e-3)
    ap.add_argument("--para-len", type=int, default=384)
    ap.add_argument("--para-batch", type=int, default=64, help="0: no paragraph windows (long windows only)")
    ap.add_argument("--long-len", type=int, default=4096)
    ap.add_argument("--long-batch", type=int, default=8)
    ap.add_argument("--long-share", type=float, default=0.125, help="share of questions that also get a long window")
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--finetune-documents", nargs="*", default=[], metavar="FILE.json.gz",
                    help="SQuAD-format files whose contexts are whole documents (FairytaleQA train): "
                    "every question also trains on a long window")
    ap.add_argument("--eval-para-len", type=int, default=384)
    ap.add_argument("--eval-para-batch", type=int, default=64)
    ap.add_argument("--eval-long-batch", type=int, default=8)
    ap.add_argument("--eval-limit", type=int, default=0)
    ap.add_argument("--limit-docs", type=int, default=0)
    ap.add_argument("--limit-articles", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--attention", choices=("auto", "ldqa", "flex", "dense"), default="auto",
                    help="attention path (model.py): ldqa = our kernels as a PyTorch op (train/ldqa_attention.py), "
                    "flex = FlexAttention, dense = the masked reference; auto = ldqa on CUDA where its library "
                    "was built with CUDA (else flex), dense on the CPU")
    ap.add_argument("--init", help="skip pretraining: continue fine-tuning this exported model folder")
    ap.add_argument("--objective", choices=("mlm", "electra"), default="mlm",
                    help="pretraining objective of a new model (a resumed one keeps its own)")
    ap.add_argument("--rtd-weight", type=float, default=50.0, help="ELECTRA: weight of replaced-token detection")
    ap.add_argument("--warmup", type=float, default=0.06, help="share of each pretraining phase spent warming up")
    ap.add_argument("--resume", help="continue pretraining from this checkpoint folder (export.save_pretrained)")
    ap.add_argument("--save-pretrained", help="write the pretraining checkpoint here after pretraining")
    ap.add_argument("--corpus-ids", help="pre-tokenised corpus (train/pretokenize.py) instead of DATA/corpus text")
    ap.add_argument("--skip-finetune", action="store_true", help="stop after pretraining (and --save-pretrained)")
    ap.add_argument("--eval-settings", default="paragraph,document")
    ap.add_argument("--compile", action="store_true", help="torch.compile each encoder stack (pretraining phases, fine-tuning window lengths)")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="> 0: the short pretraining phase runs this many "
                    "steps (its schedule follows them) instead of --pretrain-minutes")
    ap.add_argument("--finetune-steps", type=int, default=0, help="> 0: fine-tuning runs this many steps")
    ap.add_argument("--dump-state", help="rank 0 writes the float32 state_dict here at the end (tests)")
    ap.add_argument("--deterministic", action="store_true",
                    help="deterministic algorithms throughout (torch.use_deterministic_algorithms; inductor then "
                    "falls back from its atomic scatters, e.g. the embedding's gradient), so that two runs of one "
                    "seed give one loss curve and an A/B of attentions differs by their numerics alone; slower")
    args = ap.parse_args()
    args.settings = tuple(args.eval_settings.split(","))

    global LOG, DIST
    DIST = distributed.Dist()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if DIST.main:
        LOG = open(out / "train_log.jsonl", "a")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.deterministic:
        # cuBLAS reproducible across streams needs a fixed workspace, set before its
        # first handle; ops with no deterministic kernel warn instead of failing
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = DIST.device
    if args.attention == "auto":
        args.attention = auto_attention(device)
    if args.attention == "flex" and not (device.type == "cuda" and HAVE_FLEX):
        raise SystemExit("--attention flex needs CUDA and torch >= 2.5 (FlexAttention)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    sessions = []
    if args.init:  # an exported (already fine-tuned) model: its own config
        model, cfg = export.load_model(args.init)
        model.train()
    elif args.resume:  # a pretraining checkpoint: its own config and objective
        model, cfg, args.objective, sessions = export.load_pretrained(args.resume)
    else:
        cfg = Config(**json.loads(args.config))
        model = add_pretraining_heads(Encoder(cfg), args.objective)
    cfg.max_len = args.long_len
    model = model.to(device)
    n_params = sum(p.numel() for p in model.exported_state().values())
    n_all = sum(p.numel() for p in model.parameters())
    log(dict(phase="start", device=str(device), processes=DIST.world, attention=args.attention, torch=torch.__version__, params_exported=n_params,
             params_pretraining=n_all, objective=None if args.init else args.objective, resume=args.resume,
             earlier_sessions=len(sessions), deterministic=args.deterministic, config=dataclasses.asdict(cfg)))
    if args.attention != "dense":
        check_against_dense(model, cfg, device, args.attention)
    t_start = time.time()

    if args.init:
        log(dict(phase="init", model=args.init))
    elif args.pretrain_minutes + args.pretrain_long_minutes > 0:
        if args.corpus_ids:
            stream, n_docs = load_corpus_ids(args.corpus_ids, args.tokenizer)
        else:
            stream, n_docs = corpus_stream(args.data, args.tokenizer, cfg, args.limit_docs, args.workers)
        log(dict(phase="corpus", documents=n_docs, tokens=int(stream.size), seconds=time.time() - t_start))
        opt = make_optimizer(model, args.pretrain_lr)
        forward = StackForward(args.compile)
        t_pre = time.time()
        tokens = pretrain(model, opt, stream, cfg, args, device, "pretrain-short", args.pretrain_len,
                          args.pretrain_batch, args.pretrain_minutes, args.pretrain_lr, forward, args.pretrain_steps)
        if args.pretrain_long_minutes > 0:
            tokens += pretrain(model, opt, stream, cfg, args, device, "pretrain-long", args.pretrain_long_len,
                               args.pretrain_long_batch, args.pretrain_long_minutes, args.pretrain_lr / 2, forward)
        del opt
        if args.save_pretrained and DIST.main:
            last = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
            last = [r for r in last if r.get("phase", "").startswith("pretrain") and "loss" in r]
            session = dict(date=time.strftime("%Y-%m-%d"), objective=args.objective,
                           minutes=round((time.time() - t_pre) / 60, 2), tokens=tokens,
                           corpus_tokens=int(stream.size), device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                           attention=args.attention,
                           final=last[-1] if last else None, resumed_from=args.resume,
                           minutes_before=round(sum(x["minutes"] for x in sessions), 2),
                           tokens_before=sum(x["tokens"] for x in sessions))
            if args.resume and pathlib.Path(args.resume).resolve() != pathlib.Path(args.save_pretrained).resolve():
                dst = pathlib.Path(args.save_pretrained)
                dst.mkdir(parents=True, exist_ok=True)
                (dst / "sessions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in sessions))
            export.save_pretrained(model, cfg, args.objective, args.save_pretrained, args.tokenizer, session)
            log(dict(phase="save-pretrained", event="done", dir=args.save_pretrained, session=session))
        del stream
    if args.skip_finetune:
        finish(model, args)
        return

    if not args.init:
        for layer in model.layers:
            layer.attention.init_global_from_local()
    tok = qa_data.Tokenizer(args.tokenizer)
    train_articles = qa_data.load_squad(pathlib.Path(args.data) / "squad" / "train-v1.1.json.gz")
    dev_articles = qa_data.load_squad(pathlib.Path(args.data) / "squad" / "dev-v1.1.json.gz")
    if args.limit_articles:
        train_articles, dev_articles = train_articles[:args.limit_articles], dev_articles[:args.limit_articles]
    document_articles = [a for path in args.finetune_documents for a in qa_data.load_squad(path)]
    t0 = time.time()
    para_feats, long_feats = finetune_features(cfg, args, tok, train_articles, document_articles)
    log(dict(phase="features", seconds=time.time() - t0, document_questions=sum(
        len(p["qas"]) for a in document_articles for p in a["paragraphs"])))
    # FlexAttention's block mask is rebuilt for every fine-tuning batch (its padding and
    # questions vary), a new mask_mod closure each time, and torch.compile guards on
    # that: a compiled stack would recompile per batch. So the stacks stay eager there;
    # paths whose masks are plain tensors compile.
    compile_finetune = args.compile and args.attention != "flex"
    if args.compile and not compile_finetune:
        log(dict(phase="finetune", event="eager: FlexAttention's per-batch block masks would recompile the stack"))
    finetune(model, cfg, args, device, para_feats, long_feats, StackForward(compile_finetune))
    train_seconds = time.time() - t_start
    if not DIST.main:  # rank 0 exports and evaluates
        finish(model, args)
        return
    # Export before evaluating: the weights are what a lost machine would cost.
    export.export_model(model, cfg, out, shard_bytes=15 * 2**20, dtype=torch.bfloat16)
    log(dict(phase="export", event="done", seconds=time.time() - t_start))

    results = evaluate(model, cfg, args, device, tok, dev_articles, args.eval_limit)
    metrics = {k: v for k, v in results.items() if not k.endswith("_predictions")}
    metrics["train_seconds"] = train_seconds
    metrics["total_seconds"] = time.time() - t_start
    metrics["device"] = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "predictions_dev.json").write_text(json.dumps(
        {k: {q: p["text"] for q, p in v.items()} for k, v in results.items() if k.endswith("_predictions")}))
    log(dict(phase="eval", event="done", seconds=time.time() - t_start))
    finish(model, args)


def auto_attention(device):
    """--attention auto: our op on CUDA (issue 11's A/B, docs/bench/training.md: 1.67x
    FlexAttention's MLM throughput at 512 tokens, 1.93x at 2048), FlexAttention where the
    op's library has no CUDA (or is not built), the dense reference on the CPU (our op
    runs there too, in float32, but only as fast as the masked matmuls)."""
    if device.type != "cuda":
        return "dense"
    import ldqa_attention
    if ldqa_attention.cuda_available():
        return "ldqa"
    return "flex" if HAVE_FLEX else "dense"


def finish(model, args):
    """The end of a run on every rank (no barrier: rank 0 may still be evaluating long
    after the others are done)."""
    if args.dump_state and DIST.main:
        torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, args.dump_state)
    DIST.close()


if __name__ == "__main__":
    main()
