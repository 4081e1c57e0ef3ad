"""The one architecture every training stage shares: a modern decoder-only GPT.

RoPE positions, RMSNorm without weights, QK-norm, ReLU² MLP, untied embedding and head, no
biases, a tanh soft-cap on the logits, optional grouped-query attention, and PyTorch's
scaled_dot_product_attention (Flash attention on CUDA). The choices follow nanochat /
modded-nanogpt, which train markedly faster per FLOP than GPT-2's recipe.

    >>> cfg = GPTConfig.from_depth(2, vocab_size=300, context=64)
    >>> model = GPT(cfg)
    >>> import torch
    >>> model(torch.zeros(1, 8, dtype=torch.long)).shape
    torch.Size([1, 8, 300])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmtool.errors import BadInputError, UsageError

# Sizes beyond these are refused before anything is allocated: a corrupt or hostile
# config.json must fail at once, not after the process has grown to fill the memory.
LIMITS = {"n_layer": 1024, "n_embd": 65536, "n_head": 1024, "context": 1 << 20,
          "vocab_size": 1 << 24, "mlp_ratio": 64}


@dataclass
class GPTConfig:
    """Architecture; saved as config.json in every checkpoint."""

    vocab_size: int
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 2
    n_kv_head: int = 2
    context: int = 1024
    mlp_ratio: int = 4
    softcap: float = 15.0
    rope_base: float = 10000.0
    vocab_multiple: int = 64  # embedding/head rows padded up to this, for fast matmuls on GPUs

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, context: int = 1024, aspect: int = 64,
                   head_dim: int = 128, n_kv_head: int | None = None) -> GPTConfig:
        """nanochat's sizing: width = depth × 64, heads of 128 dims (fewer for tiny models)."""
        if depth < 1:
            raise UsageError(f"--depth {depth}: must be at least 1")
        width = depth * aspect
        head_dim = min(head_dim, width)
        n_head = max(1, -(-width // head_dim))
        while width % n_head:  # keep heads a divisor of the width
            n_head += 1
        return cls(vocab_size=vocab_size, n_layer=depth, n_embd=width, n_head=n_head,
                   n_kv_head=n_kv_head or n_head, context=context)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            want = float if f.type == "float" else int
            # bool is an int to Python, and 2.5 layers or "2" layers are not sizes
            if isinstance(v, bool) or not isinstance(v, (int, float) if want is float else int):
                raise UsageError(f"{f.name} must be {'a number' if want is float else 'an integer'}, not {v!r}")
        if min(self.n_layer, self.n_embd, self.n_head, self.n_kv_head, self.context, self.vocab_size,
               self.mlp_ratio) < 1:
            raise UsageError("layers, width, heads, kv heads, context, MLP ratio and vocab size must be positive")
        for name, top in LIMITS.items():
            if getattr(self, name) > top:
                raise UsageError(f"{name} {getattr(self, name):,} is beyond what llmtool supports (at most {top:,})")
        if not (self.softcap >= 0 and self.rope_base > 0):  # also refuses NaN
            raise UsageError(f"softcap {self.softcap} and rope_base {self.rope_base} must be positive")
        if self.n_embd % self.n_head:
            raise UsageError(f"width {self.n_embd} is not divisible by {self.n_head} heads")
        if self.n_head % self.n_kv_head:
            raise UsageError(f"{self.n_head} heads are not divisible by {self.n_kv_head} kv heads")
        if (self.n_embd // self.n_head) % 2:
            raise UsageError(f"head size {self.n_embd // self.n_head} must be even (RoPE rotates pairs)")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab(self) -> int:
        m = max(1, self.vocab_multiple)
        return -(-self.vocab_size // m) * m

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every weight GPT(self) has, by state_dict name, without building it:
        a checkpoint's weights file is checked against its config.json before allocating."""
        C, V, kv, hidden = self.n_embd, self.padded_vocab, self.n_kv_head * self.head_dim, self.mlp_ratio * self.n_embd
        shapes = {"wte.weight": (V, C), "lm_head.weight": (V, C)}
        for i in range(self.n_layer):
            shapes.update({f"blocks.{i}.attn.c_qkv.weight": (C + 2 * kv, C), f"blocks.{i}.attn.c_proj.weight": (C, C),
                           f"blocks.{i}.mlp.c_fc.weight": (hidden, C), f"blocks.{i}.mlp.c_proj.weight": (C, hidden)})
        return shapes

    def to_dict(self) -> dict:
        return {"architecture": "llmtool-gpt", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """The config of a config.json; anything malformed is bad input (exit 3), never a crash."""
        if not isinstance(d, dict):
            raise BadInputError(f"config.json: expected a JSON object, not {type(d).__name__}")
        if d.get("architecture", "llmtool-gpt") != "llmtool-gpt":
            raise BadInputError(f"config.json: unknown architecture {d.get('architecture')!r}")
        if "vocab_size" not in d:
            raise BadInputError("config.json: no vocab_size")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except UsageError as e:
            raise BadInputError(f"config.json: {e}")


class _RMSNorm(torch.autograd.Function):
    """x / rms(x), saving the output and 1/rms: fewer passes than autograd's decomposition."""

    @staticmethod
    def forward(ctx, x):
        r = torch.rsqrt(x.square().mean(-1, keepdim=True) + _EPS)
        y = x * r
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, g):
        y, r = ctx.saved_tensors
        return r * (g - y * (g * y).mean(-1, keepdim=True))


_EPS = 1e-6


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without a learnable gain (nanochat found it unnecessary; it saves time)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and not torch.compiler.is_compiling():
        if not torch.is_grad_enabled():  # inference: skip the autograd.Function overhead
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + _EPS)
        return _RMSNorm.apply(x)
    return F.rms_norm(x, (x.size(-1),), eps=_EPS)  # fused on GPUs and under torch.compile


def rotary_tables(context: int, head_dim: int, base: float, device=None) -> torch.Tensor:
    """Complex rotations e^(i·pos·freq) of shape (context, 1, head_dim/2), one per (position, pair)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    freqs = torch.outer(torch.arange(context, dtype=torch.float32, device=device), inv_freq)
    return torch.polar(torch.ones_like(freqs), freqs)[:, None, :]


def apply_rotary(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate (B, T, H, D) by position: each adjacent pair (x0, x1) is a complex number times
    e^(i·pos·freq). One complex multiply is far fewer passes over memory than the
    split-halves form, which matters on CPUs."""
    if torch.compiler.is_compiling():  # inductor handles complex tensors poorly: real arithmetic
        x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        c, s = rot.real, rot.imag
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * rot).flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        kv = cfg.n_kv_head * cfg.head_dim
        # q, k and v in one matmul; Muon still orthogonalises the three blocks separately
        self.c_qkv = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * kv, bias=False)
        self.c_qkv.weight.muon_split = (cfg.n_embd, kv, kv)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, rot, cache=None):
        B, T, C = x.shape
        H, Hkv, D = self.n_head, self.n_kv_head, self.head_dim
        # split, not slices: the backward of split is one concatenation, that of a slice a
        # zero-filled full-size tensor per slice
        qk, v = self.c_qkv(x).view(B, T, H + 2 * Hkv, D).split([H + Hkv, Hkv], dim=2)
        # rotate and normalise q and k together (QK-norm keeps attention logits bounded)
        q, k = rms_norm(apply_rotary(qk, rot)).split([H, Hkv], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        causal, mask = True, None
        if cache is not None:
            # the cache says which of its keys each query may see (set once per forward)
            k, v = cache.update(self.layer, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)  # the cache may hold another dtype than autocast's
            causal, mask = cache.causal, cache.mask
            if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
                mask = mask.to(q.dtype)  # under autocast: SDPA wants the query's dtype
        if Hkv != H:
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class SoftCap(torch.autograd.Function):
    """cap · tanh(x / cap), saving only tanh's output: two passes less over the (B, T, vocab)
    logits than autograd's div-tanh-mul chain, the biggest tensor of a small model."""

    @staticmethod
    def forward(ctx, x, cap):
        t = torch.tanh(x * (1.0 / cap))
        ctx.save_for_backward(t)
        return t * cap

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return grad * (1 - t * t), None


class SoftCapCrossEntropy(torch.autograd.Function):
    """Cross-entropy of soft-capped logits, fused and computed in cache-sized row chunks.

    The (tokens × vocab) logits are the largest tensor of a small model; autograd's
    tanh → log-softmax → nll chain passes over them about ten times and keeps three
    copies. Here each chunk of rows is capped, normalised and differentiated while it
    sits in cache, and only the gradient is kept for the backward pass (scaled there by
    the incoming gradient). Targets of -1 are ignored.
    """

    @staticmethod
    def forward(ctx, logits, targets, cap, reduction):
        N, V = logits.shape
        valid = targets >= 0
        tgt = targets.clamp(min=0)
        losses = torch.empty(N, dtype=logits.dtype, device=logits.device)
        want_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(logits) if want_grad else None
        step = max(1, (1 << 20) // V)  # ~4 MB of fp32 per chunk
        for s in range(0, N, step):
            e = min(N, s + step)
            z = logits[s:e]
            t = None
            if cap:
                t = torch.tanh(z * (1.0 / cap))
                z = t * cap
            m = z.amax(-1, keepdim=True)
            p = (z - m).exp_()
            total = p.sum(-1, keepdim=True)
            rows = torch.arange(e - s, device=z.device)
            picked = z[rows, tgt[s:e]]
            losses[s:e] = (m.squeeze(-1) + total.log().squeeze(-1) - picked)
            if want_grad:
                p /= total
                p[rows, tgt[s:e]] -= 1.0
                if cap:
                    p *= t.mul_(t).neg_().add_(1.0)  # d(cap·tanh(x/cap))/dx = 1 - tanh²
                grad[s:e] = p
        losses = losses.masked_fill(~valid, 0.0)
        n_valid = valid.sum().clamp(min=1)
        ctx.reduction = reduction
        if want_grad:
            ctx.save_for_backward(grad, valid, n_valid)
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        return losses.sum() / n_valid

    @staticmethod
    def backward(ctx, g):
        grad, valid, n_valid = ctx.saved_tensors
        if ctx.reduction == "none":
            scale = (g * valid)[:, None]
        elif ctx.reduction == "sum":
            scale = g * valid[:, None]
        else:
            scale = (g / n_valid) * valid[:, None]
        return grad.mul_(scale), None, None, None  # in place: the saved gradient is used once


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(relu_squared(self.c_fc(x)))


class _ReLUSquared(torch.autograd.Function):
    """relu(x)², with the gradient 2·relu(x) straight from the saved relu: one pass less."""

    @staticmethod
    def forward(ctx, x):
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, g):
        (r,) = ctx.saved_tensors
        return g * (2 * r)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """ReLU²: as cheap as ReLU and trains better than GELU (Primer; modded-nanogpt)."""
    if torch.compiler.is_compiling() or not torch.is_grad_enabled():
        return F.relu(x).square()
    return _ReLUSquared.apply(x)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, rot, cache=None):
        x = x + self.attn(rms_norm(x), rot, cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.padded_vocab, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab, bias=False)
        self.register_buffer("rot", rotary_tables(cfg.context, cfg.head_dim, cfg.rope_base), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat's init: fan-in scaled matrices, unit-variance embedding, zero output layers.

        Zeroing the residual projections and the head makes every block start as the
        identity and the first prediction uniform, which lets high learning rates work.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                fan_out, fan_in = m.weight.shape
                std = 1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in))
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.lm_head.weight)
        for b in self.blocks:
            nn.init.zeros_(b.attn.c_proj.weight)
            nn.init.zeros_(b.mlp.c_proj.weight)

    @torch.no_grad()
    def resize_vocab(self, vocab_size: int) -> None:
        """Grow the vocabulary (sft adds chat special tokens); existing rows are kept.

        New embedding and head rows start at the mean of the trained ones, so a new token
        begins as an "average" token rather than as noise. A head tied to the embedding
        (one Parameter for both) stays tied. Build optimizers afterwards.
        """
        old = self.config.vocab_size
        if vocab_size < old:
            raise UsageError(f"cannot shrink the vocabulary from {old} to {vocab_size}")
        tied = self.lm_head.weight is self.wte.weight
        self.config.vocab_size = vocab_size
        rows = self.config.padded_vocab
        if rows == self.wte.weight.size(0):  # the padding rows have room: grow in place
            for w in (self.wte.weight,) if tied else (self.wte.weight, self.lm_head.weight):
                w[old:] = w[:old].mean(0)
            return
        w = self.wte.weight
        wte = nn.Embedding(rows, self.config.n_embd, device=w.device, dtype=w.dtype)
        head = nn.Linear(self.config.n_embd, rows, bias=False, device=w.device, dtype=w.dtype)
        for new_m, old_m in ((wte, self.wte), (head, self.lm_head)):
            new_m.weight[:old] = old_m.weight[:old]
            new_m.weight[old:] = old_m.weight[:old].mean(0)
        if tied:
            head.weight = wte.weight
        self.wte, self.lm_head = wte, head

    # ------------------------------------------------------------------ sizes

    def num_params(self, embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.wte.weight.numel()

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 × non-embedding params + attention (PaLM appendix B)."""
        c = self.config
        return 6 * self.num_params(embedding=False) + 12 * c.n_layer * c.n_head * c.head_dim * c.context

    # ------------------------------------------------------------------ forward

    def hidden(self, idx: torch.Tensor, cache=None) -> torch.Tensor:
        """Final normalised hidden states (B, T, C); reward models put their head on these."""
        T = idx.size(1)
        # positions: an int when every row starts at the same one, else a (B, T) tensor
        # (rows of different lengths share a KV cache, each at its own position)
        pos, end = (0, T) if cache is None else cache.positions(T)
        if end > self.config.context:
            raise UsageError(f"sequence of {end} tokens is longer than the model's context "
                             f"({self.config.context})")
        rot = self.rot[pos:pos + T] if isinstance(pos, int) else self.rot[pos]
        x = rms_norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, rot, cache)
        if cache is not None:
            cache.advance(T)
        return rms_norm(x)

    def logits(self, x: torch.Tensor, capped: bool = True) -> torch.Tensor:
        """Logits of hidden states; `capped=False` skips the soft-cap (argmax is the same)."""
        logits = self.lm_head(x)
        if self.config.padded_vocab != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]
        cap = self.config.softcap
        return SoftCap.apply(logits.float(), cap) if cap and capped else logits.float()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None,
                reduction: str = "mean"):
        """Logits (B, T, V) or, with targets (-1 = ignored), the cross-entropy loss in nats."""
        h = self.hidden(idx, cache)
        if targets is None:
            return self.logits(h)
        logits = self.lm_head(h)
        if self.config.padded_vocab != self.config.vocab_size:
            logits = logits[..., : self.config.vocab_size]
        logits = logits.float().reshape(-1, self.config.vocab_size)
        cap = float(self.config.softcap)
        if logits.device.type != "cpu" or torch.compiler.is_compiling():
            # GPUs (and torch.compile, which fuses the chain itself) want one big kernel per op,
            # not a Python loop over cache-sized chunks
            z = cap * torch.tanh(logits / cap) if cap else logits
            loss = F.cross_entropy(z, targets.reshape(-1), ignore_index=-1, reduction=reduction)
        else:
            loss = SoftCapCrossEntropy.apply(logits, targets.reshape(-1), cap, reduction)
        return loss.view(targets.shape) if reduction == "none" else loss
