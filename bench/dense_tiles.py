"""The dense-tiles bound's problems (bench/attention_torch.py --dense-tiles): the window +
global pattern's work cut into independent dense attention problems, each query tile
against the keys ldqa's tile plan visits for it. Plain torch, so that its test
(tests/scripts/test_dense_tiles.py) runs on the CPU without FlexAttention or Triton."""
import torch


def dense_tiles(q, k, v, w, g, tile):
    """The problems of q, k, v [B, H, n, D] with a one-sided window w and the first g
    positions global: query tiles [B*H, T, tile, D] (rows past n zero) against gathered
    key spans [B*H, T, tile + 2 * W + g, D] (W: the window rounded up to 64-key tiles, as
    our plan visits them; spans clamped at the ends, so edge tiles repeat keys), and the
    g global rows against all n keys. Returns the (queries, keys, values) of each
    problem: [(qt, kt, vt), (qg, k, v)], the second only when g > 0."""
    bsz, heads, n, d = q.shape
    tiles = (n + tile - 1) // tile
    padded = tiles * tile
    reach = (w + 63) // 64 * 64
    span = torch.arange(tile + 2 * reach, device=q.device)
    local = (torch.arange(tiles, device=q.device)[:, None] * tile - reach + span).clamp(0, n - 1)
    index = torch.cat([torch.arange(g, device=q.device).expand(tiles, g), local], 1)  # [T, Lk]

    def gather(x):  # [B, H, n, D] -> [B*H, T, Lk, D]
        return x.reshape(bsz * heads, n, d)[:, index.reshape(-1)].reshape(bsz * heads, tiles, -1, d)
    qt = torch.nn.functional.pad(q, (0, 0, 0, padded - n)).reshape(bsz * heads, tiles, tile, d)
    return [(qt, gather(k), gather(v))] + ([(q[:, :, :g].contiguous(), k, v)] if g > 0 else [])
