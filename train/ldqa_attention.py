"""ldqa's sparse attention (window + global, Longformer semantics: attention/attention.hpp)
as a differentiable PyTorch op over the library's C face (attention/capi.cpp,
libldqa_attention_capi.so, loaded with ctypes): forward and backward on the CPU
(float32) or CUDA (fp16/bf16), on PyTorch's current stream, workspace from PyTorch's
allocator.

On torch >= 2.4 it is a `torch.library` custom op (`ldqa::sparse_attention`, with its
backward `ldqa::sparse_attention_backward`) with fake implementations, so torch.compile
treats it as one opaque node and `torch.library.opcheck` applies; on older torch (the
Debian 12 torch 1.13 of the CPU tests) the same calls run as an autograd.Function.

    out = sparse_attention(q, k, v, q_global, k_global, v_global, global_mask, key_mask,
                           window=128, max_global=66)

Tensors [B, H, n, D], except q_global, which may hold only the first R <= n rows
[B, H, R, D] when every global row lies below R (globals as a prefix, as the model puts
them; a sequence with a global row beyond comes out NaN on CUDA, an error on the CPU):
its gradient then has R rows too, and nothing is padded. Strided views are read and written in place (a projection's
[B, n, H, D] output transposed, slices): only a view whose last dim is not adjacent, or on
CUDA one at an address or with a stride that is not a multiple of 16 bytes, is copied.
Outputs and gradients come back as [B, H, n, D] views of [B, n, H, D] memory, the layout
the output projection reads without a copy. global_mask and
key_mask [B, n] (bool or uint8; key_mask non-zero = real token). max_global bounds the
globals of any one sequence (no host synchronisation on CUDA; a sequence over it comes
out NaN). The library is found at $LDQA_ATTENTION_LIB, else in the checkout's build
folders (build*/attention/) or .device/.
"""
import ctypes
import os
import pathlib
from typing import List, Optional, Tuple

import torch

_REPO = pathlib.Path(__file__).resolve().parent.parent
_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


class _Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in
                ("cuda", "batch", "heads", "n", "head_dim", "dtype", "window", "top_k", "max_global")]
    _fields_ += [("scale", ctypes.c_float), ("q_global_rows", ctypes.c_int)]


_lib = None


