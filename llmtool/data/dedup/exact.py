"""Exact duplicates: a 128-bit xxh3 hash of each document's normalised text.

    >>> from llmtool.data.dedup.exact import exact_hashes
    >>> h = exact_hashes(["hello world", "hello world", "other"])
    >>> bool((h[0] == h[1]).all()), bool((h[0] == h[2]).all())
    (True, False)

128 bits make an accidental collision across even 10^12 documents vanishingly unlikely
(~2^-48), so equal hashes are treated as equal texts without comparing the strings.
"""

from __future__ import annotations

import numpy as np
import xxhash


def exact_hashes(normalised: list[str]) -> np.ndarray:
    """(n, 2) uint64: xxh3-128 of each normalised text's UTF-8 bytes (high, low)."""
    out = np.empty((len(normalised), 2), dtype=np.uint64)
    if not normalised:
        return out
    digests = b"".join(xxhash.xxh3_128_digest(s.encode("utf-8")) for s in normalised)
    out[:] = np.frombuffer(digests, dtype=">u8").reshape(-1, 2)
    return out


def group_edges(keys: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (first, other) linking every row to the first row (smallest idx) with equal key.

    keys: (n, k) uint64 rows (k = 1 or 2); idx: (n,) global document indices.
    """
    if idx.size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = keys.reshape(idx.size, -1)
    order = np.lexsort((idx,) + tuple(keys[:, j] for j in range(keys.shape[1] - 1, -1, -1)))
    k = keys[order]
    same = (k[1:] == k[:-1]).all(axis=1)
    if not same.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # run id of each sorted row; the first row of each run is its representative
    run_start = np.concatenate(([True], ~same))
    run_id = np.cumsum(run_start) - 1
    first = idx[order][run_start][run_id]
    other = idx[order]
    keep = ~run_start
    return first[keep].astype(np.int64), other[keep].astype(np.int64)
