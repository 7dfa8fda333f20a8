#!/usr/bin/env python3
"""The PyTorch reference for bench/encoder_bench.cpp: the same exported weights
(train/export.load_model), the same shapes (random ids, a 48-token global prefix),
median of --reps passes after warm-up. Prints one JSON object per (impl, length, batch).

GPU: "torch-eager" runs the module eagerly under bf16 autocast with FlexAttention's
compiled kernel for the sparse attention (how training runs it); "torch-compile" is
torch.compile of the whole encoder. The block mask is built outside the timed region.
CPU: "torch-cpu" is float32 with the dense masked attention (the only path torch 1.13
has), on every core (torch.set_num_threads(os.cpu_count())).
    python3 bench/encoder_torch.py --model models/ldqa-small --device cuda --n 4096,16384,65536 --batch 1,8
"""
import argparse
import json
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "train"))
import export  # noqa: E402
from model import HAVE_FLEX  # noqa: E402


def run(model, ids, types, plan, device, reps):
    def once():
        with torch.no_grad():
            if device == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    hidden = model(ids, types, plan)
            else:
                hidden = model(ids, types, plan)
            s, e = model.span_logits(hidden)
        return s, e

    once()
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        s, _ = once()
        s.cpu()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/ldqa-small")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", default="4096,16384,65536")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--impls", default="eager,compile")
    args = ap.parse_args()
    model, cfg = export.load_model(args.model)
    device = args.device
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    model = model.to(device).eval()
    impls = args.impls.split(",") if device == "cuda" else ["cpu"]
    compiled = None
    gen = torch.Generator().manual_seed(1234)
    for n in map(int, args.n.split(",")):
        for b in map(int, args.batch.split(",")):
            ids = torch.randint(5, cfg.vocab_size, (b, n), generator=gen)
            ids[:, 0] = cfg.cls_id
            types = torch.ones_like(ids)
            types[:, :48] = 0
            ids, types = ids.to(device), types.to(device)
            valid = torch.ones(b, n, dtype=torch.bool, device=device)
            glen = torch.full((b,), 48, device=device)
            for impl in impls:
                name = "torch-" + impl
                try:
                    if device == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    plan = model.plan(valid, glen, device == "cuda" and HAVE_FLEX)
                    target = model
                    if impl == "compile":
                        if compiled is None:
                            compiled = torch.compile(model)
                        target = compiled
                    seconds = run(target, ids, types, plan, device, args.reps)
                    rec = dict(impl=name, n=n, batch=b, ms=round(seconds * 1e3, 3),
                               tokens_per_s=round(b * n / seconds))
                    if device == "cuda":
                        rec["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
                except torch.cuda.OutOfMemoryError:
                    rec = dict(impl=name, n=n, batch=b, error="out of memory")
                print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
