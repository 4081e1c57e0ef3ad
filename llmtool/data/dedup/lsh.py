"""LSH candidates: documents whose signatures agree on a whole band are candidate pairs.

    >>> import numpy as np
    >>> band = np.array([7, 9, 7, 7], dtype=np.uint64)
    >>> u, v = band_edges(band, np.arange(4))
    >>> list(zip(u.tolist(), v.tolist()))
    [(0, 2), (0, 3)]

One band at a time, for the whole collection: its hashes are read from every input's
signature folder (`band_XX.u64`, 8 bytes per document), sorted, and every run of equal
hashes gives a star of edges to its smallest document index. Memory is one band
(16 bytes per document with the index), never the whole signature matrix.

With S = Jaccard similarity, b bands and r rows, a pair becomes a candidate with
probability 1 - (1 - S^r)^b: for FineWeb's 14 x 8, 0.92 at S = 0.8, 0.50 at S = 0.71,
0.04 at S = 0.5.
"""

from __future__ import annotations

import numpy as np

from llmtool.data.dedup.exact import group_edges


def band_edges(hashes: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (first, other) between documents with equal band hash (first = smallest idx)."""
    return group_edges(hashes.reshape(-1, 1), idx)


def candidate_probability(s: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard similarity s share at least one band."""
    return 1.0 - (1.0 - s**rows) ** bands


def threshold(bands: int, rows: int) -> float:
    """The similarity where the S-curve is steepest, about (1/b)^(1/r)."""
    return (1.0 / bands) ** (1.0 / rows)
