"""Conversations as training windows: fit each into the context, pack them best-fit, batch them.

    >>> from llmtool.tokenizer.chat import Rendered
    >>> a = Rendered([1, 2, 3, 4], [False, False, True, True], [(2, 4)])
    >>> b = Rendered([1, 5, 6], [False, True, True], [(1, 3)])
    >>> pack([a, b, a], limit=8)       # bins of example indices, fullest first
    [[0, 2], [1]]

A window holds `context + 1` tokens: the model reads the first `context` and predicts the
last `context`, so a supervised token at position i is the target of position i - 1.
Conversations longer than a window are cut after the last assistant message that fits
(`fit`), never inside one, so the model never learns to stop mid-answer; one whose first
assistant message does not fit is left out. Both are counted for the user.

Loss normalisation: every supervised token of an optimizer step weighs the same, however the
tokens fall into micro-batches and ranks. The source knows all windows of a step, so each
micro-batch carries `scale = n_micro × world / (supervised tokens in the whole step)`; the
loop divides by n_micro and DDP averages over ranks, which leaves sum(losses) / N for the step.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import torch

from llmtool.tokenizer.chat import Rendered
from llmtool.train.batch import Batch


def fit(r: Rendered, limit: int) -> Rendered | None:
    """`r` if it has at most `limit` tokens, else cut after its last supervised message that
    ends within `limit`; None when not even the first one does."""
    if len(r.ids) <= limit:
        return r
    end = None
    for s, e in r.spans:
        if e <= limit and r.mask[s]:
            end = e
    if end is None:
        return None
    return Rendered(r.ids[:end], r.mask[:end], [sp for sp in r.spans if sp[1] <= end])


def pack(examples: list[Rendered], limit: int) -> list[list[int]]:
    """Best-fit decreasing: longest first, each into the fullest bin it still fits (a new bin
    when none has room). Returns the bins as lists of example indices."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].ids), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin index), sorted: bisect finds the best fit
    for i in order:
        n = len(examples[i].ids)
        j = bisect.bisect_left(free, (n, -1))
        if j < len(free):
            room, b = free.pop(j)
        else:
            room, b = limit, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


@dataclass
class Prepared:
    """What became of the conversations on their way into windows."""

    examples: list[Rendered]
    truncated: int = 0       # cut at a turn boundary to fit the context
    dropped: int = 0         # not even the first assistant message fits
    supervised: int = 0      # supervised tokens kept
    tokens: int = 0          # tokens kept


def prepare(rendered: list[Rendered], context: int) -> Prepared:
    out = Prepared([])
    for r in rendered:
        f = fit(r, context + 1)
        if f is None:
            out.dropped += 1
            continue
        out.truncated += f is not r
        if f.n_supervised:
            out.examples.append(f)
            out.supervised += f.n_supervised
            out.tokens += len(f.ids)
    return out


class ConversationWindows:
    """A Trainer source (llmtool.train.batch) over packed conversations: epoch after epoch,
    each in a new seeded order of the same windows. A step takes `micro_batch × n_micro ×
    world` windows; the last step of an epoch tops up with windows from that epoch's start."""

    def __init__(self, examples: list[Rendered], context: int, seed: int = 0, pad_id: int = 0):
        if not examples:
            raise ValueError("no conversations to train on")
        self.context, self.seed = context, seed
        bins = pack(examples, context + 1)
        n = len(bins)
        self.tokens = torch.full((n, context + 1), pad_id, dtype=torch.long)
        self.mask = torch.zeros((n, context + 1), dtype=torch.bool)
        for w, b in enumerate(bins):
            at = 0
            for i in b:
                e = examples[i]
                self.tokens[w, at:at + len(e.ids)] = torch.tensor(e.ids)
                self.mask[w, at:at + len(e.ids)] = torch.tensor(e.mask)
                at += len(e.ids)
        self.supervised = self.mask[:, 1:].sum(1)  # per window: the targets that count
        self._orders: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def steps_per_epoch(self, windows_per_step: int) -> int:
        return -(-len(self) // windows_per_step)

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self), generator=g)}  # one epoch at a time in memory
        return self._orders[epoch]

    def step_windows(self, step: int, windows_per_step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.steps_per_epoch(windows_per_step))
        order = self._order(epoch)
        idx = torch.arange(k * windows_per_step, (k + 1) * windows_per_step) % len(self)
        return order[idx]

    def batch(self, step, micro, micro_batch, n_micro=1, rank=0, world=1, device=None) -> Batch:
        per_step = micro_batch * n_micro * world
        windows = self.step_windows(step, per_step)
        total = int(self.supervised[windows].sum())
        start = (micro * world + rank) * micro_batch
        mine = windows[start:start + micro_batch]
        return self.windows(mine, scale=n_micro * world / max(total, 1))

    def windows(self, idx: torch.Tensor, scale: float | None = None) -> Batch:
        t, m = self.tokens[idx], self.mask[idx]
        targets = torch.where(m[:, 1:], t[:, 1:], torch.full_like(t[:, 1:], -1))
        return Batch(t[:, :-1].contiguous(), targets.contiguous(), extra={"scale": scale} if scale else {})

    def state_dict(self) -> dict:
        return {"windows": len(self), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("windows") not in (None, len(self)):
            from llmtool.errors import BadInputError

            raise BadInputError(f"--resume: the conversations pack into {len(self)} windows now, "
                                f"{state['windows']} in the checkpoint's run: the data or context changed")


def sft_loss(model, batch: Batch):
    """Cross-entropy summed over this micro-batch's supervised targets, times the step's scale
    (module docstring): what the loop logs as `loss` is then the step's mean per supervised token."""
    losses = model(batch.inputs, batch.targets, reduction="none")
    keep = batch.targets >= 0
    return (losses * keep).sum() * batch.extra["scale"], {}


def masked_loss_sums(model, data: ConversationWindows, env, micro_batch: int, max_windows: int | None = None):
    """(sum of losses, supervised tokens) over the windows of `data` (this rank's share)."""
    n = len(data) if max_windows is None else min(len(data), max_windows)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(env.rank * micro_batch, n, micro_batch * env.world):
            b = data.windows(torch.arange(start, min(start + micro_batch, n))).to(env.device)
            with env.autocast():
                losses = model(b.inputs, b.targets, reduction="none")
            keep = b.targets >= 0
            total += float((losses.float() * keep).sum())
            count += int(keep.sum())
    return total, count


def chat_val_loss(data: ConversationWindows, micro_batch: int, max_tokens: int):
    """An evaluate_fn for the Trainer: mean loss over the supervised tokens of held-out
    conversations (every rank its share, summed over ranks)."""
    def evaluate(model, env) -> dict:
        was = model.training
        model.eval()
        total, count = masked_loss_sums(model, data, env, micro_batch, max(1, max_tokens // (data.context + 1)))
        model.train(was)
        t = torch.tensor([total, float(count)], dtype=torch.float64, device=env.device)
        if env.ddp:
            torch.distributed.all_reduce(t)
        return {"val_loss": float(t[0] / t[1].clamp(min=1)), "val_tokens": int(t[1])}

    return evaluate


def shuffled(items: list, seed: int) -> list:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
