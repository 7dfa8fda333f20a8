#!/usr/bin/env python3
"""Loss curves from train_log.jsonl to a PNG (matplotlib, on the GPU machine).
    python3 train/plot_curves.py OUT/train_log.jsonl OUT/loss_curves.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(log_path, png_path):
    rows = [json.loads(line) for line in open(log_path)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for phase in ("pretrain-short", "pretrain-long"):
        pts = [(r["elapsed"], r["loss"]) for r in rows if r.get("phase") == phase and "loss" in r]
        if pts:
            axes[0].plot(*zip(*pts), label=phase)
    axes[0].set(title="MLM loss", xlabel="seconds in phase", ylabel="cross-entropy")
    axes[0].legend()
    for key in ("loss_para", "loss_long"):
        pts = [(r["step"], r[key]) for r in rows if r.get("phase") == "finetune" and r.get(key) is not None]
        if pts:
            axes[1].plot(*zip(*pts), label=key.replace("loss_", "") + " contexts")
    axes[1].set(title="SQuAD span loss (mean of last 50 batches)", xlabel="step", ylabel="cross-entropy")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
