"""Batches of token windows from token files (memmap), deterministic in (seed, step).

Every window of a step is drawn from one random generator seeded by (seed, step), so the
batch of step s is the same whatever happened before: resuming at step s needs no loader
state, and 1 process × 4 micro-batches sees exactly the sequences that 4 DDP ranks × 1
micro-batch see. Rank r, micro-batch m takes its own slice of the step's global batch.

    >>> src = TokenWindows("data.bin", context=256, seed=0)     # doctest: +SKIP
    >>> x, y = src.batch(step=0, micro=0, micro_batch=8)        # doctest: +SKIP

Windows start anywhere (`random`), or at a document start (`docs`: every sequence opens
with a document's BOS token, as nanochat trains); `docs` falls back to random starts when
the file has too few documents long enough for a window.
"""

from __future__ import annotations

import numpy as np
import torch

from llmtool.errors import BadInputError, UsageError
from llmtool.io.tokfile import TokenFile


class TokenWindows:
    def __init__(self, path, context: int, seed: int = 0, windows: str = "random",
                 tokfile: TokenFile | None = None, span: tuple[int, int] | None = None,
                 what: str = "the training data"):
        if windows not in ("random", "docs"):
            raise UsageError(f"--windows {windows!r}: expected random or docs")
        self.file = tokfile or TokenFile(path)
        self.path = self.file.path
        self.context = context
        self.seed = seed
        lo, hi = span if span is not None else (0, len(self.file.tokens))
        self.tokens = self.file.tokens[lo:hi]  # a view: --val-split holds out the end of one file
        n = len(self.tokens)
        if n < context + 1:
            raise BadInputError(f"{self.path}: {what} has {n} tokens, fewer than one window of --context "
                                f"{context} (+1 for the targets); use a smaller --context or more data")
        self.last_start = n - (context + 1)
        self.doc_starts = None
        if windows == "docs":
            starts = np.asarray(self.file.doc_starts, dtype=np.int64) - lo
            starts = starts[(starts >= 0) & (starts <= self.last_start)]
            if len(starts) >= 16:  # too few documents would repeat the same windows over and over
                self.doc_starts = starts

    def starts(self, step: int, count: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        if self.doc_starts is not None:
            return self.doc_starts[rng.integers(0, len(self.doc_starts), size=count)]
        return rng.integers(0, self.last_start + 1, size=count)

    def windows(self, starts: np.ndarray) -> torch.Tensor:
        T = self.context + 1
        out = np.empty((len(starts), T), dtype=np.int64)
        for i, s in enumerate(starts):
            out[i] = self.tokens[s:s + T]
        return torch.from_numpy(out)

    def batch(self, step: int, micro: int, micro_batch: int, n_micro: int = 1, rank: int = 0,
              world: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (micro_batch, context) of micro-batch `micro` on `rank`."""
        starts = self.starts(step, micro_batch * n_micro * world)
        i = (rank * n_micro + micro) * micro_batch
        w = self.windows(starts[i:i + micro_batch])
        if device is not None and device.type == "cuda":
            w = w.pin_memory().to(device, non_blocking=True)
        elif device is not None:
            w = w.to(device)
        return w[:, :-1], w[:, 1:]

    def sequential(self, max_tokens: int, batch: int, rank: int = 0, world: int = 1):
        """Non-overlapping windows from the start (validation): yields (inputs, targets) batches."""
        T = self.context
        n_windows = min((len(self.tokens) - 1) // T, max(1, max_tokens // T))
        mine = list(range(rank, n_windows, world))
        for i in range(0, len(mine), batch):
            idx = mine[i:i + batch]
            out = np.stack([np.asarray(self.tokens[j * T:j * T + T + 1], dtype=np.int64) for j in idx])
            w = torch.from_numpy(out)
            yield w[:, :-1], w[:, 1:]
