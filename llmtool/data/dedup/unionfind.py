"""Union-find: clusters from duplicate pairs, each labelled by its smallest document index.

    >>> import numpy as np
    >>> c = Components(5)
    >>> c.union(np.array([0, 3]), np.array([2, 4]))
    >>> c.union(np.array([2]), np.array([4]))
    >>> c.roots().tolist()
    [0, 1, 0, 0, 0]

`Components` is vectorised: each `union` call hooks the larger root of every pair under
the smaller one with `np.minimum.at` and compresses paths by pointer jumping, repeated
until every pair shares a root. Roots only ever decrease, so the result (the smallest
index of each cluster) does not depend on the order of the pairs — the survivor choice is
deterministic. `UnionFind` is the textbook per-pair version, kept as the test reference.
"""

from __future__ import annotations

import numpy as np


class Components:
    """Disjoint sets over 0..n-1 with vectorised unions."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def _compress(self) -> None:
        p = self.parent
        while True:
            pp = p[p]
            if np.array_equal(pp, p):
                break
            p = pp
        self.parent = p

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        u = np.asarray(u, dtype=np.int64)
        v = np.asarray(v, dtype=np.int64)
        while u.size:
            self._compress()
            ru, rv = self.parent[u], self.parent[v]
            differ = ru != rv
            if not differ.any():
                return
            ru, rv = ru[differ], rv[differ]
            u, v = u[differ], v[differ]
            np.minimum.at(self.parent, np.maximum(ru, rv), np.minimum(ru, rv))

    def roots(self) -> np.ndarray:
        """The root (smallest member) of every element's set."""
        self._compress()
        return self.parent


class UnionFind:
    """Per-pair union-find with path halving; the root of a set is its smallest element."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo

    def roots(self) -> list[int]:
        return [self.find(i) for i in range(len(self.parent))]
