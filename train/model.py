"""The ldqa encoder: a Longformer-style reader (docs/model-format.md is the contract
with the C++ engine in model/).

- Token + segment embeddings, LayerNorm; pre-LayerNorm layers; GELU (erf) FFN; final LN.
- Attention: local rows see keys within a one-sided window w plus every global key;
  global rows (a prefix: [CLS] question [SEP]) see every key through their own
  projections (Longformer's Q_g, K_g, V_g). Padded rows are zero after attention.
- Positions: rotary on the first `rotary_dims` of each head (NeoX "rotate half" pairs),
  with frequencies base^(-i/half). Every period is at most ~470 tokens, so any relative
  angle a 16k+ document produces was already seen in training at 512 tokens; the other
  head dimensions carry no position at all. Nothing caps the document length.
- Heads: MLM (dense, GELU, LN, decoder tied to the embeddings) and span (start/end).
- Pretraining (not exported): either MLM on the encoder itself, or ELECTRA's replaced
  token detection: a small Generator (same depth, a quarter of the width, sharing the
  token embeddings through a projection) fills masked positions with samples and the
  encoder's `rtd_*` head tells, for every token, whether it was replaced.

Attention runs through one of three paths that compute the same function (train.py
checks the one it uses against the dense path at start-up): "ldqa", the project's own
sparse attention kernels as a PyTorch op (train/ldqa_attention.py; CPU float32 or CUDA);
"flex", FlexAttention (GPU; block mask: window + global keys); "dense", a plain masked
path (CPU smoke tests, fixtures, the reference).
"""
import dataclasses
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # torch >= 2.5 on the GPU machine; Debian's torch 1.13 has neither
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    HAVE_FLEX = True
except ImportError:  # pragma: no cover
    HAVE_FLEX = False


@dataclasses.dataclass
class Config:
    vocab_size: int = 16000
    hidden: int = 384
    layers: int = 8
    heads: int = 6
    ffn: int = 1536
    window: int = 128            # one-sided: |i - j| <= window
    rotary_dims: int = 32        # of head_dim
    rotary_base: float = 100.0
    type_vocab: int = 2          # 0: [CLS] question [SEP], 1: context and final [SEP]
    layer_norm_eps: float = 1e-5
    pad_id: int = 0
    unk_id: int = 1
    cls_id: int = 2
    sep_id: int = 3
    mask_id: int = 4
    max_question_tokens: int = 64
    max_len: int = 4096          # tokens per window the model reads at once (trained up to this)

    @property
    def head_dim(self):
        return self.hidden // self.heads

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


def rotary_tables(n, cfg, device, dtype=torch.float32):
    half = cfg.rotary_dims // 2
    inv = cfg.rotary_base ** (-torch.arange(half, dtype=torch.float64) / half)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype)


def apply_rotary(x, cos, sin, rotary_dims):
    """x: [B, H, n, D]; cos/sin: [n, rotary_dims/2] (positions of x's rows)."""
    half = rotary_dims // 2
    x1, x2, rest = x[..., :half], x[..., half:rotary_dims], x[..., rotary_dims:]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c, rest], dim=-1)


def local_mask_dense(valid, is_global, window):
    """[B, 1, n, n] bool: local query i may attend key j."""
    n = valid.shape[1]
    idx = torch.arange(n, device=valid.device)
    near = (idx[:, None] - idx[None, :]).abs() <= window
    allowed = near[None] | is_global[:, None, :]
    return (allowed & valid[:, None, :] & valid[:, :, None])[:, None]


def masked_attention(q, k, v, mask):
    """Dense reference: rows with no allowed key give zeros. The scores stay float32, as in
    FlexAttention's and our kernels (a bf16 q @ k^T would round every logit to 8 bits
    before the softmax: a rounding neither of them has, which made this path a loose
    control for theirs). Autocast is off for them: training runs under bf16 autocast,
    which would turn `q.float() @ k.float()` back into a bf16 matmul with a bf16 result."""
    with torch.autocast(q.device.type, enabled=False):
        scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0).to(v.dtype)
    return probs @ v


