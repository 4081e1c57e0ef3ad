"""MinHash signatures: shingles against a plain-Python reference, signature agreement
against the exact Jaccard similarity, and datasketch's MinHash as a second estimator."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from llmtool.data.dedup.lsh import band_edges, candidate_probability, threshold
from llmtool.data.dedup.minhash import MinHasher, band_hashes
from llmtool.data.dedup.normalise import normalise


def ref_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


@pytest.fixture(scope="module", params=["books", pytest.param("real", marks=pytest.mark.real)])
def texts(request):
    """600 rows of a near-duplicate corpus: built from the bundled books, or the real one."""
    if request.param == "books":
        return request.getfixturevalue("near_dups")[1][:600]
    with gzip.open(request.getfixturevalue("data") / "dedup" / "near_dup_corpus.part0.jsonl.gz", "rt") as fh:
        return [json.loads(line) for _, line in zip(range(600), fh, strict=False)]


def test_shingle_counts_match_reference(texts):
    mh = MinHasher()
    docs = [r["text"] for r in texts[:200]] + ["", "one", "two words", "a b c d", "a b c d e", "a b c d e a b c d e"]
    ours = mh.shingles(docs)
    for d, sh in zip(docs, ours, strict=False):
        assert sh.size == len(ref_shingles(d)), d[:80]


def test_shingles_of_equal_ngrams_are_equal_across_documents():
    mh = MinHasher(ngram=3)
    a, b = mh.shingles(["x y z w", "q x y z"])
    # "x y z" is shared; "y z w" and "q x y" are not
    assert np.intersect1d(a, b).size == 1
    c, d = mh.shingles(["a b c", "c b a"])
    assert np.intersect1d(c, d).size == 0  # order matters


def test_signature_agreement_estimates_jaccard(texts):
    mh = MinHasher(num_perm=112)
    rng = random.Random(0)
    pairs, docs = [], []
    by_base: dict = {}
    for r in texts:
        by_base.setdefault(r["base_id"], []).append(r["text"])
    for group in by_base.values():
        if len(group) >= 2:
            pairs.append((len(docs), len(docs) + 1))
            docs += group[:2]
    for _ in range(50):  # unrelated pairs too
        a, b = rng.sample(range(len(texts)), 2)
        pairs.append((len(docs), len(docs) + 1))
        docs += [texts[a]["text"], texts[b]["text"]]
    sig, has = mh.signatures(docs)
    assert has.all()
    errors = []
    for a, b in pairs:
        true = jaccard(ref_shingles(docs[a]), ref_shingles(docs[b]))
        errors.append((sig[a] == sig[b]).mean() - true)
    errors = np.array(errors)
    assert len(errors) > 100
    assert abs(errors.mean()) < 0.015  # unbiased
    assert np.sqrt((errors ** 2).mean()) < 0.06  # binomial sd is at most 0.047 for 112 hashes


def test_datasketch_estimates_agree(texts):
    datasketch = pytest.importorskip("datasketch")
    mh = MinHasher(num_perm=112)
    ours, theirs = [], []
    docs = [r["text"] for r in texts[:120]]
    sig, _ = mh.signatures(docs)
    ms = []
    for d in docs:
        m = datasketch.MinHash(num_perm=112, seed=1)
        m.update_batch([" ".join(s).encode() for s in ref_shingles(d)])
        ms.append(m)
    for i in range(0, len(docs) - 1, 2):
        true = jaccard(ref_shingles(docs[i]), ref_shingles(docs[i + 1]))
        ours.append((sig[i] == sig[i + 1]).mean() - true)
        theirs.append(ms[i].jaccard(ms[i + 1]) - true)
    # both estimators have the same error scale
    assert np.sqrt(np.mean(np.square(ours))) < 2 * np.sqrt(np.mean(np.square(theirs))) + 0.02


def test_empty_and_short_documents():
    mh = MinHasher()
    sig, has = mh.signatures(["", "   ", "hi there", "Hi, there!", None])
    assert has.tolist() == [False, False, True, True, False]
    assert (sig[2] == sig[3]).all()
    assert (sig[0] == np.iinfo(np.uint64).max).all()


def test_batching_does_not_change_signatures(texts):
    mh = MinHasher()
    docs = [r["text"] for r in texts[:40]]
    whole, _ = mh.signatures(docs)
    parts = np.concatenate([mh.signatures(docs[i:i + 7])[0] for i in range(0, 40, 7)])
    assert (whole == parts).all()
    blocks, _ = mh.signatures_from_shingles(*mh.shingles_from_codepoints(
        __import__("llmtool.data.dedup.normalise", fromlist=["x"]).normalise_codepoints(docs), 40), 40, block=500)
    assert (blocks == whole).all()


def test_seed_changes_hashes_not_statistics():
    a = MinHasher(seed=1).signatures(["the quick brown fox jumps over the lazy dog"])[0]
    b = MinHasher(seed=2).signatures(["the quick brown fox jumps over the lazy dog"])[0]
    assert not (a == b).all()


def test_band_hashes_equal_exactly_when_rows_agree():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 1 << 63, size=(3, 112), dtype=np.uint64)
    sig[1] = sig[0]
    sig[1, 10] ^= np.uint64(1)  # band 1 (rows 8..15) differs
    bh = band_hashes(sig, 14, 8)
    assert bh.shape == (3, 14)
    assert (bh[0] == bh[1]).sum() == 13 and bh[0, 1] != bh[1, 1]
    assert not (bh[0] == bh[2]).any()
    with pytest.raises(ValueError):
        band_hashes(sig, 20, 8)


def test_band_edges_star_to_smallest_index():
    h = np.array([5, 3, 5, 3, 9, 5], dtype=np.uint64)
    idx = np.array([10, 11, 12, 13, 14, 15])
    u, v = band_edges(h, idx)
    assert sorted(zip(u.tolist(), v.tolist(), strict=False)) == [(10, 12), (10, 15), (11, 13)]


def test_lsh_curve_numbers():
    assert abs(candidate_probability(0.8, 14, 8) - 0.924) < 0.001  # FineWeb's figure
    assert 0.71 < threshold(14, 8) < 0.73
