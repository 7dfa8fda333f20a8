#!/usr/bin/env python3
"""The PyTorch op over our attention library (train/ldqa_attention.py), on the CPU:
its output and all six gradients against a float64 dense reference written here from
attention.hpp's definition (random inputs, odd length, padding with holes, two prefix
lengths), strided views (a [B, n, H, D] buffer, q/k/v as blocks of one fused
projection, padded rows: read in place, not copied), q_global of the global prefix's rows
only, the no-globals case, argument errors, the library's bounded plan cache, the dense
path's float32 scores under bf16 inputs, and the encoder of
train/model.py through the op against its dense path (output and every parameter's
gradient), and train.py pretraining a tiny model through the op (--attention ldqa, its
start-up check against the dense path included) ending where the dense path ends. The
library comes from $LDQA_ATTENTION_LIB (ctest passes the built one).

    LDQA_ATTENTION_LIB=build/attention/libldqa_attention_capi.so python3 tests/train/test_attention_op.py
"""
import contextlib
import json
import pathlib
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "train"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ldqa_attention  # noqa: E402
import test_ddp  # noqa: E402
from model import Config, Encoder  # noqa: E402


def reference(q, k, v, qg, kg, vg, is_global, valid, window):
    """attention.hpp in float64: a global row sees every valid key through the global
    projections; a local row sees valid keys within the window and every global key."""
    n = q.shape[2]
    idx = torch.arange(n)
    near = (idx[:, None] - idx[None, :]).abs() <= window
    local = (near[None] | is_global[:, None, :]) & valid[:, None, :] & valid[:, :, None]  # [B, n, n]
    glob = valid[:, None, :].expand(-1, n, -1) & (is_global & valid)[:, :, None]

    def attend(qx, kx, vx, mask):
        s = (qx @ kx.transpose(-1, -2)) / qx.shape[-1] ** 0.5
        s = s.masked_fill(~mask[:, None], float("-inf"))
        return torch.softmax(s, -1).nan_to_num(0.0) @ vx

    out = attend(q, k, v, local)
    if qg is not None:
        rows = (is_global & valid)[:, None, :, None]
        out = torch.where(rows, attend(qg, kg, vg, glob), out)
    return out * valid[:, None, :, None]


def random_case(seed, b=2, h=3, n=150, d=16, separate=True):
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.empty(b, h, n, d).uniform_(-2, 2, generator=g) for _ in range(6 if separate else 3)]
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, 120:] = False
    valid[0, 40:43] = False  # a hole
    glen = torch.tensor([5, 11])
    is_global = (torch.arange(n)[None, :] < glen[:, None]) & valid
    d_out = torch.empty(b, h, n, d).uniform_(-1, 1, generator=g)
    return tensors, is_global, valid, d_out


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


