#!/usr/bin/env python3
"""PyTorch's SQuAD evaluation of an exported model (train.evaluate, the code the
training run reports with), for comparison with the C++ engine's `ldqa eval` /
`ldqa eval --predictions` on the same questions:
    python3 train/eval_squad.py --model models/ldqa-small --data ../shared/data --limit 300 \
        [--settings paragraph,document] [--predictions out.json]
"""
import argparse
import json
import pathlib
import sys
import types

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import export  # noqa: E402
import qa_data  # noqa: E402
import train  # noqa: E402
from model import HAVE_FLEX  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--settings", default="paragraph,document")
    ap.add_argument("--predictions")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = export.load_model(a.model)
    model = model.to(device)
    tokenizer = str(pathlib.Path(a.model) / "tokenizer.model")
    args = types.SimpleNamespace(tokenizer=tokenizer, workers=a.workers, eval_para_len=384, eval_para_batch=64,
                                 long_len=cfg.max_len, eval_long_batch=8,
                                 flex=device.type == "cuda" and HAVE_FLEX, settings=a.settings.split(","))
    dev = qa_data.load_squad(pathlib.Path(a.data) / "squad" / "dev-v1.1.json.gz")
    results = train.evaluate(model, cfg, args, device, qa_data.Tokenizer(tokenizer), dev, a.limit)
    summary = {k: v for k, v in results.items() if not k.endswith("_predictions")}
    print(json.dumps(summary))
    if a.predictions:
        pathlib.Path(a.predictions).write_text(json.dumps(
            {k: {q: p["text"] for q, p in v.items()} for k, v in results.items() if k.endswith("_predictions")}))


if __name__ == "__main__":
    main()
