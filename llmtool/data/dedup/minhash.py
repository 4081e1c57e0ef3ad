"""MinHash signatures of word n-gram shingles, vectorised over a batch of documents.

    >>> import numpy as np
    >>> from llmtool.data.dedup.minhash import MinHasher
    >>> mh = MinHasher(num_perm=112, ngram=5, seed=1)
    >>> sig, has = mh.signatures(["the cat sat on the mat today", "the cat sat on the mat today!"])
    >>> bool((sig[0] == sig[1]).all()), sig.shape
    (True, (2, 112))

Steps (all numpy, no per-word Python):

1. normalise the batch (normalise.normalise_codepoints): one code-point array, words
   separated by one space, documents by 0;
2. hash every word with a polynomial rolling hash mod 2^64 computed from prefix sums
   (`(H[end] - H[start]) * P^-start`), then a 64-bit finaliser (splitmix64) so every bit
   depends on every character;
3. hash every word n-gram: a weighted sum of its n word hashes (a distinct odd weight
   per position, so order matters), finalised again. A document with fewer than n words
   has one shingle made of all its words; an empty document has none;
4. 112 hash functions h_j(s) = a_j * s + b_j mod 2^64 (a_j odd, so each is a permutation
   of the 64-bit space, i.e. a "min-wise" family as in datatrove and datasketch, which
   take the same affine form mod 2^61-1), and per document the minimum over its shingles
   (`np.minimum.reduceat`).

The hash values differ from datatrove's (which hashes the joined n-gram string with
xxhash or sha1), so signatures are not interchangeable; the statistics are the same:
P[sig_j(A) == sig_j(B)] = Jaccard(A, B), checked against exact Jaccard in the tests.
"""

from __future__ import annotations

import numpy as np

from llmtool.data.dedup.normalise import normalise_codepoints

_BASE = np.uint64(0x100000001B3)  # odd, so it has an inverse mod 2^64
_BASE_INV = np.uint64(pow(int(_BASE), -1, 1 << 64))
_POW: np.ndarray = np.ones(1, dtype=np.uint64)
_POW_INV: np.ndarray = np.ones(1, dtype=np.uint64)
MAX64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^i and P^-i mod 2^64 for i < n (cached, grown by doubling)."""
    global _POW, _POW_INV
    if _POW.size < n:
        # one allocation covers a default batch (~0.5 MB of text); bigger ones grow by doubling
        size = max(n, 2 * _POW.size, (1 << 19) + 4096)
        _POW = np.cumprod(np.concatenate(([np.uint64(1)], np.full(size - 1, _BASE, dtype=np.uint64))),
                          dtype=np.uint64)
        _POW_INV = np.cumprod(np.concatenate(([np.uint64(1)], np.full(size - 1, _BASE_INV, dtype=np.uint64))),
                              dtype=np.uint64)
    return _POW[:n], _POW_INV[:n]


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 with full avalanche (new array)."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def word_hashes(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hash per word, document index per word) for a normalised code-point array."""
    n = cp.size
    if n == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    is_doc = cp == 0
    sep = is_doc | (cp == 32)
    edge = np.diff(np.concatenate(([1], sep.view(np.int8), [1])).astype(np.int8))
    starts = np.flatnonzero(edge == -1)
    ends = np.flatnonzero(edge == 1)
    pw, ipw = _powers(n)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    # +1 so that no character is worth 0 (code point 0 never occurs inside a word anyway)
    np.cumsum((cp.astype(np.uint64) + np.uint64(1)) * pw, out=prefix[1:])
    h = (prefix[ends] - prefix[starts]) * ipw[starts]
    h += (ends - starts).astype(np.uint64) << np.uint64(48)  # length too: cheap extra safety
    doc = np.searchsorted(np.flatnonzero(is_doc), starts)
    return mix64(h), doc


