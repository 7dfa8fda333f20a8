#!/usr/bin/env python3
"""train/qa_data.spread_sample picks the questions `ldqa eval --limit N` picks (the C++
eval::spread_sample, tests/eval/test_squad.cpp): the same fixed cases, and on random
sizes the same closed form, in order, evenly spaced. PyTorch's and the C++ evaluation
are compared on `--limit N` subsets, so both must ask the same questions.

    python3 tests/train/test_spread_sample.py
"""
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "train"))
import qa_data  # noqa: E402


def main():
    assert qa_data.spread_sample(10, 3) == [1, 5, 8]
    assert qa_data.spread_sample(10, 1) == [5]
    assert qa_data.spread_sample(7, 7) == list(range(7))
    assert qa_data.spread_sample(4, 0) == [0, 1, 2, 3]
    assert qa_data.spread_sample(4, -3) == [0, 1, 2, 3]
    assert qa_data.spread_sample(3, 50) == [0, 1, 2]
    assert qa_data.spread_sample(0, 5) == []
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    for _ in range(500):
        total, wanted = rng.randint(1, 20000), rng.randint(1, 600)
        picked = qa_data.spread_sample(total, wanted)
        assert len(picked) == min(total, wanted), (seed, total, wanted)
        assert picked[-1] < total, (seed, total, wanted)
        stretch = total // len(picked)
        for a, b in zip(picked, picked[1:]):
            assert b - a in (stretch, stretch + 1), (seed, total, wanted, a, b)
    print("spread_sample: OK")


if __name__ == "__main__":
    main()