def library_path():
    env = os.environ.get("LDQA_ATTENTION_LIB")
    if env:
        return pathlib.Path(env)
    candidates = sorted(_REPO.glob("build*/attention/libldqa_attention_capi.so")) + [
        _REPO / ".device" / "libldqa_attention_capi.so"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("libldqa_attention_capi.so: not in $LDQA_ATTENTION_LIB, "
                            f"{_REPO}/build*/attention/ or {_REPO}/.device/ (build the attention_capi target)")


def load():
    """The C library, loaded once."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(library_path()))
        p, shape = ctypes.c_void_p, ctypes.POINTER(_Shape)
        lib.ldqa_attention_forward.restype = ctypes.c_int
        lib.ldqa_attention_forward.argtypes = [shape] + [p] * 14 + [ctypes.c_char_p, ctypes.c_int]
        lib.ldqa_attention_backward.restype = ctypes.c_int
        lib.ldqa_attention_backward.argtypes = [shape] + [p] * 21 + [ctypes.c_char_p, ctypes.c_int]
        lib.ldqa_attention_workspace_bytes.restype = ctypes.c_longlong
        lib.ldqa_attention_workspace_bytes.argtypes = [shape, ctypes.c_int]
        for name in ("ldqa_attention_cuda_available", "ldqa_attention_cached_plans"):
            if hasattr(lib, name):  # absent from libraries built before them
                getattr(lib, name).restype = ctypes.c_int
                getattr(lib, name).argtypes = []
        _lib = lib
    return _lib


def cuda_available():
    """Whether training can go through this op on the GPU: the library is found, was built
    with CUDA kernels and sees a device (False, not an error, where any of that is
    missing: train.py's --attention auto then takes FlexAttention)."""
    try:
        lib = load()
    except OSError:  # not found or not loadable
        return False
    if not hasattr(lib, "ldqa_attention_cuda_available"):  # a library from before the call
        return False
    return lib.ldqa_attention_cuda_available() == 1


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _shape_of(q, qg, window, max_global, scale):
    if q.dtype not in _DTYPE_CODE:
        raise TypeError(f"ldqa attention: dtype {q.dtype} (float32 on the CPU, float16/bfloat16 on CUDA)")
    b, h, n, d = q.shape
    qg_rows = qg.shape[2] if qg is not None and qg.shape[2] < n else 0
    return _Shape(1 if q.is_cuda else 0, b, h, n, d, _DTYPE_CODE[q.dtype], window, 0, max_global, scale, qg_rows)


def _stream_and_workspace(lib, shape, q, which):
    if not q.is_cuda:
        return None, None
    nbytes = lib.ldqa_attention_workspace_bytes(ctypes.byref(shape), which)
    if nbytes < 0:
        raise RuntimeError("ldqa attention: the library refused the shape")
    workspace = torch.empty(max(int(nbytes), 1), dtype=torch.uint8, device=q.device)
    return ctypes.c_void_p(torch.cuda.current_stream(q.device).cuda_stream), workspace


def _check(rc, err):
    if rc != 0:
        raise RuntimeError(err.value.decode(errors="replace"))


def _readable(t):
    """t itself when the library can read it through its strides, else a contiguous copy:
    the head_dim elements adjacent and, on CUDA, the address and every stride whole
    16-byte steps (the kernels copy rows 16 bytes at a time)."""
    if t is None:
        return None
    steps_ok = not t.is_cuda or (t.data_ptr() % 16 == 0 and
                                 all(s * t.element_size() % 16 == 0 for s in t.stride()[:3]))
    return t if t.stride(-1) == 1 and steps_ok else t.contiguous()


def _contiguous(*tensors):
    return [None if t is None else t.contiguous() for t in tensors]


def rows_major(like):
    """An uninitialised [B, H, n, D] tensor over [B, n, H, D] memory: what the op returns
    (real and fake alike), so that merging the heads back into rows is a view."""
    b, h, n, d = like.shape
    return torch.empty((b, n, h, d), dtype=like.dtype, device=like.device).transpose(1, 2)


def _gradients_like(q, qg):
    """The gradients' tensors: dq, dk, dv like q; with global projections dqg like qg
    (it may hold fewer rows), dkg and dvg like q."""
    if qg is None:
        return [rows_major(q) for _ in range(3)]
    return [rows_major(q) for _ in range(3)] + [rows_major(qg), rows_major(q), rows_major(q)]


def _strides(*tensors):
    """The (batch, head, row) element strides of each tensor, zeros for an absent one."""
    values = [s for t in tensors for s in (t.stride()[:3] if t is not None else (0, 0, 0))]
    return (ctypes.c_longlong * len(values))(*values)


def forward_raw(q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale):
    """(out, lse): out [B, H, n, D] over [B, n, H, D] memory, lse float32 [B, H, n]."""
    lib = load()
    q, k, v, qg, kg, vg = (_readable(t) for t in (q, k, v, qg, kg, vg))
    global_mask, key_mask = _contiguous(global_mask, key_mask)
    shape = _shape_of(q, qg, window, max_global, scale)
    out = rows_major(q)
    lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    stream, workspace = _stream_and_workspace(lib, shape, q, 0)
    err = ctypes.create_string_buffer(1024)
    _check(lib.ldqa_attention_forward(ctypes.byref(shape), _ptr(q), _ptr(k), _ptr(v), _ptr(qg), _ptr(kg), _ptr(vg),
                                      _ptr(global_mask), None, _ptr(key_mask), _ptr(out), _ptr(lse),
                                      _strides(q, k, v, qg, kg, vg, out), stream, _ptr(workspace), err, len(err)), err)
    return out, lse


def backward_raw(d_out, q, k, v, qg, kg, vg, global_mask, key_mask, out, lse, window, max_global, scale):
    """[dq, dk, dv] (+ [dqg, dkg, dvg] with separate global projections), each [B, H, n, D]
    over [B, n, H, D] memory."""
    lib = load()
    d_out, q, k, v, qg, kg, vg, out = (_readable(t) for t in (d_out, q, k, v, qg, kg, vg, out))
    global_mask, key_mask, lse = _contiguous(global_mask, key_mask, lse)
    shape = _shape_of(q, qg, window, max_global, scale)
    grads = _gradients_like(q, qg)
    globals_ = grads[3:] if qg is not None else [None, None, None]
    stream, workspace = _stream_and_workspace(lib, shape, q, 1)
    err = ctypes.create_string_buffer(1024)
    _check(lib.ldqa_attention_backward(ctypes.byref(shape), _ptr(q), _ptr(k), _ptr(v), _ptr(qg), _ptr(kg), _ptr(vg),
                                       _ptr(global_mask), None, _ptr(key_mask), _ptr(out), _ptr(lse), _ptr(d_out),
                                       *[_ptr(g) for g in grads[:3]], *[_ptr(g) for g in globals_],
                                       _strides(q, k, v, qg, kg, vg, out, d_out, *grads[:3], *globals_), stream,
                                       _ptr(workspace), err, len(err)), err)
    return grads


HAVE_CUSTOM_OP = hasattr(torch.library, "custom_op")

if HAVE_CUSTOM_OP:
    @torch.library.custom_op("ldqa::sparse_attention", mutates_args=())
    def _op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, qg: Optional[torch.Tensor],
            kg: Optional[torch.Tensor], vg: Optional[torch.Tensor], global_mask: Optional[torch.Tensor],
            key_mask: Optional[torch.Tensor], window: int, max_global: int,
            scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return forward_raw(q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale)

    @_op.register_fake
    def _(q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale):
        return rows_major(q), torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)

    @torch.library.custom_op("ldqa::sparse_attention_backward", mutates_args=())
    def _op_backward(d_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     qg: Optional[torch.Tensor], kg: Optional[torch.Tensor], vg: Optional[torch.Tensor],
                     global_mask: Optional[torch.Tensor], key_mask: Optional[torch.Tensor], out: torch.Tensor,
                     lse: torch.Tensor, window: int, max_global: int, scale: float) -> List[torch.Tensor]:
        return backward_raw(d_out, q, k, v, qg, kg, vg, global_mask, key_mask, out, lse, window, max_global, scale)

    @_op_backward.register_fake
    def _(d_out, q, k, v, qg, kg, vg, global_mask, key_mask, out, lse, window, max_global, scale):
        return _gradients_like(q, qg)

    def _setup_context(ctx, inputs, output):
        q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale = inputs
        ctx.save_for_backward(q, k, v, qg, kg, vg, global_mask, key_mask, *output)
        ctx.params = (window, max_global, scale)

    def _autograd_backward(ctx, d_out, _d_lse):
        q, k, v, qg, kg, vg, global_mask, key_mask, out, lse = ctx.saved_tensors
        grads = _op_backward(d_out, q, k, v, qg, kg, vg, global_mask, key_mask, out, lse, *ctx.params)
        dqg, dkg, dvg = grads[3:] if qg is not None else (None, None, None)
        return grads[0], grads[1], grads[2], dqg, dkg, dvg, None, None, None, None, None

    _op.register_autograd(_autograd_backward, setup_context=_setup_context)

    def _apply(*args):
        return _op(*args)[0]
else:
    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale):
            out, lse = forward_raw(q, k, v, qg, kg, vg, global_mask, key_mask, window, max_global, scale)
            ctx.save_for_backward(q, k, v, qg, kg, vg, global_mask, key_mask, out, lse)
            ctx.params = (window, max_global, scale)
            return out

        @staticmethod
        def backward(ctx, d_out):
            q, k, v, qg, kg, vg, global_mask, key_mask, out, lse = ctx.saved_tensors
            grads = backward_raw(d_out, q, k, v, qg, kg, vg, global_mask, key_mask, out, lse, *ctx.params)
            dqg, dkg, dvg = grads[3:] if qg is not None else (None, None, None)
            return grads[0], grads[1], grads[2], dqg, dkg, dvg, None, None, None, None, None

    def _apply(*args):
        return _Function.apply(*args)


