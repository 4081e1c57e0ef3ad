"""The dedup run (pipeline.Dedup) on small tables with known answers."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.data.dedup.pipeline import Dedup, Plan
from llmtool.data.dedup.signatures import Settings


@pytest.fixture(scope="module", params=["books", pytest.param("real", marks=pytest.mark.real)])
def originals(request):
    """A few long, unrelated documents: runs of the bundled books' paragraphs, or real web text."""
    if request.param == "books":
        from tests.bundled import book_paragraphs

        paras, out, pos = book_paragraphs(request.getfixturevalue("books")), [], 100
        while len(out) < 4:
            start = pos
            while len(" ".join(paras[start:pos]).split()) < 600:
                pos += 1
            out.append("\n".join(paras[start:pos]))
            pos += 300  # far apart: unrelated
        return out
    out = []
    with gzip.open(request.getfixturevalue("data") / "dedup" / "near_dup_corpus.part0.jsonl.gz", "rt") as fh:
        seen = set()
        for line in fh:
            r = json.loads(line)
            if r["kind"] == "orig" and r["base_id"] not in seen and 400 < len(r["text"].split()) < 1500:
                seen.add(r["base_id"])
                out.append(r["text"])
            if len(out) == 4:
                break
    return out


def near_copy(text: str, every: int = 200) -> str:
    words = text.split(" ")
    return " ".join("CHANGED" if i % every == 7 else w for i, w in enumerate(words))


def write(tmp_path, name, texts, **cols):
    path = tmp_path / name
    pq.write_table(pa.table({"id": [f"{name}-{i}" for i in range(len(texts))], "text": texts, **cols}), path)
    return str(path)


def decide(tmp_path, inputs, mode="both", workers=1, keep="first", **kw):
    plan = Plan(inputs=inputs, settings=Settings(mode=mode), keep=keep, workers=workers, **kw)
    d = Dedup(plan, tmp_path / f"work-{mode}-{workers}-{keep}")
    d.signatures()
    return d, d.decide()


@pytest.fixture
def collection(tmp_path, originals):
    a, b, c, e = originals
    texts = [a, a.upper() + " !!", b, near_copy(b), c, e, near_copy(e, 150)]
    return write(tmp_path, "docs.parquet", texts)


def test_exact_mode(tmp_path, collection):
    _, dec = decide(tmp_path, [collection], mode="exact")
    assert dec.keep.tolist() == [True, False, True, True, True, True, True]
    assert dec.stats["exact_dups"] == 1 and dec.stats["near_dups"] == 0


@pytest.mark.parametrize("mode", ["minhash", "both"])
def test_near_modes(tmp_path, collection, mode):
    _, dec = decide(tmp_path, [collection], mode=mode)
    assert dec.keep.tolist() == [True, False, True, False, True, True, False]
    assert dec.root.tolist() == [0, 0, 2, 2, 4, 5, 5]
    if mode == "both":
        assert dec.stats["exact_dups"] == 1 and dec.stats["near_dups"] == 2


def test_keep_longest(tmp_path, originals):
    a = originals[0]
    texts = [a, a + " and a longer tail", a + " tail", a + " and a longer tail"]
    path = write(tmp_path, "l.parquet", texts)
    _, dec = decide(tmp_path, [path], keep="longest")
    assert dec.keep.tolist() == [False, True, False, False]  # longest, first among equals
    _, dec = decide(tmp_path, [path], keep="first")
    assert dec.keep.tolist() == [True, False, False, False]


def test_worker_count_invariance(tmp_path, near_dups):
    src = str(near_dups[0])
    plans = []
    for workers in (1, 2):
        plan = Plan(inputs=[src], settings=Settings("both"), workers=workers, batch_docs=97)
        d = Dedup(plan, tmp_path / f"w{workers}")
        d.signatures()
        plans.append(d.decide())
    assert (plans[0].keep == plans[1].keep).all()
    assert (plans[0].root == plans[1].root).all()
    assert plans[0].stats["docs_out"] < plans[0].stats["docs_in"]


def test_shard_invariance(tmp_path, originals):
    a, b, c, _ = originals
    inputs = [write(tmp_path, "s0.parquet", [a, b]), write(tmp_path, "s1.parquet", [near_copy(a), c]),
              write(tmp_path, "s2.parquet", [b, c])]
    keys = [f"key{k}" for k in range(3)]
    sigdir = tmp_path / "sigs"
    plan = Plan(inputs=inputs, settings=Settings("both"))
    for shard in range(2):  # two "jobs", each on its inputs
        Dedup(plan, tmp_path / f"job{shard}", sigdir=sigdir, input_keys=keys).signatures(
            [k for k in range(3) if k % 2 == shard])
    merged = Dedup(plan, tmp_path / "merge", sigdir=sigdir, input_keys=keys)
    merged.signatures()
    assert merged.reused == 3
    dm = merged.decide()
    _, single = decide(tmp_path, inputs)
    assert (dm.keep == single.keep).all()
    assert dm.keep.tolist() == [True, True, False, True, False, False]


def test_empty_one_and_all_duplicates(tmp_path, originals):
    empty = write(tmp_path, "empty.parquet", pa.array([], pa.string()))
    _, dec = decide(tmp_path, [empty])
    assert dec.keep.size == 0 and dec.stats["docs_out"] == 0
    one = write(tmp_path, "one.parquet", [originals[0]])
    _, dec = decide(tmp_path, [one])
    assert dec.keep.tolist() == [True]
    same = write(tmp_path, "same.parquet", [originals[1]] * 5 + [near_copy(originals[1])] * 3)
    _, dec = decide(tmp_path, [same])
    assert dec.keep.tolist() == [True] + [False] * 7
    blank = write(tmp_path, "blank.parquet", ["", "  ", None, "!!"])
    _, dec = decide(tmp_path, [blank], mode="minhash")  # no shingles: nothing to compare
    assert dec.keep.all()
    _, dec = decide(tmp_path, [blank], mode="both")  # exact: all normalise to ""
    assert dec.keep.tolist() == [True, False, False, False]


def test_lines_then_documents(tmp_path, originals):
    a, b = originals[0], originals[1]
    nav = "Home\nAbout us\nContact\n"
    # after the navigation lines go, doc 2 is a copy of doc 0 up to case and punctuation
    texts = [nav + a, nav + b, a.upper() + "\n", nav]
    path = write(tmp_path, "lines.parquet", texts)
    d, dec = decide(tmp_path, [path], mode="both", lines=True, min_length=1)
    assert d.dups.size >= 3  # the navigation, and lines repeated inside the real texts
    # doc 3 is only navigation: dropped as too short; doc 2 is an exact copy of doc 0
    assert dec.keep.tolist() == [True, True, False, False]
    assert dec.reason.tolist() == [0, 0, 1, 3]


def test_verify_jaccard_rejects_nothing_true(tmp_path, collection):
    d, dec = decide(tmp_path, [collection], mode="minhash", verify=0.5)
    assert dec.keep.tolist() == [True, False, True, False, True, True, False]
    d, dec = decide(tmp_path, [collection], mode="minhash", verify=0.99)
    assert d.verify_rejected >= 2  # the near copies are below 0.99
    assert dec.keep.tolist() == [True, False, True, True, True, True, True]
