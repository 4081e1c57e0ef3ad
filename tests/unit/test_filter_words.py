"""The shared word splitter: hand-checked cases, and spaCy's tokenizer as the reference."""

from __future__ import annotations

import gzip
import json

import pytest

from llmtool.data.filters.words import Doc, count_sentences, tokenize


@pytest.mark.parametrize("text, words", [
    ("Hello, world!", ["Hello", ",", "world", "!"]),
    ("I don't know.", ["I", "do", "n't", "know", "."]),
    ("Mr. Smith paid $5.50 (cash).", ["Mr.", "Smith", "paid", "$", "5.50", "(", "cash", ")", "."]),
    ("well-known e-mail", ["well", "-", "known", "e", "-", "mail"]),
    ("10km 5% 1,000 3.5", ["10", "km", "5", "%", "1,000", "3.5"]),
    ("See https://x.org/a?b=1, or www.y.com.", ["See", "https://x.org/a?b=1", ",", "or", "www.y.com", "."]),
    ("Wait... what?!", ["Wait", "...", "what", "?", "!"]),
    ("U.S. e.g. im dont", ["U.S.", "e.g.", "i", "m", "do", "nt"]),
    ("Tom's  \n\t café", ["Tom", "'s", "café"]),
    ("", []),
])
def test_hand_checked_splits(text, words):
    assert tokenize(text) == words


def test_sentences_follow_the_sentencizer():
    assert count_sentences(tokenize("One. Two! Three? Four")) == 4
    assert count_sentences(tokenize('He said "stop." Then left.')) == 2  # a quote after "." stays
    assert count_sentences(tokenize("No end mark")) == 1
    assert count_sentences([]) == 0


def test_doc_tokenises_each_line_once_and_shares_it():
    d = Doc("a b\nc d e")
    first = d.line_words(1)
    assert d.words == ["a", "b", "c", "d", "e"]
    assert d.line_words(1) is first  # cached, not recomputed
    kept = Doc.from_lines(["c d e"], [first])
    assert kept.text == "c d e" and kept.words == first


def test_matches_spacy_on_real_documents(data):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    with gzip.open(data / "web" / "text" / "dolma_cc_en_head-0091.jsonl.gz", "rt") as fh:
        texts = [json.loads(line)["text"] for line in fh][:150]
    same = close = 0
    for text in texts:
        nlp.max_length = len(text) + 10
        ref = [t.text.strip() for t in nlp(text) if t.text.strip()]
        ours = tokenize(text)
        same += ref == ours
        close += abs(len(ref) - len(ours)) <= max(1, 0.01 * len(ref))
    assert same / len(texts) >= 0.9, same
    assert close / len(texts) >= 0.98, close


@pytest.mark.parametrize("blob", ["a:" * 200_000, "(" * 100_000 + "x" + ")" * 100_000, "a@" * 100_000,
                                  " ".join(["a:b:c:d@e"] * 20_000)])
def test_pathological_chunks_stay_linear(blob):
    import time

    t0 = time.perf_counter()
    words = tokenize(blob)
    assert words and time.perf_counter() - t0 < 5
