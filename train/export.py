#!/usr/bin/env python3
"""Export for the C++ engine (docs/model-format.md): safetensors shards written by hand
(the format is an 8-byte little-endian header size, a JSON header, raw little-endian
data), config.json, and the parity fixtures.

    python3 train/export.py tiny-fixture --out models/fixtures/tiny
    python3 train/export.py squad-fixture --model models/ldqa-small --data ../shared/data \
        --out models/fixtures/ldqa-small-squad.json
"""
import argparse
import dataclasses
import json
import pathlib
import struct
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from model import PRETRAINING_PREFIXES, Config, Encoder  # noqa: E402

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int32: "I32",
          torch.int64: "I64"}
FORMAT_VERSION = 1


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    import numpy as np
    raw = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    np_types = {"F32": np.float32, "BF16": np.int16, "F16": np.float16, "I32": np.int32, "I64": np.int64}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np_types[info["dtype"]]).reshape(info["shape"])
        t = torch.from_numpy(arr.copy())
        out[name] = t.view(torch.bfloat16) if info["dtype"] == "BF16" else t
    return out


def split_shards(state, shard_bytes):
    """Tensors in order, grouped into shards of at most shard_bytes (a larger tensor
    gets a shard of its own)."""
    shards, current, size = [], {}, 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += nbytes
    shards.append(current)
    return shards


