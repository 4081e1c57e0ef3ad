"""Optimizers: AdamW for everything, or Muon for the hidden matrices and AdamW for the rest.

Muon (Jordan et al. 2024, used by modded-nanogpt and nanochat) takes SGD-momentum updates
of each 2-D weight and replaces them with the nearest semi-orthogonal matrix, computed by a
few Newton–Schulz iterations; it reaches a given loss in markedly fewer steps than AdamW.
Embedding and head stay on AdamW, with learning rates scaled by 1/sqrt(width/768).

    >>> import torch
    >>> from llmtool.model.gpt import GPT, GPTConfig
    >>> opts = build_optimizers(GPT(GPTConfig.from_depth(1, 100, 16)), "muon")
    >>> [type(o).__name__ for o in opts]
    ['AdamW', 'Muon']
"""

from __future__ import annotations

import torch

from llmtool.errors import UsageError
from llmtool.train.errors import about

# nanochat's defaults: Adam for the embedding (0.2) and head (0.004), Muon 0.02 for matrices.
EMBEDDING_LR = 0.2
UNEMBEDDING_LR = 0.004
MUON_LR = 0.02
ADAM_MATRIX_LR = 0.004  # for --optimizer adamw: measured best of {1e-3, 2e-3, 4e-3, 8e-3} on d4
ADAM_BETAS = (0.8, 0.95)


@torch.no_grad()
def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise g (U S V^T -> ~U V^T) with a quintic iteration.

    The coefficients (3.4445, -4.7750, 2.0315) are Keller Jordan's: they push every
    singular value into roughly [0.7, 1.2] in five steps, which is all Muon needs.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()  # bf16 is fast on GPUs, slow on CPUs
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = x @ x.mT
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


def _aspect(m: torch.Tensor) -> float:
    """Scale so that the update's RMS does not depend on the matrix's aspect ratio."""
    return max(1.0, m.size(-2) / m.size(-1)) ** 0.5


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalised updates for 2-D parameters. Every rank computes the same update
    from the DDP-averaged gradient, so no extra communication is needed."""

    def __init__(self, params, lr: float = MUON_LR, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError("Muon only takes 2-D parameters")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - mom)
                g = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                split = getattr(p, "muon_split", None)  # a fused q|k|v matrix: each block on its own
                if split:
                    update = torch.cat([newton_schulz(b, group["ns_steps"]) * _aspect(b)
                                        for b in g.split(list(split), dim=0)])
                else:
                    update = newton_schulz(g, group["ns_steps"]) * _aspect(g)
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr)


def build_optimizers(model, kind: str = "muon", matrix_lr: float | None = None,
                     embedding_lr: float = EMBEDDING_LR, unembedding_lr: float = UNEMBEDDING_LR,
                     weight_decay: float = 0.0, betas=ADAM_BETAS, extra_params=()) -> list:
    """The optimizers of a GPT; `extra_params` (e.g. a reward head) go to AdamW at the head's lr.

    Every param group records `initial_lr`, which the schedule multiplies.
    """
    if kind not in ("adamw", "muon"):
        raise about(UsageError(f"optimizer {kind!r}: expected adamw or muon"), "optimizer")
    width = model.config.n_embd
    scale = (width / 768) ** -0.5  # nanochat: Adam lrs were tuned at width 768
    matrices = [p for p in model.blocks.parameters() if p.requires_grad]
    head = [model.lm_head.weight] if model.lm_head.weight.requires_grad else []
    groups = [dict(params=[model.wte.weight], lr=embedding_lr * scale, weight_decay=0.0),
              dict(params=head + list(extra_params), lr=unembedding_lr * scale, weight_decay=0.0)]
    groups = [g for g in groups if g["params"]]
    if kind == "adamw":
        lr = matrix_lr if matrix_lr is not None else ADAM_MATRIX_LR
        groups.append(dict(params=matrices, lr=lr, weight_decay=weight_decay))
    # the fused kernel updates every tensor in one pass (CUDA, and CPU since torch 2.4)
    adam = torch.optim.AdamW(groups, betas=betas, eps=1e-10, fused=_fused_ok(model))
    opts = [adam]
    if kind == "muon":
        opts.append(Muon(matrices, lr=matrix_lr if matrix_lr is not None else MUON_LR,
                         weight_decay=weight_decay))
    for opt in opts:
        for g in opt.param_groups:
            g["initial_lr"] = g["lr"]
    return opts


def _fused_ok(model) -> bool | None:
    dev = next(model.parameters()).device.type
    return True if dev in ("cuda", "cpu") else None


def set_lr(opts: list, multiplier: float, muon_momentum: float | None = None) -> None:
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = g["initial_lr"] * multiplier
            if muon_momentum is not None and isinstance(opt, Muon):
                g["momentum"] = muon_momentum


def lr_multiplier(progress: float, step: int, warmup_steps: int = 0, warmdown: float = 0.2,
                  final: float = 0.0) -> float:
    """Warmup (linear from ~0 over warmup_steps), constant, then a linear warmdown to `final`
    over the last `warmdown` fraction of the run; `progress` in [0, 1] is the share of the
    budget (steps, tokens or time) used so far."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if warmdown <= 0 or progress <= 1 - warmdown:
        return 1.0
    left = max(0.0, 1.0 - progress) / warmdown
    return final + (1.0 - final) * left


def muon_momentum(step: int) -> float:
    """nanochat ramps Muon's momentum from 0.85 to 0.95 over the first 300 steps."""
    frac = min(step / 300, 1.0)
    return (1 - frac) * 0.85 + frac * 0.95
