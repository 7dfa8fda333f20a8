#!/usr/bin/env python3
"""Writes the tokenizer's training text: a seeded sample of corpus paragraphs (one per
line) plus every SQuAD v1.1 train question. Standard library only.

    python3 train/tokenizer_corpus.py --data ../shared/data --out /tmp/spm_input.txt"""
import argparse
import gzip
import json
import pathlib
import random


def paragraphs(shard):
    with gzip.open(shard, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and line != "<doc>":
                yield line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--keep", type=float, default=0.35, help="share of corpus paragraphs sampled")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    data = pathlib.Path(args.data)
    n_par = n_q = 0
    with open(args.out, "w", encoding="utf-8") as out:
        for shard in sorted((data / "corpus").glob("*.txt.gz")):
            for p in paragraphs(shard):
                if rng.random() < args.keep:
                    out.write(p + "\n")
                    n_par += 1
        with gzip.open(data / "squad" / "train-v1.1.json.gz", "rt", encoding="utf-8") as f:
            for article in json.load(f)["data"]:
                for para in article["paragraphs"]:
                    for qa in para["qas"]:
                        out.write(qa["question"].strip() + "\n")
                        n_q += 1
    print(f"{n_par} paragraphs, {n_q} questions -> {args.out}")


if __name__ == "__main__":
    main()