class AttentionPlan:
    """Per-batch attention inputs shared by every layer."""

    def __init__(self, valid, global_len, cfg, attention, global_rows=None):
        """global_rows: how many leading rows the global attention computes, a bound on
        every sequence's global_len (rows past a sequence's own count keep their local
        result). Given as a constant (fine-tuning: the question bound), the shapes stay
        fixed from batch to batch (one compiled graph) and no host sync is needed;
        None: the batch's largest global_len. attention: "ldqa", "flex" or "dense"."""
        if attention not in ("ldqa", "flex", "dense"):
            raise ValueError(f"attention path {attention!r}: ldqa, flex or dense")
        self.valid = valid                                   # [B, n] bool
        b, n = valid.shape
        idx = torch.arange(n, device=valid.device)
        self.is_global = (idx[None, :] < global_len[:, None]) & valid  # prefix per sequence
        self.global_rows = int(global_len.max().item()) if global_rows is None else min(global_rows, n)
        self.cos, self.sin = rotary_tables(n, cfg, valid.device)
        self.attention = attention
        if attention == "ldqa":  # plain tensors: nothing per batch for torch.compile to trace
            self.global_u8 = self.is_global.to(torch.uint8)
            self.valid_u8 = valid.to(torch.uint8)
        elif attention == "flex":
            valid_, glob_, w = self.valid, self.is_global, cfg.window

            def mask_mod(bi, h, qi, kv):
                return valid_[bi, kv] & valid_[bi, qi] & (((qi - kv).abs() <= w) | glob_[bi, kv])
            self.block_mask = create_block_mask(mask_mod, b, None, n, n, device=valid.device, _compile=True)
        else:
            self.mask = local_mask_dense(valid, self.is_global, cfg.window)


_flex_compiled = None


def flex(q, k, v, block_mask):
    global _flex_compiled
    if _flex_compiled is None:
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    return _flex_compiled(q, k, v, block_mask=block_mask)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden
        self.cfg = cfg
        self.query, self.key, self.value, self.out = (nn.Linear(h, h) for _ in range(4))
        self.query_global, self.key_global, self.value_global = (nn.Linear(h, h) for _ in range(3))

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.cfg.heads, self.cfg.head_dim).transpose(1, 2)

    def forward(self, x, plan):
        cfg = self.cfg
        q = apply_rotary(self.split(self.query(x)), plan.cos, plan.sin, cfg.rotary_dims)
        k = apply_rotary(self.split(self.key(x)), plan.cos, plan.sin, cfg.rotary_dims)
        v = self.split(self.value(x))
        g = plan.global_rows
        if plan.attention == "ldqa":
            return self.out(self.merge(self.attend_ldqa(x, q, k, v, plan)))
        if plan.attention == "flex":
            ctx = flex(q, k, v, plan.block_mask)
        else:
            ctx = masked_attention(q, k, v, plan.mask)
        if g > 0:
            qg = apply_rotary(self.split(self.query_global(x[:, :g])), plan.cos[:g], plan.sin[:g], cfg.rotary_dims)
            kg = apply_rotary(self.split(self.key_global(x)), plan.cos, plan.sin, cfg.rotary_dims)
            vg = self.split(self.value_global(x))
            gmask = plan.valid[:, None, None, :].expand(-1, 1, g, -1)
            glob = masked_attention(qg, kg, vg, gmask)
            rows = plan.is_global[:, None, :g, None]
            ctx = torch.cat([torch.where(rows, glob, ctx[:, :, :g]), ctx[:, :, g:]], dim=2)
        ctx = ctx * plan.valid[:, None, :, None].to(ctx.dtype)
        return self.out(self.merge(ctx))

    def merge(self, ctx):
        b, _, n, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(b, n, self.cfg.hidden)

    def attend_ldqa(self, x, q, k, v, plan):
        """Local and global rows in one call of our op. The globals are the first g rows,
        so Q_g is projected for those rows only and passed as it is (q_global_rows)."""
        import ldqa_attention  # train/ is on sys.path wherever model.py is imported
        cfg, g = self.cfg, plan.global_rows
        if g == 0:
            return ldqa_attention.sparse_attention(q, k, v, key_mask=plan.valid_u8, window=cfg.window)
        qg = apply_rotary(self.split(self.query_global(x[:, :g])), plan.cos[:g], plan.sin[:g], cfg.rotary_dims)
        kg = apply_rotary(self.split(self.key_global(x)), plan.cos, plan.sin, cfg.rotary_dims)
        vg = self.split(self.value_global(x))
        return ldqa_attention.sparse_attention(q, k, v, qg, kg, vg, plan.global_u8, plan.valid_u8,
                                               window=cfg.window, max_global=g)

    @torch.no_grad()
    def init_global_from_local(self):
        """Longformer: global projections start as copies of the local ones."""
        for dst, src in ((self.query_global, self.query), (self.key_global, self.key), (self.value_global, self.value)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden, cfg.ffn)
        self.ffn_out = nn.Linear(cfg.ffn, cfg.hidden)

    def forward(self, x, plan):
        x = x + self.attention(self.attention_norm(x), plan)
        return x + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x))))