def sparse_attention(q, k, v, q_global=None, k_global=None, v_global=None, global_mask=None, key_mask=None, *,
                     window, max_global=-1, scale=0.0):
    """Window + global attention, [B, H, n, D] -> [B, H, n, D]; differentiable in q, k, v and
    the global projections. Padded rows (key_mask 0) and rows with no allowed key are 0."""
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"ldqa attention: q, k, v must share one [B, H, n, D] shape: {q.shape} {k.shape} {v.shape}")
    separate = [t is not None for t in (q_global, k_global, v_global)]
    if any(separate) and not all(separate):
        raise ValueError("ldqa attention: give all three global projections or none")
    for name, t in (("q_global", q_global), ("k_global", k_global), ("v_global", v_global)):
        if t is None:
            continue
        # q_global may hold only the first rows (globals as a prefix); the others are full.
        rows = t.shape[2] if name == "q_global" and t.dim() == 4 and 1 <= t.shape[2] <= q.shape[2] else q.shape[2]
        if tuple(t.shape) != (q.shape[0], q.shape[1], rows, q.shape[3]) or t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"ldqa attention: {name} of shape {tuple(t.shape)} {t.dtype} on {t.device}; q is "
                             f"{tuple(q.shape)} {q.dtype} on {q.device} (q_global may hold fewer rows)")
    masks = []
    for name, m in (("global_mask", global_mask), ("key_mask", key_mask)):
        if m is not None:
            if m.shape != (q.shape[0], q.shape[2]):
                raise ValueError(f"ldqa attention: {name} must be [B, n] = {(q.shape[0], q.shape[2])}, got {m.shape}")
            m = m.to(device=q.device, dtype=torch.uint8)
        masks.append(m)
    if global_mask is not None and max_global < 0:
        max_global = q.shape[2]
    return _apply(q, k, v, q_global, k_global, v_global, masks[0], masks[1], int(window), int(max_global),
                  float(scale))
