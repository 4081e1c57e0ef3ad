"""normalise: FineWeb's text normalisation, vectorised, against a per-character reference."""

from __future__ import annotations

import gzip
import json
import re
import unicodedata

import pytest

from llmtool.data.dedup.normalise import normalise, normalise_batch

_SEPS = ".,\u060c\u066b\u2396\u2397\u2398"


def reference(text: str | None) -> str:
    """Straightforward per-character version of the documented rules."""
    t = unicodedata.normalize("NFD", (text or "").lower())
    chars = [c for c in t if unicodedata.category(c) != "Mn"]
    t = "".join(chars)
    # numbers: digit runs joined by single separators between digits -> "0"
    t = re.sub(r"\d+(?:[" + re.escape(_SEPS) + r"]\d+)*", "0", t)
    out = []
    for c in t:
        cat = unicodedata.category(c)
        if c.isspace() or cat[0] in "PSZ" or cat in ("Cc", "Cf"):
            out.append(" ")
        else:
            out.append(c)
    return " ".join("".join(out).split())


@pytest.mark.parametrize("text, expected", [
    ("Héllo,  WORLD!\n It costs 3.50 $ in 2024.", "hello world it costs 0 in 0"),
    ("", ""),
    (None, ""),
    ("   \n\t ", ""),
    ("Ünïcödé façade — “quoted” «text»", "unicode facade quoted text"),
    ("a_b-c/d", "a b c d"),
    ("1.2.3 and 4, 5", "0 and 0 0"),
    ("x\x00y", "x y"),
    ("Straße ΑΘΗΝΑ", "straße αθηνα"),
    ("١٢٣ ٤٫٥", "0 0"),  # Arabic-Indic digits and decimal separator
])
def test_examples(text, expected):
    assert normalise(text) == expected


def test_batch_matches_one_by_one():
    texts = ["A, b", "", None, "ÉCOLE 12", "  ", "x"]
    assert normalise_batch(texts) == [normalise(t) for t in texts]
    assert normalise_batch([]) == []


def test_matches_reference_on_real_multilingual_text(data):
    path = data / "dedup" / "near_dup_corpus.part0.jsonl.gz"
    with gzip.open(path, "rt") as fh:
        texts = [json.loads(line)["text"] for _, line in zip(range(300), fh, strict=False)]
    assert any(not t.isascii() for t in texts)
    got = normalise_batch(texts)
    for t, g in zip(texts, got, strict=False):
        assert g == reference(t)