class AttentionOpTest(unittest.TestCase):
    window = 7

    def run_op(self, tensors, is_global, valid, separate=True):
        xs = [t.clone().requires_grad_(True) for t in tensors]
        qg, kg, vg = xs[3:] if separate else (None, None, None)
        out = ldqa_attention.sparse_attention(xs[0], xs[1], xs[2], qg, kg, vg, is_global if separate else None,
                                              valid, window=self.window, max_global=11)
        return out, xs

    def check_against_reference(self, separate):
        tensors, is_global, valid, d_out = random_case(1, separate=separate)
        out, xs = self.run_op(tensors, is_global, valid, separate)
        (out * d_out).sum().backward()
        ref_in = [t.double().requires_grad_(True) for t in tensors]
        qg, kg, vg = ref_in[3:] if separate else (None, None, None)
        ref = reference(ref_in[0], ref_in[1], ref_in[2], qg, kg, vg, is_global if separate else valid & False,
                        valid, self.window)
        (ref * d_out.double()).sum().backward()
        self.assertLess(rel(out, ref), 1e-5)
        for name, x, r in zip(("q", "k", "v", "qg", "kg", "vg"), xs, ref_in):
            with self.subTest(gradient=name):
                self.assertTrue(torch.isfinite(x.grad).all())
                self.assertLess(rel(x.grad, r.grad), 1e-4)
        padded = ~valid
        for x in xs:  # padding gets exactly nothing
            self.assertEqual(x.grad.permute(0, 2, 1, 3)[padded].abs().max().item(), 0.0)

    def test_matches_reference_with_global_projections(self):
        self.check_against_reference(separate=True)

    def test_matches_reference_without_globals(self):
        self.check_against_reference(separate=False)

    def test_strided_views(self):
        tensors, is_global, valid, d_out = random_case(2)
        # [B, n, H, D] storage seen as [B, H, n, D], as a model's split heads are
        strided = [t.transpose(1, 2).contiguous().transpose(1, 2) for t in tensors]
        self.assertFalse(strided[0].is_contiguous())
        a, xa = self.run_op(tensors, is_global, valid)
        b, xb = self.run_op(strided, is_global, valid)
        (a * d_out).sum().backward()
        (b * d_out).sum().backward()
        self.assertTrue(torch.equal(a, b))
        for x, y in zip(xa, xb):
            self.assertTrue(torch.equal(x.grad, y.grad))
        # Read through their strides, not copied; the output is [B, n, H, D] memory.
        self.assertIs(ldqa_attention._readable(strided[0]), strided[0])
        self.assertTrue(b.transpose(1, 2).is_contiguous())

    def test_fused_projection_and_padded_rows(self):
        """q, k, v as column blocks of one [B, n, 3 * H * D] projection output and the
        global projections with padded rows: the same output and gradients as contiguous
        copies, the gradient of the fused buffer landing in its three blocks."""
        tensors, is_global, valid, d_out = random_case(5)
        b, h, n, d = tensors[0].shape
        fused = torch.stack([t.transpose(1, 2) for t in tensors[:3]], dim=2).reshape(b, n, 3 * h * d)
        fused.requires_grad_(True)
        blocks = fused.view(b, n, 3, h, d)
        q, k, v = (blocks[:, :, i].transpose(1, 2) for i in range(3))
        padded = [torch.nn.functional.pad(t, (0, 3)).requires_grad_(True) for t in tensors[3:]]
        qg, kg, vg = (t[..., :d] for t in padded)
        self.assertEqual(q.stride(), (n * 3 * h * d, d, 3 * h * d, 1))
        self.assertEqual(qg.stride()[2], d + 3)
        for view in (q, qg):
            self.assertIs(ldqa_attention._readable(view), view)
        out = ldqa_attention.sparse_attention(q, k, v, qg, kg, vg, is_global, valid, window=self.window,
                                              max_global=11)
        (out * d_out).sum().backward()
        want, xs = self.run_op(tensors, is_global, valid)
        (want * d_out).sum().backward()
        self.assertTrue(torch.equal(out, want))
        grads = fused.grad.view(b, n, 3, h, d)
        for i in range(3):
            self.assertTrue(torch.equal(grads[:, :, i].transpose(1, 2), xs[i].grad))
        for t, x in zip(padded, xs[3:]):
            self.assertTrue(torch.equal(t.grad[..., :d], x.grad))
            self.assertEqual(t.grad[..., d:].abs().max().item(), 0.0)

    def test_query_global_of_the_first_rows_only(self):
        """q_global holding only the rows up to the last global one (the model's prefix):
        the output and the other gradients as with a full-length q_global, its gradient
        those rows of the full one (whose other rows are zero); a global row beyond them
        is the library's error."""
        tensors, is_global, valid, d_out = random_case(6)
        rows = 11  # the longest global prefix in random_case
        full, xs = self.run_op(tensors, is_global, valid)
        (full * d_out).sum().backward()
        short = [t.clone().requires_grad_(True) for t in tensors]
        qg_rows = short[3][:, :, :rows].detach().clone().requires_grad_(True)
        out = ldqa_attention.sparse_attention(short[0], short[1], short[2], qg_rows, short[4], short[5], is_global,
                                              valid, window=self.window, max_global=11)
        (out * d_out).sum().backward()
        self.assertTrue(torch.equal(out, full))
        self.assertEqual(qg_rows.grad.shape, qg_rows.shape)
        self.assertTrue(torch.equal(qg_rows.grad, xs[3].grad[:, :, :rows]))
        self.assertEqual(xs[3].grad[:, :, rows:].abs().max().item(), 0.0)
        for i in (0, 1, 2, 4, 5):
            self.assertTrue(torch.equal(short[i].grad, xs[i].grad))
        beyond = is_global.clone()
        beyond[0, 30] = True
        with self.assertRaisesRegex(RuntimeError, "q_global_rows"):
            ldqa_attention.sparse_attention(tensors[0], tensors[1], tensors[2], tensors[3][:, :, :rows], tensors[4],
                                            tensors[5], beyond, valid, window=self.window, max_global=12)

    def test_argument_errors(self):
        tensors, is_global, valid, _ = random_case(3)
        q, k, v, qg, kg, vg = tensors
        with self.assertRaisesRegex(ValueError, "all three"):
            ldqa_attention.sparse_attention(q, k, v, qg, None, vg, is_global, valid, window=3)
        with self.assertRaisesRegex(ValueError, "fewer rows"):  # q_global's rows, but not its width
            ldqa_attention.sparse_attention(q, k, v, qg[..., :-1], kg, vg, is_global, valid, window=3)
        with self.assertRaisesRegex(ValueError, "fewer rows"):  # only q_global may be short
            ldqa_attention.sparse_attention(q, k, v, qg, kg[:, :, :5], vg, is_global, valid, window=3)
        with self.assertRaisesRegex(ValueError, "share one"):
            ldqa_attention.sparse_attention(q, k[:, :, :-1], v, window=3)
        with self.assertRaisesRegex(ValueError, r"\[B, n\]"):
            ldqa_attention.sparse_attention(q, k, v, key_mask=valid[:, :-1], window=3)
        with self.assertRaisesRegex(TypeError, "dtype"):
            ldqa_attention.sparse_attention(q.double(), k.double(), v.double(), window=3)
        with self.assertRaisesRegex(RuntimeError, "window"):  # the library's own message
            ldqa_attention.sparse_attention(q, k, v, window=-5)

    def test_plan_cache_keeps_the_recent_shapes(self):
        """The library keeps the plans of the 64 shapes called last: a caller with a new
        length per batch must not grow it for ever. A length evicted and called again
        gives the same output as the first time."""
        lib = ldqa_attention.load()
        g = torch.Generator().manual_seed(8)
        first = None
        for n in range(1000, 1070):  # 70 lengths no other test uses
            q, k, v = (torch.empty(1, 1, n, 8).uniform_(-2, 2, generator=g) for _ in range(3))
            out = ldqa_attention.sparse_attention(q, k, v, window=3)
            if first is None:
                first = (q, k, v, out)
            self.assertLessEqual(lib.ldqa_attention_cached_plans(), 64)
        self.assertEqual(lib.ldqa_attention_cached_plans(), 64)
        q, k, v, out = first  # n = 1000: evicted by the 64 lengths after it
        self.assertTrue(torch.equal(ldqa_attention.sparse_attention(q, k, v, window=3), out))