def add_stack(module, cfg):
    """What the encoder and ELECTRA's generator share: type embeddings, the embedding
    LayerNorm, the layers and the final LayerNorm (names are the export's contract)."""
    module.type_embedding = nn.Embedding(cfg.type_vocab, cfg.hidden)
    module.embedding_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
    module.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
    module.final_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)


def add_mlm_head(module, cfg):
    """A masked-LM head: dense, GELU, LayerNorm, then the tied embeddings and a bias."""
    module.mlm_dense = nn.Linear(cfg.hidden, cfg.hidden)
    module.mlm_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
    module.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden)
        add_stack(self, cfg)
        add_mlm_head(self, cfg)  # pretraining only; not exported
        # span head
        self.span = nn.Linear(cfg.hidden, 2)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def plan(self, valid, global_len, attention, global_rows=None):
        return AttentionPlan(valid, global_len, self.cfg, attention, global_rows)

    def forward(self, ids, types, plan, keep_states=False):
        x = self.embedding_norm(self.token_embedding(ids) + self.type_embedding(types))
        states = [x] if keep_states else None
        for layer in self.layers:
            x = layer(x, plan)
            if keep_states:
                states.append(x)
        x = self.final_norm(x)
        return (x, states) if keep_states else x

    def mlm_logits(self, hidden):
        h = self.mlm_norm(F.gelu(self.mlm_dense(hidden)))
        return h @ self.token_embedding.weight.t() + self.mlm_bias

    def span_logits(self, hidden):
        logits = self.span(hidden).float()
        return logits[..., 0], logits[..., 1]

    def exported_state(self):
        """The tensors the C++ engine loads (no pretraining heads)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(PRETRAINING_PREFIXES)}


PRETRAINING_PREFIXES = ("mlm_", "rtd_", "generator.")


def generator_config(cfg, width_share=0.25):
    """ELECTRA's generator: the discriminator's depth, a quarter of its width (heads of
    the same head_dim, so the attention plan is shared)."""
    hidden = max(cfg.head_dim, int(cfg.hidden * width_share) // cfg.head_dim * cfg.head_dim)
    return dataclasses.replace(cfg, hidden=hidden, heads=hidden // cfg.head_dim, ffn=4 * hidden)


class Generator(nn.Module):
    """ELECTRA's small masked-LM generator. It reads the discriminator's token embeddings
    through a projection (the embeddings are shared, as in ELECTRA) and predicts with the
    same tied matrix."""

    def __init__(self, gcfg, embed_dim):
        super().__init__()
        self.cfg = gcfg
        self.embed_proj = nn.Linear(embed_dim, gcfg.hidden)
        add_stack(self, gcfg)
        add_mlm_head(self, gcfg)
        self.out_proj = nn.Linear(gcfg.hidden, embed_dim)
        self.apply(Encoder._init)

    def forward(self, ids, types, plan, token_embedding):
        x = self.embedding_norm(self.embed_proj(token_embedding(ids)) + self.type_embedding(types))
        for layer in self.layers:
            x = layer(x, plan)
        return self.final_norm(x)

    def logits(self, hidden, token_embedding):
        h = self.out_proj(self.mlm_norm(F.gelu(self.mlm_dense(hidden))))
        return h @ token_embedding.weight.t() + self.mlm_bias


def add_pretraining_heads(model, objective):
    """Attach what `objective` ("mlm" or "electra") trains besides the encoder."""
    cfg = model.cfg
    if objective == "electra":
        model.generator = Generator(generator_config(cfg), cfg.hidden)
        model.rtd_dense = nn.Linear(cfg.hidden, cfg.hidden)
        model.rtd_out = nn.Linear(cfg.hidden, 1)
        for m in (model.rtd_dense, model.rtd_out):
            Encoder._init(m)
    return model


def rtd_logits(model, hidden):
    return model.rtd_out(F.gelu(model.rtd_dense(hidden))).squeeze(-1)
