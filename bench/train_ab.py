#!/usr/bin/env python3
"""The table of scripts/device-train-ab.sh: for each run folder (train.py --out, named
tab-ATTENTION-KIND) and each phase it logged steps of, training throughput after the first logged step (compilation and
warm-up excluded), MFU, and how far the loss curves of each two attentions are apart at
the same steps (same seed, data and masks). Only where both runs were deterministic
(train.py --deterministic, which each run's start record says) do they differ by the
attention's rounding alone; the line says which.

    python3 bench/train_ab.py /tmp/ldqa/work/tab-*   [--peak-tflops 989]

MFU counts the dense work only, 6 x parameters x tokens per second (forward and backward),
against the GPU's bf16 dense peak (H200 SXM: 989 TFLOP/s); the sparse attention's own
work (at most a few percent at window 128) is left out, so MFU is slightly understated.
"""
import argparse
import json
import pathlib
import re


def read_log(folder):
    records = [json.loads(line) for line in (pathlib.Path(folder) / "train_log.jsonl").read_text().splitlines() if line]
    start = next(r for r in records if r.get("phase") == "start")
    phases = {}  # one run may hold several phases (pretrain-short, pretrain-long, finetune)
    for r in records:
        if "step" in r and "tokens_per_s" in r and "elapsed" in r:
            phases.setdefault(r["phase"], []).append(r)
    return start, phases


def rate(steps):
    """Tokens per second between the first and the last logged step (train.py logs the
    cumulative rate, so tokens seen = tokens_per_s x elapsed)."""
    if len(steps) < 2:
        return None
    a, b = steps[0], steps[-1]
    return (b["tokens_per_s"] * b["elapsed"] - a["tokens_per_s"] * a["elapsed"]) / (b["elapsed"] - a["elapsed"])


def loss_of(record):
    return record.get("loss", record.get("loss_long"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    args = ap.parse_args()
    runs = {}
    for folder in args.folders:
        m = re.search(r"tab-([a-z]+)-(\w+)$", pathlib.Path(folder).name)
        if not m or not (pathlib.Path(folder) / "train_log.jsonl").exists():
            continue
        start, phases = read_log(folder)
        for phase, steps in phases.items():
            # quick mode's one-process runs ("all") by phase always: the dense arm's run
            # has one phase only, and must land beside the others' same phase
            kind = m.group(2) if len(phases) == 1 and m.group(2) != "all" else f"{m.group(2)} {phase}"
            runs[(kind, m.group(1))] = (start, steps)
    print("| run | attention | steps | tokens/s | MFU | final loss | ours / this |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted({k for k, _ in runs}):
        rates = {}
        for attention in ("ldqa", "flex", "dense"):
            if (kind, attention) not in runs:
                continue
            start, steps = runs[(kind, attention)]
            r = rate(steps)
            rates[attention] = r
            params = start.get("params_pretraining") or start.get("params_exported")
            mfu = 6 * params * r / (args.peak_tflops * 1e12) if r else None
            ratio = ""
            if attention != "ldqa" and rates.get("ldqa") and r:
                ratio = f"{rates['ldqa'] / r:.2f}"
            print(f"| {kind} | {attention} | {steps[-1]['step'] if steps else 0} | "
                  f"{r:,.0f} | {100 * mfu:.1f} % | {loss_of(steps[-1]):.4f} | {ratio} |" if r else
                  f"| {kind} | {attention} | {len(steps)} logged | – | – | – | |")
        # every pair that ran: ours against Flex, and with the dense arm (the rounding
        # control) each against dense, the spreads to judge ours - Flex by
        pairs = [("ldqa", "flex"), ("ldqa", "dense"), ("flex", "dense")]
        for a, b in pairs:
            if (kind, a) not in runs or (kind, b) not in runs:
                continue
            first = {s["step"]: loss_of(s) for s in runs[(kind, a)][1]}
            second = {s["step"]: loss_of(s) for s in runs[(kind, b)][1]}
            common = sorted(set(first) & set(second))
            if common:
                diffs = [first[s] - second[s] for s in common]
                # without train.py --deterministic two runs of one arm differed by 0.17
                # (docs/bench/training.md): such a pair's gap says little
                both = runs[(kind, a)][0].get("deterministic") and runs[(kind, b)][0].get("deterministic")
                mode = "deterministic runs" if both else "NOT deterministic runs"
                print(f"|   | loss curves ({mode}), {a} - {b}, {len(common)} common logged steps | | | | "
                      f"max abs diff {max(map(abs, diffs)):.4f}, mean abs {sum(map(abs, diffs)) / len(diffs):.4f}, "
                      f"mean {sum(diffs) / len(diffs):+.4f} | |")


if __name__ == "__main__":
    main()