class AutoAttentionTest(unittest.TestCase):
    """train.py --attention auto: our op on CUDA where its library has CUDA kernels, else
    FlexAttention; dense on the CPU. tests/gpu/test_attention_op_gpu.py checks the CUDA side."""

    def test_no_library_means_no_cuda_path(self):
        import os
        saved_lib, saved_env = ldqa_attention._lib, os.environ.get("LDQA_ATTENTION_LIB")
        try:
            ldqa_attention._lib = None
            os.environ["LDQA_ATTENTION_LIB"] = "/nonexistent/libldqa_attention_capi.so"
            self.assertFalse(ldqa_attention.cuda_available())  # an answer, not an exception
        finally:
            ldqa_attention._lib = saved_lib
            if saved_env is None:
                os.environ.pop("LDQA_ATTENTION_LIB", None)
            else:
                os.environ["LDQA_ATTENTION_LIB"] = saved_env

    def test_without_a_gpu_auto_is_dense(self):
        if torch.cuda.is_available():
            self.skipTest("a GPU: tests/gpu/test_attention_op_gpu.py")
        ldqa_attention.load().ldqa_attention_cuda_available  # the C face has the call (else AttributeError)
        self.assertFalse(ldqa_attention.cuda_available())
        import train
        self.assertEqual(train.auto_attention(torch.device("cpu")), "dense")


