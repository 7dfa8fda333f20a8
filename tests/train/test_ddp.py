#!/usr/bin/env python3
"""Data-parallel training equals one process (CPU, gloo): a tiny model pretrained for a
few steps by 2 torchrun processes ends with the parameters of 1 process on the same
global batch, for each pretraining objective (MLM and ELECTRA) and for SQuAD-style
fine-tuning with paragraph, article and whole-document windows. Fails when gradients
are not averaged across ranks, when ranks train on the same rows, when the global batch
depends on the number of processes, or when a parameter DDP waits for gets no gradient
(ELECTRA under DDP once failed so on its second step on two H200s: the main model's MLM
head was left trainable). Also: the attention plan's constant global-row bound (what
keeps fine-tuning's shapes fixed) gives the model's output with the exact bound. The
pretraining runs take --deterministic (the A/B's flag), so that its code path runs here.

    python3 tests/train/test_ddp.py            (Debian's python3-torch has gloo)
"""
import gzip
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = '{"vocab_size":16000,"hidden":64,"layers":2,"heads":2,"ffn":128,"window":16,"rotary_dims":16}'


def make_corpus(data):
    rng = random.Random(11)
    words = ("keeper lamp harbour storm rope tide gull anchor ferry island granite beacon winter "
             "signal fog lantern north coast boat vessel light tower ledger").split()
    (data / "corpus").mkdir(parents=True)
    docs = []
    for _ in range(60):
        paras = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))).capitalize() + "."
                 for _ in range(rng.randint(2, 5))]
        docs.append("\n".join(paras))
    with gzip.open(data / "corpus" / "tiny-000.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n\n<doc>\n".join(docs))


def make_squad(data, rng):
    """Tiny SQuAD-format files: train/dev of short paragraphs, and a file of whole
    'stories' (long contexts) for --finetune-documents."""
    words = "river mill bridge orchard meadow shepherd baker miller lantern chapel harvest".split()
    names = "Ada Bram Cora Dov Elin Finn Greta Hugo".split()

    def article(title, paragraphs, sentences):
        paras = []
        for p in range(paragraphs):
            parts, qas = [], []
            for s in range(sentences):
                name, thing = rng.choice(names), " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
                prefix = " ".join(parts) + (" " if parts else "")
                sentence = f"{name} kept the {thing} near the {rng.choice(words)}."
                start = len(prefix) + len(name) + len(" kept the ")
                qas.append({"id": f"{title}-{p}-{s}", "question": f"What did {name} keep near the water?",
                            "answers": [{"text": thing, "answer_start": start}]})
                parts.append(sentence)
            context = " ".join(parts)
            for qa in qas:
                a = qa["answers"][0]
                assert context[a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]
            paras.append({"context": context, "qas": qas})
        return {"title": title, "paragraphs": paras}

    (data / "squad").mkdir(parents=True)
    for name, n in (("train-v1.1.json.gz", 4), ("dev-v1.1.json.gz", 2)):
        with gzip.open(data / "squad" / name, "wt", encoding="utf-8") as f:
            json.dump({"data": [article(f"{name[:3]}{i}", 3, 6) for i in range(n)]}, f)
    with gzip.open(data / "stories.json.gz", "wt", encoding="utf-8") as f:
        json.dump({"data": [article(f"story{i}", 1, 30) for i in range(2)]}, f)


def finetune(data, out, processes):
    return run(processes, out, ["--data", str(data), "--out", str(out), "--tokenizer",
                                str(ROOT / "models/ldqa-small/tokenizer.model"), "--config", CONFIG,
                                "--pretrain-steps", "2", "--pretrain-long-minutes", "0", "--pretrain-len", "64",
                                "--pretrain-batch", "4", "--finetune-steps", "6", "--para-len", "96",
                                "--para-batch", "4", "--long-len", "256", "--long-batch", "2", "--long-share", "0.5",
                                "--finetune-documents", str(data / "stories.json.gz"), "--eval-limit", "4",
                                "--eval-para-len", "96", "--log-every", "2", "--workers", "1",
                                "--dump-state", str(out / "state.pt")])


def check_global_bound():
    sys.path.insert(0, str(ROOT / "train"))
    import model as M
    torch.manual_seed(3)
    cfg = M.Config(**json.loads(CONFIG))
    enc = M.Encoder(cfg).eval()
    for layer in enc.layers:  # distinct global projections, so a wrong row shows
        for m in (layer.attention.query_global, layer.attention.key_global, layer.attention.value_global):
            torch.nn.init.normal_(m.weight, std=0.2)
    b, n = 3, 70
    ids = torch.randint(5, cfg.vocab_size, (b, n))
    types = torch.ones_like(ids)
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, 41:] = False
    glen = torch.tensor([5, 17, 2])
    with torch.no_grad():
        exact = enc(ids, types, enc.plan(valid, glen, "dense"))
        bound = enc(ids, types, enc.plan(valid, glen, "dense", global_rows=cfg.max_question_tokens + 2))
    worst = (exact - bound)[valid].abs().max().item()
    print(f"global-row bound vs exact: {worst:.3g}")
    if not worst < 1e-5:
        sys.exit("FAIL: a constant global-row bound changes the model's output")


def train(data, out, processes, objective):
    """Runs train.py as `torchrun --nproc-per-node N` would: N processes with RANK,
    WORLD_SIZE, LOCAL_RANK and a rendezvous address in their environment (Debian's
    torch 1.13 torchrun fails on Python 3.11; the GPU machine's torch runs torchrun
    itself)."""
    return run(processes, out, ["--data", str(data), "--out", str(out),
                                "--tokenizer", str(ROOT / "models/ldqa-small/tokenizer.model"), "--config", CONFIG,
                                "--objective", objective, "--pretrain-steps", "4", "--pretrain-long-minutes", "0",
                                "--pretrain-len", "64", "--pretrain-batch", "8", "--skip-finetune", "--workers", "1",
                                "--deterministic", "--dump-state", str(out / "state.pt")])


def run(processes, out, train_args):
    cmd = [sys.executable, str(ROOT / "train/train.py")] + train_args
    port = str(29500 + random.Random().randint(0, 900))
    procs = []
    for rank in range(processes):
        env = dict(os.environ, OMP_NUM_THREADS="1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(processes),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    for rank, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            sys.exit(f"training rank {rank} of {processes} failed:\n{output[-4000:]}")
    return torch.load(out / "state.pt")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        make_corpus(tmp / "data")
        make_squad(tmp / "data", random.Random(12))
        check_global_bound()
        runs = [(objective, lambda out, n, o=objective: train(tmp / "data", out, n, o)) for objective in ("mlm", "electra")]
        runs.append(("fine-tuning", lambda out, n: finetune(tmp / "data", out, n)))
        for name, fn in runs:
            one = fn(tmp / f"one-{name}", 1)
            two = fn(tmp / f"two-{name}", 2)
            worst = max((one[k] - two[k]).abs().max().item() for k in one)
            scale = max(v.abs().max().item() for v in one.values())
            print(f"{name}: max |1 process - 2 processes| = {worst:.3g} (largest parameter {scale:.3g})")
            if not worst < 1e-5:
                sys.exit(f"FAIL: with {name}, 2 processes did not train like 1 on the same global batch")
        print("ddp: OK")


if __name__ == "__main__":
    main()
