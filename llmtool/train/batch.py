"""What the training loop consumes: a Batch per micro-batch, a loss function, a data source.

pretrain, sft, rm-train and rl differ only in these three things; the Trainer
(`llmtool.train.loop`) does everything else the same way for all of them.

**Batch**: `inputs` (B, T) token ids, `targets` (B, T) with -1 where no loss is taken,
optional per-token loss `weights` (B, T), and `extra`: whatever a loss needs beyond that
(the pairs or groups of a ranking, advantages, rewards), tensors or plain values.

**Loss**: `loss_fn(model, batch) -> (loss, metrics)`: a scalar tensor to minimise and a dict
of figures (floats or 0-d tensors) to log. The metrics of every micro-batch are averaged
over the step and over all ranks, then written to metrics.jsonl and the progress line;
every micro-batch must return the same names. Returning a bare tensor means no metrics.

**Source** (the protocol below): `batch(step, micro, micro_batch, n_micro, rank, world,
device)` returns the Batch (or an `(inputs, targets)` pair) of one micro-batch on one rank.
The batch of a step should depend only on (seed, step, micro, rank) plus the source's own
state, so that a resumed run sees the same data. Optional methods:

- `begin_step(step, model, env) -> dict | None`: called once per optimizer step, before its
  micro-batches, with the current weights (unwrapped model, eval mode, no gradients): an
  on-policy source generates its rollouts here (RL). A returned dict is logged as metrics.
- `state_dict() -> dict` / `load_state_dict(dict)`: the source's own state (a sampler's
  random generator, a replay buffer), saved in train_state.pt at every checkpoint and
  restored on resume. Plain values and tensors only (it is loaded with weights_only=True).
  Under DDP only rank 0's state is saved: keep it rank-independent, or derive per-rank
  randomness from (seed, step, rank).
- `check(wait=False)`: raise if the data turned out bad (a checksum verified in the
  background); `wait=True` blocks until it is known. Called after every step and before
  every checkpoint, so no checkpoint is ever written from unverified data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor | None = None
    weights: torch.Tensor | None = None  # per-token loss weights (a mask, or graded weights >= 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, device) -> Batch:
        """This batch on `device` (tensors in `extra` too); pinned, asynchronous copies to CUDA."""
        if device is None:
            return self

        def move(t):
            if not isinstance(t, torch.Tensor) or t.device == device:
                return t
            if device.type == "cuda" and t.device.type == "cpu":
                return t.pin_memory().to(device, non_blocking=True)
            return t.to(device)

        return Batch(move(self.inputs), move(self.targets), move(self.weights),
                     {k: move(v) for k, v in self.extra.items()})


def as_batch(b) -> Batch:
    """A source may return a Batch or an (inputs, targets) pair."""
    if isinstance(b, Batch):
        return b
    inputs, targets = b
    return Batch(inputs, targets)


def lm_loss(model, batch: Batch):
    """Next-token cross-entropy (nats per target token); targets of -1 are left out. With
    `weights`, the weighted mean: sum(w · loss) / sum(w) over the kept tokens."""
    if batch.weights is None:
        return model(batch.inputs, batch.targets), {}
    losses = model(batch.inputs, batch.targets, reduction="none")
    w = batch.weights.to(losses.dtype) * (batch.targets >= 0)
    return (losses * w).sum() / w.sum().clamp(min=1e-6), {}


class Source(Protocol):
    """The one method every data source has; see the module docstring for the optional ones."""

    def batch(self, step: int, micro: int, micro_batch: int, n_micro: int = 1, rank: int = 0,
              world: int = 1, device=None) -> Batch | tuple[torch.Tensor, torch.Tensor]: ...