class MinHasher:
    """Signatures of `num_perm` 64-bit hash functions over word `ngram` shingles."""

    def __init__(self, num_perm: int = 112, ngram: int = 5, seed: int = 1):
        if num_perm < 1 or ngram < 1:
            raise ValueError("num_perm and ngram must be >= 1")
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        rng = np.random.default_rng(seed)
        self.a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2)
        self.weights = rng.integers(0, 1 << 63, size=ngram, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    # ------------------------------------------------------------ shingles

    def shingles_from_codepoints(self, cp: np.ndarray, ndocs: int) -> tuple[np.ndarray, np.ndarray]:
        """(shingle hashes, document index per shingle), grouped by document in order."""
        w, wdoc = word_hashes(cp)
        nw, n = w.size, self.ngram
        if nw == 0:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        counts = np.bincount(wdoc, minlength=ndocs)
        acc = w * self.weights[0]
        # word i+k belongs to the n-gram starting at i when both are in the same document
        for k in range(1, min(n, nw)):
            same = wdoc[k:] == wdoc[:-k]
            acc[:-k] += np.where(same, w[k:] * self.weights[k], np.uint64(0))
        # a full n-gram starts at i when word i+n-1 is in the same document; a short
        # document (1..n-1 words) contributes one shingle starting at its first word
        valid = np.zeros(nw, dtype=bool)
        if nw >= n:
            valid[: nw - n + 1] = wdoc[n - 1:] == wdoc[: nw - n + 1]
        short = counts < n
        if short.any():
            first = np.concatenate(([0], np.cumsum(counts)[:-1]))
            sd = np.flatnonzero(short & (counts > 0))
            valid[first[sd]] = True
        return mix64(acc[valid]), wdoc[valid]

    def shingles(self, texts: list[str | None]) -> list[np.ndarray]:
        """Per text, its sorted unique shingle hashes (for exact Jaccard checks)."""
        cp = normalise_codepoints(texts)
        sh, doc = self.shingles_from_codepoints(cp, len(texts))
        bounds = np.searchsorted(doc, np.arange(len(texts) + 1))
        return [np.unique(sh[bounds[i]:bounds[i + 1]]) for i in range(len(texts))]

    # ------------------------------------------------------------ signatures

    def signatures_from_shingles(self, sh: np.ndarray, doc: np.ndarray, ndocs: int,
                                 block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (ndocs, num_perm) uint64, has_shingles bool (ndocs,)).

        Documents without shingles get all-MAX signatures and has_shingles False.
        """
        sig = np.full((ndocs, self.num_perm), MAX64, dtype=np.uint64)
        counts = np.bincount(doc, minlength=ndocs)
        has = counts > 0
        if sh.size == 0:
            return sig, has
        rows = np.flatnonzero(has)
        # Process shingles in blocks of whole documents to bound the temporary array.
        offsets = np.concatenate(([0], np.cumsum(counts[rows])))
        start = 0
        while start < rows.size:
            stop = int(np.searchsorted(offsets, offsets[start] + block, side="right")) - 1
            stop = max(stop, start + 1)
            lo, hi = offsets[start], offsets[stop]
            seg = offsets[start:stop] - lo
            s = sh[lo:hi]
            tmp = np.empty_like(s)
            out = sig[rows[start:stop]]
            for j in range(self.num_perm):
                np.multiply(s, self.a[j], out=tmp)
                tmp += self.b[j]
                out[:, j] = np.minimum.reduceat(tmp, seg)
            sig[rows[start:stop]] = out
            start = stop
        return sig, has

    def signatures(self, texts: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures of raw texts (normalised here)."""
        cp = normalise_codepoints(texts)
        sh, doc = self.shingles_from_codepoints(cp, len(texts))
        return self.signatures_from_shingles(sh, doc, len(texts))


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(ndocs, bands) uint64: one hash per band of `rows` signature values.

    Two documents share a band hash exactly when (up to 2^-64 collisions) their
    signatures agree on all the rows of that band.
    """
    if bands * rows > sig.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} hashes, have {sig.shape[1]}")
    s = sig[:, : bands * rows].reshape(sig.shape[0], bands, rows)
    acc = np.zeros((sig.shape[0], bands), dtype=np.uint64)
    for r in range(rows):
        acc = mix64(acc ^ s[:, :, r]) + np.uint64(r + 1)
    return acc
