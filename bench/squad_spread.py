#!/usr/bin/env python3
"""A SQuAD-format file whose questions spread over every article: all articles and
paragraphs kept (the corpus setting indexes them all), questions kept only from each
article's middle paragraph (its first question; the first two articles give two), so
`ldqa eval --setting corpus` on it times 50 questions on SQuAD v1.1 dev's 48 articles
rather than 50 about the first one. With --every N: every Nth question of the whole set
instead (a systematic sample for GPU runs that cannot afford all 10 570 in the corpus
setting; every article keeps its share).

    python3 bench/squad_spread.py ../shared/data/squad/dev-v1.1.json.gz /tmp/spread50.json
    python3 bench/squad_spread.py --every 5 ../shared/data/squad/dev-v1.1.json.gz /tmp/every5.json
    ldqa --model models/ldqa-small --device cpu --json eval --setting corpus /tmp/spread50.json
"""
import gzip
import json
import sys


def main():
    args = sys.argv[1:]
    every = 0
    if args[:1] == ["--every"]:
        every = int(args[1])
        if every < 1:
            sys.exit(f"--every takes a positive number, not {every}")
        args = args[2:]
    if len(args) != 2:
        sys.exit("usage: squad_spread.py [--every N] SRC.json[.gz] DST.json")
    src, dst = args
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as f:
        data = json.load(f)
    kept = seen = 0
    for ai, article in enumerate(data["data"]):
        if every:
            for paragraph in article["paragraphs"]:
                qas = paragraph["qas"]
                paragraph["qas"] = [q for k, q in enumerate(qas) if (seen + k) % every == 0]
                seen += len(qas)
                kept += len(paragraph["qas"])
            continue
        middle = len(article["paragraphs"]) // 2
        for pi, paragraph in enumerate(article["paragraphs"]):
            keep = 2 if ai < 2 else 1
            paragraph["qas"] = paragraph["qas"][:keep] if pi == middle else []
            kept += len(paragraph["qas"])
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(data, f)
    print(f"{kept} questions over {len(data['data'])} articles -> {dst}")


if __name__ == "__main__":
    main()