def config_json(cfg, dtype, shards, tokenizer="tokenizer.model"):
    return {
        "format_version": FORMAT_VERSION,
        "architecture": "ldqa-longformer-encoder",
        "model": dataclasses.asdict(cfg),
        "head_dim": cfg.head_dim,
        "weights": {"dtype": DTYPES[dtype], "files": shards},
        "tokenizer": {"file": tokenizer, "normalization": "nmt_nfkc", "pad": cfg.pad_id, "unk": cfg.unk_id,
                      "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
        "packing": {
            "sequence": "[CLS] question [SEP] context [SEP]",
            "max_question_tokens": cfg.max_question_tokens,
            "type_ids": "0 for [CLS] question [SEP], 1 for context and the final [SEP]",
            "global_tokens": "[CLS], the question tokens and the first [SEP]",
            "max_len": cfg.max_len,
            "window_overlap_tokens": 512,
            "answer_scoring": "start_logit + end_logit, n_best 20, max answer 30 tokens, best over windows",
        },
        "attention": {"window_one_sided": cfg.window, "window_per_layer": [cfg.window] * cfg.layers,
                      "rotary_dims": cfg.rotary_dims, "rotary_base": cfg.rotary_base,
                      "rotary_pairs": "neox (i, i + rotary_dims/2)", "rotary_applies_to": "query, key, query_global, key_global",
                      "scale": "1/sqrt(head_dim)"},
        "activation": "gelu_erf",
        "layer_norm": "pre",
    }


def export_model(model, cfg, out, shard_bytes, dtype, tokenizer="tokenizer.model"):
    out = pathlib.Path(out)
    shards = split_shards({k: v.to(dtype) for k, v in model.exported_state().items()}, shard_bytes)
    names = []
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(out / name, tensors, {"format": "pt"})
        names.append(name)
    (out / "config.json").write_text(json.dumps(config_json(cfg, dtype, names, tokenizer), indent=1))
    return names


def tiny_fixture(out_dir):
    """A tiny random model of the shipped architecture with inputs and PyTorch's float32
    outputs after the embeddings, after every layer, and the start/end logits."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    cfg = Config(vocab_size=512, hidden=64, layers=2, heads=2, ffn=128, window=8, rotary_dims=16, max_len=4096)
    model = Encoder(cfg).eval()
    with torch.no_grad():  # random, non-trivial LayerNorm and bias values
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
            elif "norm" in name:
                p.normal_(1, 0.1)
    names = export_model(model, cfg, out, shard_bytes=1 << 30, dtype=torch.float32)
    cases = {}
    for case, (n, valid_len, global_len) in enumerate([(37, [37, 23], [5, 9]), (150, [150, 101], [7, 12])]):
        b = len(valid_len)
        g = torch.Generator().manual_seed(100 + case)
        ids = torch.randint(5, cfg.vocab_size, (b, n), generator=g)
        types = torch.ones(b, n, dtype=torch.long)
        valid = torch.zeros(b, n, dtype=torch.bool)
        for i in range(b):
            ids[i, 0] = cfg.cls_id
            ids[i, global_len[i] - 1] = cfg.sep_id
            ids[i, valid_len[i] - 1] = cfg.sep_id
            ids[i, valid_len[i]:] = cfg.pad_id
            types[i, :global_len[i]] = 0
            valid[i, :valid_len[i]] = True
        with torch.no_grad():
            plan = model.plan(valid, torch.tensor(global_len), "dense")
            final, states = model(ids, types, plan, keep_states=True)
            start, end = model.span_logits(final)
        p = f"case{case}."
        cases[p + "ids"] = ids.to(torch.int32)
        cases[p + "types"] = types.to(torch.int32)
        cases[p + "valid_len"] = torch.tensor(valid_len, dtype=torch.int32)
        cases[p + "global_len"] = torch.tensor(global_len, dtype=torch.int32)
        cases[p + "embeddings"] = states[0].float()
        for li in range(cfg.layers):
            cases[p + f"layer{li}"] = states[li + 1].float()
        cases[p + "final_norm"] = final.float()
        cases[p + "start_logits"] = start.float()
        cases[p + "end_logits"] = end.float()
    write_safetensors(out / "cases.safetensors", cases, {"cases": 2, "note": "outputs of padded rows are not meaningful"})
    return names


def load_model(model_dir):
    """An exported model back as a float32 Encoder (what the C++ CPU path computes)."""
    model_dir = pathlib.Path(model_dir)
    meta = json.loads((model_dir / "config.json").read_text())
    cfg = Config(**meta["model"])
    model = Encoder(cfg)
    state = {}
    for name in meta["weights"]["files"]:
        state.update({k: v.float() for k, v in read_safetensors(model_dir / name).items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(PRETRAINING_PREFIXES) for k in missing):
        raise SystemExit(f"weights do not match the architecture: missing {missing}, unexpected {unexpected}")
    return model.eval(), cfg


PRETRAINED_FORMAT = "ldqa-pretraining-checkpoint-1"


def save_pretrained(model, cfg, objective, out_dir, tokenizer_path, session, shard_bytes=15 * 2**20):
    """A pretraining checkpoint that a later session resumes from: every tensor (the
    encoder, its pretraining heads, ELECTRA's generator) in bf16 safetensors shards of
    at most shard_bytes (so that one shard or two travel per `device` call), the
    config, the tokenizer, and sessions.jsonl with one line appended for this session."""
    import shutil
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = split_shards({k: v.detach().to(torch.bfloat16) for k, v in model.state_dict().items()}, shard_bytes)
    for old in out.glob("pretrained-*.safetensors"):
        old.unlink()
    names = []
    for i, tensors in enumerate(shards):
        name = f"pretrained-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(out / name, tensors, {"format": "pt"})
        names.append(name)
    if pathlib.Path(tokenizer_path).resolve() != (out / "tokenizer.model").resolve():
        shutil.copyfile(tokenizer_path, out / "tokenizer.model")
    meta = {"format": PRETRAINED_FORMAT, "objective": objective, "model": dataclasses.asdict(cfg),
            "files": names, "tokenizer": "tokenizer.model"}
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    with open(out / "sessions.jsonl", "a") as f:
        f.write(json.dumps(session) + "\n")
    return names


def load_pretrained(ckpt_dir):
    """(model with its pretraining heads, cfg, objective, earlier sessions) from a
    save_pretrained folder; float32 weights."""
    from model import add_pretraining_heads
    ckpt = pathlib.Path(ckpt_dir)
    meta = json.loads((ckpt / "config.json").read_text())
    if meta.get("format") != PRETRAINED_FORMAT:
        raise SystemExit(f"{ckpt / 'config.json'}: not a pretraining checkpoint ({meta.get('format')})")
    cfg = Config(**meta["model"])
    model = add_pretraining_heads(Encoder(cfg), meta["objective"])
    state = {}
    for name in meta["files"]:
        path = ckpt / name
        if not path.exists():
            raise SystemExit(f"{path}: shard of the pretraining checkpoint missing")
        state.update({k: v.float() for k, v in read_safetensors(path).items()})
    model.load_state_dict(state, strict=True)
    sessions_file = ckpt / "sessions.jsonl"
    sessions = [json.loads(x) for x in sessions_file.read_text().splitlines()] if sessions_file.exists() else []
    return model, cfg, meta["objective"], sessions


def squad_fixture(model_dir, data_dir, out_path, count):
    """The shipped model on the first `count` SQuAD dev questions (paragraph setting),
    float32 on the CPU: ids, the best span's token indices and its text."""
    import qa_data
    model, cfg = load_model(model_dir)
    tok = qa_data.Tokenizer(str(pathlib.Path(model_dir) / "tokenizer.model"))
    cases = []
    for art in qa_data.load_squad(pathlib.Path(data_dir) / "squad" / "dev-v1.1.json.gz"):
        for para in art["paragraphs"]:
            ctx_text = para["context"]
            ctx = tok.with_spans(ctx_text)
            for qa in para["qas"]:
                if len(cases) >= count:
                    break
                feats = qa_data.make_features(cfg, tok.ids(qa["question"]), ctx, 384, 128, qa["id"])
                best = None
                for f in feats:
                    ids = torch.tensor([f.ids])
                    plan = model.plan(torch.ones_like(ids, dtype=torch.bool), torch.tensor([f.global_len]), "dense")
                    with torch.no_grad():
                        s, e = model.span_logits(model(ids, torch.tensor([f.types]), plan))
                    span = qa_data.best_span(s[0].numpy(), e[0].numpy(), f)
                    if span and (best is None or span[0] > best[0][0]):
                        best = (span, f)
                (score, first, last), f = best
                cases.append(dict(id=qa["id"], question=qa["question"], context=ctx_text,
                                  answers=[a["text"] for a in qa["answers"]], ids=[int(x) for x in f.ids],
                                  global_len=f.global_len, window_start=f.window_start,
                                  start_token=first - f.window_start + f.context_first,
                                  end_token=last - f.window_start + f.context_first,
                                  char_start=int(ctx[1][first]), char_end=int(ctx[2][last]),
                                  text=ctx_text[ctx[1][first]:ctx[2][last]].strip(), score=score))
    pathlib.Path(out_path).write_text(json.dumps({"model": str(model_dir), "setting": "paragraph, max_len 384",
                                                  "precision": "float32, CPU, dense attention", "cases": cases},
                                                 indent=1, ensure_ascii=False))
    return len(cases)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny-fixture")
    t.add_argument("--out", required=True)
    q = sub.add_parser("squad-fixture")
    q.add_argument("--model", required=True)
    q.add_argument("--data", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--count", type=int, default=8)
    args = ap.parse_args()
    if args.cmd == "tiny-fixture":
        print(tiny_fixture(args.out))
    else:
        print(squad_fixture(args.model, args.data, args.out, args.count), "cases")


if __name__ == "__main__":
    main()
