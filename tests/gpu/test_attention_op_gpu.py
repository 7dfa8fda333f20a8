#!/usr/bin/env python3
"""The PyTorch op on CUDA (the GPU machine's torch >= 2.4): torch.library.opcheck of the
custom op and its backward (also with q_global of the prefix rows only), bf16 output and gradients against the float64 reference of
tests/train/test_attention_op.py, the op inside torch.compile equal to eager, and the
encoder through the op under autocast against FlexAttention's path.

    LDQA_ATTENTION_LIB=.device/libldqa_attention_capi.so python3 tests/gpu/test_attention_op_gpu.py
"""
import pathlib
import sys
import unittest

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "train"))
sys.path.insert(0, str(ROOT / "tests" / "train"))
import ldqa_attention  # noqa: E402
from model import HAVE_FLEX, Config, Encoder  # noqa: E402
from test_attention_op import random_case, reference, rel  # noqa: E402


def on_gpu(seed, dtype=torch.bfloat16):
    tensors, is_global, valid, d_out = random_case(seed, b=2, h=4, n=333, d=64)
    cuda = [t.to("cuda", dtype) for t in tensors]
    return tensors, cuda, is_global, valid, d_out


class OpOnCuda(unittest.TestCase):
    def test_auto_attention_takes_the_op(self):
        self.assertTrue(ldqa_attention.cuda_available())
        import train
        self.assertEqual(train.auto_attention(torch.device("cuda")), "ldqa")

    def test_opcheck(self):
        self.assertTrue(ldqa_attention.HAVE_CUSTOM_OP)
        _, cuda, is_global, valid, _ = on_gpu(1)
        args = (*[t.requires_grad_(True) for t in cuda], is_global.cuda().to(torch.uint8),
                valid.cuda().to(torch.uint8), 7, 11, 0.0)
        torch.library.opcheck(torch.ops.ldqa.sparse_attention.default, args)

    def test_opcheck_with_q_global_of_the_prefix_rows(self):
        """q_global holding only the rows up to the last global one (as train/model.py
        passes it): opcheck, and its gradient those rows of the full-length run's."""
        _, cuda, is_global, valid, d_out = on_gpu(4)
        short = [t.clone() for t in cuda]
        short[3] = short[3][:, :, :11].contiguous()
        args = (*[t.requires_grad_(True) for t in short], is_global.cuda().to(torch.uint8),
                valid.cuda().to(torch.uint8), 7, 11, 0.0)
        torch.library.opcheck(torch.ops.ldqa.sparse_attention.default, args)
        for t in short:
            t.grad = None  # whatever opcheck's own backward left
        full = [t.clone().requires_grad_(True) for t in cuda]
        for xs in (short, full):
            out = ldqa_attention.sparse_attention(*xs, is_global.cuda(), valid.cuda(), window=7, max_global=11)
            (out.float() * d_out.cuda()).sum().backward()
        self.assertTrue(torch.equal(short[3].grad, full[3].grad[:, :, :11]))
        for a, b in zip(short[:3] + short[4:], full[:3] + full[4:]):
            self.assertTrue(torch.equal(a.grad, b.grad))

    def test_matches_float64_reference(self):
        tensors, cuda, is_global, valid, d_out = on_gpu(2)
        xs = [t.requires_grad_(True) for t in cuda]
        out = ldqa_attention.sparse_attention(*xs, is_global.cuda(), valid.cuda(), window=7, max_global=11)
        (out.float() * d_out.cuda()).sum().backward()
        ref_in = [t.to(torch.bfloat16).double().requires_grad_(True) for t in tensors]
        ref = reference(*ref_in, is_global, valid, 7)
        (ref * d_out.double()).sum().backward()
        self.assertLess(rel(out.cpu(), ref), 1e-2)
        for name, x, r in zip(("q", "k", "v", "qg", "kg", "vg"), xs, ref_in):
            with self.subTest(gradient=name):
                self.assertLess(rel(x.grad.cpu(), r.grad), 3e-2)

    def test_compiled_equals_eager(self):
        _, cuda, is_global, valid, d_out = on_gpu(3)
        g, m = is_global.cuda(), valid.cuda()

        def f(q, k, v, qg, kg, vg):
            return ldqa_attention.sparse_attention(q * 1.5, k, v, qg, kg, vg, g, m, window=7, max_global=11).sum(-1)

        eager = f(*cuda)
        compiled = torch.compile(f, fullgraph=True)(*cuda)
        self.assertTrue(torch.equal(eager, compiled))

    @unittest.skipUnless(HAVE_FLEX, "FlexAttention")
    def test_encoder_through_op_matches_flex(self):
        torch.manual_seed(4)
        cfg = Config(vocab_size=300, hidden=256, layers=2, heads=4, ffn=512, window=32)
        model = Encoder(cfg).cuda()
        b, n = 2, 640
        ids = torch.randint(5, cfg.vocab_size, (b, n), device="cuda")
        types = torch.ones_like(ids)
        valid = torch.ones(b, n, dtype=torch.bool, device="cuda")
        valid[1, 400:] = False
        glen = torch.tensor([9, 30], device="cuda")
        outs = []
        for path in ("ldqa", "flex"):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                outs.append(model(ids, types, model.plan(valid, glen, path)).float())
        self.assertLess(rel(outs[0][valid], outs[1][valid]), 2e-2)


if __name__ == "__main__":
    unittest.main()
