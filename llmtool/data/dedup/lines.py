"""Line (or paragraph) dedup, C4-style: drop every line that occurs more than once in the
whole collection, then drop documents left too short.

    >>> docs = ["menu\\nhello there\\n", "menu\\nsomething else\\n"]
    >>> counter = LineCounter()
    >>> counter.add(docs)
    >>> dups = counter.duplicates()
    >>> [remove_lines(d, dups) for d in docs]
    ['hello there\\n', 'something else\\n']

Lines are compared after stripping surrounding whitespace; blank lines are never counted
and are kept. A line's count includes repeats inside one document. Line keys are 64-bit
xxh3 hashes, spilled to 16 partition files by their top bits when a spill folder is
given, so counting a large collection needs memory for one partition at a time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import xxhash

_PARAGRAPH_SPLIT = re.compile(r"(\n[ \t\r\f\v]*\n\s*)")
PARTITIONS = 16


def segments(text: str | None, unit: str = "line") -> list[str]:
    """The text cut into units that concatenate back to it exactly (terminators kept)."""
    if not text:
        return []
    if unit == "line":
        return text.splitlines(keepends=True)
    parts = _PARAGRAPH_SPLIT.split(text)
    # [para, sep, para, sep, ..., para]: glue each separator to the paragraph before it
    out = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [p for p in out if p]


def segment_keys(segs: list[str]) -> np.ndarray:
    """64-bit key per segment; 0 for a blank one (never counted, never removed)."""
    keys = np.zeros(len(segs), dtype=np.uint64)
    for i, s in enumerate(segs):
        t = s.strip()
        if t:
            keys[i] = xxhash.xxh3_64_intdigest(t.encode("utf-8", "surrogatepass")) | 1
    return keys


def batch_keys(texts: list[str | None], unit: str = "line") -> np.ndarray:
    """All non-blank segment keys of a batch of texts, concatenated."""
    parts = [segment_keys(segments(t, unit)) for t in texts]
    keys = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return keys[keys != 0]


class LineCounter:
    """Counts segment keys across a collection; `duplicates()` gives those seen twice or more."""

    def __init__(self, spill_dir: str | os.PathLike | None = None, unit: str = "line"):
        self.unit = unit
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self._mem: list[np.ndarray] = []
        self._files = None
        if self.spill_dir is not None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._files = [open(self.spill_dir / f"lines_{p:02d}.u64", "wb") for p in range(PARTITIONS)]

    def add(self, texts: list[str | None]) -> None:
        self.add_keys(batch_keys(texts, self.unit))

    def add_keys(self, keys: np.ndarray) -> None:
        if self._files is None:
            self._mem.append(keys)
            return
        part = (keys >> np.uint64(60)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        keys, part = keys[order], part[order]
        bounds = np.searchsorted(part, np.arange(PARTITIONS + 1))
        for p in range(PARTITIONS):
            if bounds[p + 1] > bounds[p]:
                self._files[p].write(keys[bounds[p]:bounds[p + 1]].tobytes())

    def duplicates(self) -> np.ndarray:
        """Sorted unique keys that occur more than once."""
        if self._files is None:
            chunks = [np.concatenate(self._mem)] if self._mem else []
        else:
            for f in self._files:
                f.close()
            chunks = (np.fromfile(self.spill_dir / f"lines_{p:02d}.u64", dtype=np.uint64)
                      for p in range(PARTITIONS))
        dups = []
        for keys in chunks:
            if keys.size:
                uniq, counts = np.unique(keys, return_counts=True)
                dups.append(uniq[counts > 1])
        return np.concatenate(dups) if dups else np.zeros(0, np.uint64)


def remove_lines(text: str | None, duplicates: np.ndarray, unit: str = "line") -> str:
    """`text` without the segments whose key is in `duplicates` (sorted)."""
    segs = segments(text, unit)
    if not segs or duplicates.size == 0:
        return text or ""
    keys = segment_keys(segs)
    pos = np.searchsorted(duplicates, keys)
    hit = (pos < duplicates.size) & (duplicates[np.minimum(pos, duplicates.size - 1)] == keys) & (keys != 0)
    if not hit.any():
        return text
    return "".join(s for s, h in zip(segs, hit.tolist(), strict=False) if not h)
