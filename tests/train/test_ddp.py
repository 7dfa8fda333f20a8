#!/usr/bin/env python3
"""Data-parallel training equals one process (CPU, gloo): a tiny model pretrained for a
few steps by 2 torchrun processes ends with the parameters of 1 process on the same
global batch, for each pretraining objective (MLM and ELECTRA). Fails when gradients
are not averaged across ranks, when ranks train on the same rows, when the global batch
depends on the number of processes, or when a parameter DDP waits for gets no gradient
(ELECTRA under DDP once failed so on its second step on two H200s: the main model's MLM
head was left trainable).

    python3 tests/train/test_ddp.py            (Debian's python3-torch has gloo)
"""
import gzip
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


def train(data, out, processes, objective):
    """Runs train.py as `torchrun --nproc-per-node N` would: N processes with RANK,
    WORLD_SIZE, LOCAL_RANK and a rendezvous address in their environment (Debian's
    torch 1.13 torchrun fails on Python 3.11; the GPU machine's torch runs torchrun
    itself)."""
    cmd = [sys.executable, str(ROOT / "train/train.py"), "--data", str(data), "--out", str(out),
           "--tokenizer", str(ROOT / "models/ldqa-small/tokenizer.model"), "--config", CONFIG,
           "--objective", objective, "--pretrain-steps", "4", "--pretrain-long-minutes", "0", "--pretrain-len", "64",
           "--pretrain-batch", "8", "--skip-finetune", "--workers", "1", "--dump-state", str(out / "state.pt")]
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
        for objective in ("mlm", "electra"):
            one = train(tmp / "data", tmp / f"one-{objective}", 1, objective)
            two = train(tmp / "data", tmp / f"two-{objective}", 2, objective)
            worst = max((one[k] - two[k]).abs().max().item() for k in one)
            scale = max(v.abs().max().item() for v in one.values())
            print(f"{objective}: max |1 process - 2 processes| = {worst:.3g} (largest parameter {scale:.3g})")
            if not worst < 1e-5:
                sys.exit(f"FAIL: with {objective}, 2 processes did not train like 1 on the same global batch")
        print("ddp: OK")


if __name__ == "__main__":
    main()
