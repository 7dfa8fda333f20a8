#!/usr/bin/env python3
"""Loss curves from train_log.jsonl to a PNG (matplotlib, on the GPU machine).
    python3 train/plot_curves.py OUT/train_log.jsonl OUT/loss_curves.png
A run that continues an exported model (--init) has no MLM phase: one panel then."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(log_path, png_path):
    rows = [json.loads(line) for line in open(log_path)]
    mlm = {phase: [(r["elapsed"], r["loss"]) for r in rows if r.get("phase") == phase and "loss" in r]
           for phase in ("pretrain-short", "pretrain-long")}
    span = {key: [(r["step"], r[key]) for r in rows if r.get("phase") == "finetune" and r.get(key) is not None]
            for key in ("loss_para", "loss_long")}
    panels = [p for p in (mlm, span) if any(p.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for key, pts in panel.items():
            if pts:
                ax.plot(*zip(*pts), label=key.replace("loss_", "") + (" contexts" if panel is span else ""))
        if panel is mlm:
            ax.set(title="MLM loss", xlabel="seconds in phase", ylabel="cross-entropy")
        else:
            ax.set(title="SQuAD span loss (mean of last 50 batches)", xlabel="step", ylabel="cross-entropy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
