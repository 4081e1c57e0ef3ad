"""Union-find, exact grouping and line dedup against straightforward references."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from llmtool.data.dedup.exact import exact_hashes, group_edges
from llmtool.data.dedup.lines import LineCounter, batch_keys, remove_lines, segments
from llmtool.data.dedup.unionfind import Components, UnionFind


@pytest.mark.parametrize("seed", range(5))
def test_components_match_reference_union_find(seed):
    rng = random.Random(seed)
    n = 300
    edges = [(rng.randrange(n), rng.randrange(n)) for _ in range(rng.randrange(0, 400))]
    ref = UnionFind(n)
    for a, b in edges:
        ref.union(a, b)
    c = Components(n)
    # in a few calls, in shuffled order: the labels must not depend on it
    rng.shuffle(edges)
    for i in range(0, len(edges), 97):
        chunk = edges[i:i + 97]
        c.union(np.array([a for a, _ in chunk], dtype=np.int64), np.array([b for _, b in chunk], dtype=np.int64))
    assert c.roots().tolist() == ref.roots()
    # every root is its cluster's smallest member
    roots = c.roots()
    for r in set(roots.tolist()):
        assert r == min(np.flatnonzero(roots == r))


def test_components_empty():
    c = Components(0)
    c.union(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert c.roots().size == 0


def test_exact_hashes_and_groups():
    texts = ["a", "b", "a", "", "b", ""]
    h = exact_hashes(texts)
    assert h.shape == (6, 2)
    u, v = group_edges(h, np.arange(6))
    assert sorted(zip(u.tolist(), v.tolist(), strict=False)) == [(0, 2), (1, 4), (3, 5)]
    u, v = group_edges(h[:1], np.arange(1))
    assert u.size == 0


def test_group_edges_random_against_dict():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 20, size=(500, 2)).astype(np.uint64)
    idx = rng.permutation(1000)[:500]
    u, v = group_edges(keys, idx)
    groups = collections.defaultdict(list)
    for k, i in zip(map(tuple, keys.tolist()), idx.tolist(), strict=False):
        groups[k].append(i)
    expected = sorted((min(g), i) for g in groups.values() for i in g if i != min(g))
    assert sorted(zip(u.tolist(), v.tolist(), strict=False)) == expected


def test_segments_roundtrip():
    text = "a\nb\r\n\nc\n\n\n  d\n"
    assert "".join(segments(text)) == text
    paras = segments(text, "paragraph")
    assert "".join(paras) == text
    assert [p.strip() for p in paras] == ["a\nb", "c", "d"]
    assert segments("", "line") == [] and segments(None) == []


def reference_line_dedup(docs: list[str]) -> list[str]:
    counts = collections.Counter(line.strip() for d in docs for line in d.splitlines() if line.strip())
    return ["".join(line for line in d.splitlines(keepends=True)
                    if not line.strip() or counts[line.strip()] < 2) for d in docs]


@pytest.mark.parametrize("spill", [False, True])
def test_line_dedup_matches_reference(tmp_path, spill):
    rng = random.Random(3)
    vocab = [f"line {i}" for i in range(60)]
    docs = ["".join(rng.choice(vocab) + rng.choice(["\n", "\r\n", "  \n"]) for _ in range(rng.randrange(0, 12)))
            for _ in range(80)]
    counter = LineCounter(tmp_path / "spill" if spill else None)
    for i in range(0, len(docs), 9):
        counter.add(docs[i:i + 9])
    dups = counter.duplicates()
    assert [remove_lines(d, dups) for d in docs] == reference_line_dedup(docs)


def test_blank_lines_never_counted():
    keys = batch_keys(["a\n\n\nb\n", "\n\n"])
    assert keys.size == 2
    c = LineCounter()
    c.add(["x\n\ny\n", "\n\nz\n"])
    assert c.duplicates().size == 0


def test_paragraph_unit():
    docs = ["Cookie banner\nAccept\n\nReal text one.\n", "Cookie banner\nAccept\n\nReal text two.\n"]
    c = LineCounter(unit="paragraph")
    c.add(docs)
    dups = c.duplicates()
    assert [remove_lines(d, dups, "paragraph") for d in docs] == ["Real text one.\n", "Real text two.\n"]


@pytest.mark.parametrize("module", ["normalise", "minhash", "exact", "lsh", "unionfind", "lines", "signatures"])
def test_module_examples_run(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"llmtool.data.dedup.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
