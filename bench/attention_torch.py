#!/usr/bin/env python3
"""Sliding-window + global attention on the GPU machine, in ONE process on the SAME
inputs: ldqa's CUDA kernels (through libldqa_attention_capi.so and ctypes), PyTorch
SDPA dense flash attention (all n^2 pairs, the dense baseline) and FlexAttention
(torch.compile'd, with the equivalent block mask and mask_mod).

    python3 bench/attention_torch.py --lib build/bench/libldqa_attention_capi.so \
        --batch 1,8 --n 1024,4096,16384,65536 --json out.json

Times: triton.testing.do_bench median (it flushes L2 between runs). Useful TFLOP/s count
only the pairs the pattern allows (4 * D FLOPs per pair); SDPA's dense rate is printed
too. Peak memory: bytes allocated during one call beyond the inputs."""
import argparse
import ctypes
import json
import math
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from triton.testing import do_bench


def load(lib_path):
    lib = ctypes.CDLL(lib_path)
    lib.ldqa_attention_cuda.restype = ctypes.c_int
    lib.ldqa_attention_cuda.argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 7 + [ctypes.c_int] + [
        ctypes.c_void_p] * 5 + [ctypes.c_char_p, ctypes.c_int]
    lib.ldqa_attention_workspace_bytes.restype = ctypes.c_longlong
    lib.ldqa_attention_workspace_bytes.argtypes = [ctypes.c_int] * 7
    return lib


def ours_fn(lib, q, k, v, gmask, g, window):
    b, h, n, d = q.shape
    ws_bytes = lib.ldqa_attention_workspace_bytes(b, h, n, d, window, 0, g)
    err = ctypes.create_string_buffer(512)

    def run():
        out = torch.empty_like(q)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=q.device)
        rc = lib.ldqa_attention_cuda(b, h, n, d, 2 if q.dtype == torch.bfloat16 else 1, window, 0,
                                     q.data_ptr(), k.data_ptr(), v.data_ptr(), None, None, None,
                                     gmask.data_ptr(), g, None, None, out.data_ptr(),
                                     torch.cuda.current_stream().cuda_stream, ws.data_ptr(), err, 512)
        if rc != 0:
            raise RuntimeError(err.value.decode())
        return out
    return run


def useful_pairs(gmask, window):
    """Pairs the pattern allows, per head, summed over the batch."""
    b, n = gmask.shape
    idx = torch.arange(n, device=gmask.device)
    lo = (idx - window).clamp(min=0)
    hi = (idx + window).clamp(max=n - 1)
    in_window = (hi - lo + 1).double()
    csum = torch.cat([torch.zeros(b, 1, device=gmask.device, dtype=torch.long), gmask.long().cumsum(1)], 1)
    total = 0.0
    for s in range(b):
        g_total = csum[s, -1]
        g_in = csum[s, hi + 1] - csum[s, lo]
        local = (in_window + (g_total - g_in).double())[~gmask[s]].sum()
        total += float(local) + float(gmask[s].sum()) * n
    return total


def peak_bytes(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def rel_err(a, b):
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--n", default="1024,4096,16384,65536")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--globals", type=int, default=64)
    ap.add_argument("--dense-limit-s", type=float, default=1.5, help="skip dense SDPA above this estimated time")
    ap.add_argument("--json")
    args = ap.parse_args()
    lib = load(args.lib)
    torch.manual_seed(20261128)
    torch._dynamo.config.cache_size_limit = 64
    flex = torch.compile(flex_attention, dynamic=False)
    w, g = args.window, args.globals
    rows = []
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}", flush=True)
    print("| B | n | method | median ms | useful TFLOP/s | peak MiB | x ours | rel err vs ours |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for bsz in [int(x) for x in args.batch.split(",")]:
        for n in [int(x) for x in args.n.split(",")]:
            shape = (bsz, args.heads, n, args.d)
            q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            gmask = torch.zeros(bsz, n, dtype=torch.bool, device="cuda")
            for s in range(bsz):
                gmask[s, torch.randperm(n, device="cuda")[:g]] = True
            gbytes = gmask.to(torch.uint8).contiguous()
            pairs = useful_pairs(gmask, w) * args.heads
            flops = 4.0 * args.d * pairs

            results = {}
            run = ours_fn(lib, q, k, v, gbytes, g, w)
            ours_out = run()
            results["ldqa (ours)"] = (do_bench(run, warmup=25, rep=200, return_mode="median"), peak_bytes(run), 0.0)

            def mask_mod(b, h, qi, kv):
                return ((qi - kv).abs() <= w) | gmask[b, kv] | gmask[b, qi]
            block_mask = create_block_mask(mask_mod, bsz, None, n, n, device="cuda", _compile=True)
            flex_run = lambda: flex(q, k, v, block_mask=block_mask)
            flex_out = flex_run()
            results["FlexAttention (compiled)"] = (do_bench(flex_run, warmup=25, rep=200, return_mode="median"),
                                                   peak_bytes(flex_run), rel_err(flex_out, ours_out))
            del flex_out

            dense_est = 4.0 * args.d * n * n * bsz * args.heads / 450e12
            if dense_est <= args.dense_limit_s:
                def dense():
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        return F.scaled_dot_product_attention(q, k, v)
                results["SDPA flash (dense)"] = (do_bench(dense, warmup=10, rep=100, return_mode="median"),
                                                 peak_bytes(dense), float("nan"))
            ours_ms = results["ldqa (ours)"][0]
            for name, (ms, peak, err) in results.items():
                row = dict(batch=bsz, n=n, heads=args.heads, head_dim=args.d, window=w, globals=g, method=name,
                           ms=ms, useful_tflops=flops / (ms * 1e-3) / 1e12, peak_mib=peak / 2**20,
                           speedup_of_ours=ms / ours_ms, rel_err_vs_ours=err)
                rows.append(row)
                print(f"| {bsz} | {n} | {name} | {ms:.3f} | {row['useful_tflops']:.1f} | {row['peak_mib']:.1f} | "
                      f"{ms / ours_ms:.2f} | {err:.2e} |", flush=True)
            if dense_est > args.dense_limit_s:
                print(f"| {bsz} | {n} | SDPA flash (dense) | skipped: ~{dense_est:.1f} s per call at 450 TFLOP/s | | | | |",
                      flush=True)
            del q, k, v, block_mask
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