class DenseReferenceTest(unittest.TestCase):
    def test_bf16_inputs_keep_float32_scores(self):
        """The dense path (the training A/B's rounding control, and Flex's global rows) in
        bf16 is within bf16's rounding of its own output: logits of magnitude ~30 rounded
        to bf16 (spacing 0.125) before the softmax would miss by several percent. Also
        under bf16 autocast, as training runs it: autocast would run `q.float() @ k.float()`
        as a bf16 matmul with a bf16 result (the A/B of 2026-12-06 ran its dense arm so)."""
        import model
        g = torch.Generator().manual_seed(21)
        b, h, n, d = 2, 3, 97, 32
        q, k, v = (torch.empty(b, h, n, d).uniform_(-1, 1, generator=g) for _ in range(3))
        q = q * 12  # logits with a spread of tens: the softmax is sharp, rounding shows
        valid = torch.ones(b, n, dtype=torch.bool)
        valid[1, 80:] = False
        is_global = (torch.arange(n)[None, :] < torch.tensor([[3], [0]])) & valid
        mask = model.local_mask_dense(valid, is_global, 20)
        qd, kd, vd = (x.bfloat16().double() for x in (q, k, v))  # the same bf16 inputs, exactly
        want = reference(qd, kd, vd, None, None, None, is_global, valid, 20)
        rows = valid[:, None, :, None].expand_as(want)
        for name, context in (("plain", contextlib.nullcontext),
                              ("bf16 autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
            with self.subTest(name), context():
                got = model.masked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask).double()
            err = ((got - want).abs()[rows].max() / want.abs()[rows].max()).item()
            # the probabilities and the output rounded to bf16 (2^-9 each, relative), float32 sums
            self.assertLess(err, 1e-2, name)


class EncoderThroughOpTest(unittest.TestCase):
    def test_encoder_matches_dense_path(self):
        torch.manual_seed(4)
        cfg = Config(vocab_size=300, hidden=64, layers=2, heads=4, ffn=128, window=9, rotary_dims=8)
        model = Encoder(cfg)
        for layer in model.layers:
            layer.attention.init_global_from_local()
            with torch.no_grad():  # distinct global projections, so a mix-up would show
                layer.attention.query_global.weight.add_(0.05 * torch.randn_like(layer.attention.query_global.weight))
        b, n = 2, 97
        ids = torch.randint(5, cfg.vocab_size, (b, n))
        types = torch.ones_like(ids)
        valid = torch.ones(b, n, dtype=torch.bool)
        valid[1, 70:] = False
        glen = torch.tensor([6, 13])
        weight = torch.randn(b, n, cfg.hidden)
        results = []
        for path in ("ldqa", "dense"):
            model.zero_grad(set_to_none=True)
            out = model(ids, types, model.plan(valid, glen, path))
            (out * weight).sum().backward()
            results.append((out.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                                           if p.grad is not None}))
        (out_a, grads_a), (out_d, grads_d) = results
        self.assertLess(rel(out_a[valid], out_d[valid]), 1e-5)
        self.assertEqual(grads_a.keys(), grads_d.keys())
        for name in grads_d:
            with self.subTest(parameter=name):
                self.assertLess(rel(grads_a[name], grads_d[name]), 1e-4)


def train_through_op_and_dense(tmp, args):
    """The same train.py run (tiny model, data under tmp/data) through our op and through
    dense attention; the largest difference of their final weights."""
    states = {}
    for path in ("ldqa", "dense"):
        out = tmp / path
        states[path] = test_ddp.run(1, out, [
            "--data", str(tmp / "data"), "--out", str(out), "--tokenizer",
            str(test_ddp.ROOT / "models/ldqa-small/tokenizer.model"), "--config", test_ddp.CONFIG,
            "--workers", "1", "--attention", path, "--dump-state", str(out / "state.pt"), *args])
    return max((states["ldqa"][k] - states["dense"][k]).abs().max().item() for k in states["dense"])


class TrainThroughOpTest(unittest.TestCase):
    def test_pretraining_through_the_op_ends_where_dense_ends(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            test_ddp.make_corpus(tmp / "data")
            worst = train_through_op_and_dense(tmp, [
                "--pretrain-steps", "3", "--pretrain-long-minutes", "0", "--pretrain-len", "64",
                "--pretrain-batch", "4", "--skip-finetune"])
            log = (tmp / "ldqa" / "train_log.jsonl").read_text()
            self.assertIn('"attention": "ldqa"', log)
            self.assertIn('"phase": "check"', log)  # the start-up check against dense ran
            self.assertLess(worst, 1e-4)

    def test_finetuning_on_long_windows_through_the_op_ends_where_dense_ends(self):
        # --para-batch 0: long windows only (scripts/device-train-ab.sh's 4096-token
        # throughput run); questions of different lengths and padded windows go through
        # the op's global rows and key masks, forward and backward.
        import random
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            test_ddp.make_squad(tmp / "data", random.Random(5))
            worst = train_through_op_and_dense(tmp, [
                "--pretrain-minutes", "0", "--pretrain-long-minutes", "0", "--para-batch", "0",
                "--long-share", "1", "--long-len", "192", "--long-batch", "2", "--finetune-steps", "4",
                "--eval-settings", "none", "--log-every", "2"])
            records = [json.loads(x) for x in (tmp / "ldqa" / "train_log.jsonl").read_text().splitlines()]
            data = next(r for r in records if r.get("event") == "data")
            self.assertEqual(data["paragraph_features"], 0)
            self.assertGreater(data["long_features"], 0)
            self.assertTrue(all(r["tokens_per_s"] > 0 for r in records if r.get("phase") == "finetune" and "step" in r))
            self.assertLess(worst, 1e-4)


if __name__ == "__main__":
    unittest.main()
