#!/usr/bin/env python3
"""Pre-tokenises the pretraining corpus HERE (CPU) so that it travels to the GPU machine
as compressed token ids instead of text: one `SHARD.u16.xz` per corpus shard (uint16
little-endian ids; a document's paragraphs concatenated, documents separated by [SEP]),
then packed into parts of at most --part-mib each, one part per `device` call:

    python3 train/pretokenize.py --data ../shared/data --tokenizer models/ldqa-base-pretrained/tokenizer.model \
        --out .stage/corpus-ids --part-mib 60

Writes OUT/partN/ folders (carry each in one call; scripts/device-pretrain.sh stages
them) and OUT/manifest.json (tokens per shard, the tokenizer's checksum: train.py
refuses ids made with another tokenizer).
"""
import argparse
import gzip
import hashlib
import json
import lzma
import multiprocessing as mp
import pathlib

import numpy as np

_SP = None


def _init(model_path):
    global _SP
    import sentencepiece as spm
    _SP = spm.SentencePieceProcessor()
    _SP.load(model_path)


def _encode(args):
    docs, sep_id = args
    out = []
    for doc in docs:
        for para in doc.split("\n"):
            if para.strip():
                out.extend(_SP.encode_as_ids(para))
        out.append(sep_id)
    return np.asarray(out, dtype=np.uint16)


def encode_documents(docs, tokenizer_path, sep_id, workers, pool=None):
    """uint16 ids of the documents in order, each followed by [SEP]."""
    chunks = [(docs[i:i + 32], sep_id) for i in range(0, len(docs), 32)]
    if pool is not None:
        return np.concatenate(pool.map(_encode, chunks))
    with mp.Pool(workers, initializer=_init, initargs=(tokenizer_path,)) as own:
        return np.concatenate(own.map(_encode, chunks))


def tokenizer_digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--part-mib", type=float, default=60)
    ap.add_argument("--sep-id", type=int, default=3)
    ap.add_argument("--workers", type=int, default=mp.cpu_count())
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"tokenizer_sha256_16": tokenizer_digest(args.tokenizer), "shards": {}}
    files = []
    with mp.Pool(args.workers, initializer=_init, initargs=(args.tokenizer,)) as pool:
        for shard in sorted((pathlib.Path(args.data) / "corpus").glob("*.txt.gz")):
            with gzip.open(shard, "rt", encoding="utf-8") as f:
                docs = [d for d in f.read().split("\n\n<doc>\n") if d.strip()]
            ids = encode_documents(docs, args.tokenizer, args.sep_id, args.workers, pool)
            name = shard.name.replace(".txt.gz", ".u16.xz")
            blob = lzma.compress(ids.astype("<u2").tobytes(), preset=9 | lzma.PRESET_EXTREME)
            (out / name).write_bytes(blob)
            manifest["shards"][name] = {"documents": len(docs), "tokens": int(ids.size), "bytes": len(blob)}
            files.append(name)
            print(f"{shard.name}: {len(docs)} documents, {ids.size} tokens, {len(blob) / 2**20:.1f} MiB", flush=True)
    # Parts: greedy bins of at most part-mib (each part travels in one call).
    limit = args.part_mib * 2**20
    parts, current, size = [], [], 0
    for name in files:
        b = manifest["shards"][name]["bytes"]
        if current and size + b > limit:
            parts.append(current)
            current, size = [], 0
        current.append(name)
        size += b
    parts.append(current)
    for i, names in enumerate(parts):
        d = out / f"part{i}"
        d.mkdir(exist_ok=True)
        for name in names:
            (out / name).rename(d / name)
            manifest["shards"][name]["part"] = i
    manifest["parts"] = len(parts)
    manifest["tokens"] = sum(s["tokens"] for s in manifest["shards"].values())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{manifest['tokens']} tokens in {len(parts)} parts")


if __name__ == "__main__":
    main()
