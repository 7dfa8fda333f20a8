#!/usr/bin/env python3
"""bench/dense_tiles.py, the dense-tiles bound's problems, on the CPU: each query tile's
key span must hold every key the pattern lets any of its rows see (the window and the
global prefix) and no key outside what ldqa's tile plan visits for that tile (the
window rounded out to 64-key tiles, plus the globals); queries, keys and values must be
the right rows. Odd lengths, windows on and off 64-key boundaries, no globals.

    python3 tests/scripts/test_dense_tiles.py
"""
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
from dense_tiles import dense_tiles  # noqa: E402


def check(n, w, g, tile, bsz=2, heads=3, d=8):
    torch.manual_seed(n * 1000 + w * 10 + g + tile)
    q, k, v = (torch.randn(bsz, heads, n, d) for _ in range(3))
    # Column 0 of the keys and values holds the position, so that a gathered row says
    # where it came from; the other columns stay random.
    positions = torch.arange(n, dtype=torch.float32)
    k[..., 0] = positions
    v[..., 0] = -positions
    problems = dense_tiles(q, k, v, w, g, tile)
    assert len(problems) == (2 if g > 0 else 1), (n, w, g, tile, len(problems))
    qt, kt, vt = problems[0]
    tiles = (n + tile - 1) // tile
    reach = (w + 63) // 64 * 64
    assert qt.shape == (bsz * heads, tiles, tile, d), qt.shape
    assert kt.shape == vt.shape == (bsz * heads, tiles, g + tile + 2 * reach, d), kt.shape
    flat_q = q.reshape(bsz * heads, n, d)
    flat_k = k.reshape(bsz * heads, n, d)
    flat_v = v.reshape(bsz * heads, n, d)
    for t in range(tiles):
        rows = range(t * tile, min(n, (t + 1) * tile))
        got_q = qt[:, t, :len(rows)]
        assert torch.equal(got_q, flat_q[:, t * tile:t * tile + len(rows)]), (n, w, g, tile, t)
        assert not qt[:, t, len(rows):].any(), "rows past n must be zero"
        span = kt[:, t, :, 0].long()  # [B*H, Lk] positions
        assert torch.equal(span, span[:1].expand_as(span)), "every head and sequence sees one span"
        assert torch.equal(vt[:, t, :, 0].long(), -span), "values from the keys' positions"
        idx = span[0]
        assert torch.equal(kt[:, t], flat_k[:, idx]) and torch.equal(vt[:, t], flat_v[:, idx]), "whole rows"
        seen = set(idx.tolist())
        needed = set(range(min(g, n)))
        for i in rows:
            needed |= set(range(max(0, i - w), min(n, i + w + 1)))
        assert needed <= seen, (n, w, g, tile, t, sorted(needed - seen)[:5])
        visited = set(range(min(g, n))) | set(range(max(0, t * tile - reach), min(n, (t + 1) * tile + reach)))
        assert seen <= visited, (n, w, g, tile, t, sorted(seen - visited)[:5])
    if g > 0:
        qg, kg, vg = problems[1]
        assert torch.equal(qg, q[:, :, :g]) and kg is k and vg is v


def main():
    cases = 0
    for n in (1, 63, 64, 300, 1000):
        for w in (0, 1, 63, 64, 70, 200):
            for g in (0, 1, 5):
                for tile in (64, 128):
                    if g <= n:
                        check(n, w, g, tile)
                        cases += 1
    print(f"dense tiles: {cases} cases passed")


if __name__ == "__main__":
    main()
