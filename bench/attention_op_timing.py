#!/usr/bin/env python3
"""Where a PyTorch process's time for our attention op goes (the forward, bf16, D = 64,
globals as a prefix), to tell host overhead from kernel time when bench/attention_torch.py
and the C++ bench disagree:

- hosts: per shape, the host time of one `forward_raw` call (calls queued, then one
  synchronisation), the Python pieces of that call timed alone, and the call timed three
  ways: triton's do_bench (an L2 flush before each call, as bench/attention_torch.py
  times), back to back between two CUDA events, and the profiler's kernel time;
- layouts: at one shape, the library called through ctypes directly with the output in
  the op's [B, n, H, D] memory or contiguous [B, H, n, D], with and without lse, on randn
  and on uniform [-2, 2) inputs (the C++ bench's): the median of 5 groups of 20 calls.

    python3 bench/attention_op_timing.py --lib .device/libldqa_attention_capi.so
"""
import argparse
import ctypes
import os
import pathlib
import sys
import time

import torch
from triton.testing import do_bench


def per_call_us(fn, reps):
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps * 1e6


def back_to_back_ms(fn, calls):
    """Milliseconds per call of `calls` calls queued back to back between two CUDA events."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / calls


def hosts(la, window, globals_):
    for b, h, n in ((1, 12, 1024), (1, 6, 4096), (8, 12, 16384), (1, 12, 16384)):
        q, k, v = (torch.randn(b, h, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        gm = torch.zeros(b, n, dtype=torch.uint8, device="cuda")
        gm[:, :globals_] = 1

        def call():
            return la.forward_raw(q, k, v, None, None, None, gm, None, window, globals_, 0.0)
        for _ in range(20):
            call()
        torch.cuda.synchronize()
        host = per_call_us(call, 100)
        torch.cuda.synchronize()
        lib = la.load()
        shape = la._shape_of(q, None, window, globals_, 0.0)
        out = la.rows_major(q)
        prep = per_call_us(lambda: ([la._readable(t) for t in (q, k, v)], la._contiguous(gm),
                                    la._shape_of(q, None, window, globals_, 0.0)), 100)
        alloc = per_call_us(lambda: (la.rows_major(q), torch.empty(q.shape[:3], dtype=torch.float32,
                                                                     device=q.device)), 100)
        workspace = per_call_us(lambda: la._stream_and_workspace(lib, shape, q, 0), 100)
        strides = per_call_us(lambda: (la._strides(q, k, v, None, None, None, out),
                                       ctypes.create_string_buffer(1024)), 100)
        torch.cuda.synchronize()
        bench = do_bench(call, warmup=25, rep=200, return_mode="median")
        back_to_back = back_to_back_ms(call, 50)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                call()
            torch.cuda.synchronize()
        kernels = sum(ev.device_time_total for ev in prof.key_averages()) / 20 / 1e3
        print(f"B{b} H{h} n{n}: host/call {host:.1f} us (prep {prep:.1f}, alloc {alloc:.1f}, workspace+stream "
              f"{workspace:.1f}, strides+errbuf {strides:.1f}); do_bench {bench * 1e3:.1f} us; back-to-back "
              f"{back_to_back * 1e3:.1f} us; profiler kernels {kernels * 1e3:.1f} us", flush=True)


def layouts(la, window, globals_, b=8, h=12, n=16384):
    lib = la.load()
    gm = torch.zeros(b, n, dtype=torch.uint8, device="cuda")
    gm[:, :globals_] = 1
    shape = la._shape_of(torch.empty(b, h, n, 64, device="meta", dtype=torch.bfloat16), None, window, globals_, 0.0)
    shape.cuda = 1
    workspace = torch.empty(lib.ldqa_attention_workspace_bytes(ctypes.byref(shape), 0), dtype=torch.uint8,
                            device="cuda")
    err = ctypes.create_string_buffer(1024)
    for kind in ("randn", "uniform"):
        if kind == "randn":
            q, k, v = (torch.randn(b, h, n, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        else:
            q, k, v = ((torch.rand(b, h, n, 64, device="cuda") * 4 - 2).to(torch.bfloat16) for _ in range(3))
        for layout in ("rows", "heads"):
            out = la.rows_major(q) if layout == "rows" else torch.empty_like(q)
            for with_lse in (True, False):
                lse = torch.empty(b, h, n, dtype=torch.float32, device="cuda") if with_lse else None
                strides = la._strides(q, k, v, None, None, None, out)
                stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

                def call():
                    rc = lib.ldqa_attention_forward(ctypes.byref(shape), la._ptr(q), la._ptr(k), la._ptr(v), None,
                                                    None, None, la._ptr(gm), None, None, la._ptr(out), la._ptr(lse),
                                                    strides, stream, la._ptr(workspace), err, len(err))
                    if rc != 0:
                        raise RuntimeError(err.value.decode())
                for _ in range(10):
                    call()
                times = sorted(back_to_back_ms(call, 20) for _ in range(5))
                print(f"{kind:8s} out {layout:5s} lse {with_lse!s:5s}: {times[2] * 1e3:.1f} us (min {times[0] * 1e3:.1f})",
                      flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libldqa_attention_capi.so")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--globals", type=int, default=64)
    ap.add_argument("--only", choices=("hosts", "layouts"), help="one of the two parts")
    args = ap.parse_args()
    os.environ["LDQA_ATTENTION_LIB"] = args.lib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "train"))
    import ldqa_attention as la
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    if args.only in (None, "hosts"):
        hosts(la, args.window, args.globals)
    if args.only in (None, "layouts"):
        layouts(la, args.window, args.globals)


if __name__ == "__main__":
    sys.exit(main())
