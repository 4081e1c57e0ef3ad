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

Token files are checked before they are trusted (`Verification`): the checksum of the
tokens and the largest id. Every batch is also checked for ids outside the vocabulary,
which costs one max() over the batch and turns a corrupt file into an error, never an
IndexError (or a CUDA device assert) inside the model.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from llmtool.errors import BadInputError, UsageError
from llmtool.io.tokfile import TokenFile
from llmtool.train.errors import about

# Above this many bytes of token files, verification runs in a background thread during the
# first steps instead of before them. Measured: TokenFile.verify reads ~1 GB/s (954 MiB in
# 0.9 s from the page cache, 1.2 s cold), so up to 1 GiB the wait is about a second.
BACKGROUND_BYTES = 1 << 30


class Verification:
    """Checksums and id ranges of token files: at once for small files, in a background thread
    for large ones. `check()` raises the first problem found; `check(wait=True)` waits for the end."""

    def __init__(self, files: list[TokenFile], background: bool | None = None):
        self.files = [f for f in files if f is not None]
        size = sum(f.path.stat().st_size for f in self.files)
        self.background = size > BACKGROUND_BYTES if background is None else background
        self._error: BadInputError | None = None
        self._done = threading.Event()
        if self.background:
            threading.Thread(target=self._run, name="llmtool-verify", daemon=True).start()
        else:
            self._run()
            self.check()

    def _run(self) -> None:
        try:
            for f in self.files:
                f.verify()
        except BadInputError as e:
            self._error = e
        except (OSError, ValueError) as e:
            self._error = BadInputError(f"cannot verify the token files ({e})")
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def check(self, wait: bool = False) -> None:
        if wait:
            self._done.wait()
        if self._error is not None:
            raise BadInputError(str(self._error))


class TokenWindows:
    def __init__(self, path, context: int, seed: int = 0, windows: str = "random",
                 tokfile: TokenFile | None = None, span: tuple[int, int] | None = None,
                 what: str = "the training data", vocab_size: int | None = None,
                 verification: Verification | None = None):
        if windows not in ("random", "docs"):
            raise about(UsageError(f"windows {windows!r}: expected random or docs"), "windows")
        self.file = tokfile or TokenFile(path)
        self.path = self.file.path
        self.context = context
        self.seed = seed
        self.verification = verification
        # ids at or above this would index past the embedding
        self.vocab_size = min(self.file.header.vocab_size, vocab_size or self.file.header.vocab_size)
        lo, hi = span if span is not None else (0, len(self.file.tokens))
        self.tokens = self.file.tokens[lo:hi]  # a view: --val-split holds out the end of one file
        n = len(self.tokens)
        if n < context + 1:
            raise about(BadInputError(f"{self.path}: {what} has {n} tokens, fewer than one window of the "
                                      f"context ({context}, +1 for the targets); use a shorter context "
                                      "or more data"), "context")
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

    def _checked(self, out: np.ndarray) -> torch.Tensor:
        if out.size:
            top = int(out.max())
            if top >= self.vocab_size:
                raise BadInputError(f"{self.path}: token id {top} is outside the vocabulary ({self.vocab_size}); "
                                    "the file is corrupt: rerun the stage that wrote it")
        return torch.from_numpy(out)

    def windows(self, starts: np.ndarray) -> torch.Tensor:
        T = self.context + 1
        out = np.empty((len(starts), T), dtype=np.int64)
        for i, s in enumerate(starts):
            out[i] = self.tokens[s:s + T]
        return self._checked(out)

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

    def check(self, wait: bool = False) -> None:
        """Raise if the background verification of the file found a problem (source protocol)."""
        if self.verification is not None:
            self.verification.check(wait)

    def sequential(self, max_tokens: int, batch: int, rank: int = 0, world: int = 1):
        """Non-overlapping windows from the start (validation): yields (inputs, targets) batches."""
        T = self.context
        n_windows = min((len(self.tokens) - 1) // T, max(1, max_tokens // T))
        mine = list(range(rank, n_windows, world))
        for i in range(0, len(mine), batch):
            idx = mine[i:i + batch]
            out = np.stack([np.asarray(self.tokens[j * T:j * T + T + 1], dtype=np.int64) for j in idx])
            w = self._checked(out)
            yield w[:, :-1], w[:, 1:]
