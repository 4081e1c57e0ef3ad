"""BPE training: the incremental merge loop vs a from-scratch reference and vs rustbpe."""

from __future__ import annotations

import base64
import collections
import random

import pytest
import tiktoken

from llmtool.errors import BadInputError, UsageError
from llmtool.tokenizer import bpe


def reference_merges(words: list[bytes], counts: list[int], n_merges: int) -> list[tuple[int, int, int]]:
    """Textbook BPE: recount every pair from scratch before each merge (slow, obviously right)."""
    seqs = [list(w) for w in words]
    merges = []
    for k in range(n_merges):
        pc = collections.Counter()
        for s, c in zip(seqs, counts):
            for p in zip(s, s[1:]):
                pc[p] += c
        if not pc:
            break
        best = max(pc.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        (a, b), c = best
        merges.append((a, b, c))
        nid = 256 + k
        for i, s in enumerate(seqs):
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    out.append(nid)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            seqs[i] = out
    return merges


def _books(folder, chars=None):
    """The texts of the books in `folder`: the `books` fixture (two bundled novels) or the real
    data's text/ (six books, 8 MB)."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("*.txt"))]
    return [t[:chars] for t in texts] if chars else texts


def _words(texts, pattern=bpe.GPT4):
    c, _ = bpe.count_chunks(texts, pattern, workers=1)
    return [w.encode() for w in c], list(c.values())


def test_merge_loop_matches_reference_on_real_text(books):
    words, counts = _words(_books(books, 20_000))
    ref = reference_merges(words, counts, 300)
    assert bpe.merge_loop(words, counts, 300) == ref
    assert bpe.merge_loop_py(words, counts, 300) == ref


@pytest.mark.parametrize("seed", range(5))
def test_merge_loop_matches_reference_on_repetitive_input(seed):
    # tiny alphabets make overlapping runs ("aaaa") and count ties everywhere
    rng = random.Random(seed)
    words = list({bytes(rng.choice(b"ab c") for _ in range(rng.randint(1, 12))) for _ in range(300)})
    counts = [rng.randint(0, 5) for _ in words]
    ref = reference_merges(words, counts, 60)
    assert bpe.merge_loop(words, counts, 60) == ref
    assert bpe.merge_loop_py(words, counts, 60) == ref


def test_ties_go_to_the_smallest_pair():
    # (b, a) and (a, b) both occur 3 times... the smaller pair (97, 98) wins
    merges = bpe.merge_loop([b"ab", b"ba"], [3, 3], 1)
    assert merges == [(ord("a"), ord("b"), 3)]


def test_merge_loop_stops_when_no_pair_is_left():
    assert bpe.merge_loop([b"abc"], [1], 100) == [(97, 98, 1), (256, 99, 1)]


def test_c_and_python_twins_agree_on_books(books):
    words, counts = _words(_books(books, 300_000))
    assert bpe.merge_loop(words, counts, 800) == bpe.merge_loop_py(words, counts, 800)


@pytest.mark.parametrize("name", list(bpe.PATTERNS))
def test_chunk_counts_do_not_depend_on_cutting_or_workers(books, name):
    texts = _books(books)
    pat = bpe.PATTERNS[name]
    import regex

    r = regex.compile(pat)
    whole = collections.Counter()
    for t in texts:
        whole.update(r.findall(t))
    one, stats = bpe.count_chunks(texts, pat, workers=1)
    two, _ = bpe.count_chunks(texts, pat, workers=2)
    assert one == whole and two == whole
    assert stats == {"docs": len(texts), "chars": sum(map(len, texts))}


@pytest.mark.parametrize("vocab", [4096, 32768])
def test_same_merges_as_rustbpe(data, vocab):
    rustbpe = pytest.importorskip("rustbpe")
    texts = _books(data / "text")
    ref = rustbpe.Tokenizer()
    # same pattern on both sides; rustbpe's vocab has no special tokens
    ref.train_from_iterator(iter(texts), vocab, pattern=bpe.GPT4)
    ref_ranks = {bytes(t): i for t, i in ref.get_mergeable_ranks()}
    tok = bpe.train_tokenizer(texts, vocab + 4, workers=2)
    assert len(tok.mergeable_ranks) == vocab
    mine = sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1])
    theirs = sorted(ref_ranks.items(), key=lambda kv: kv[1])
    first_diff = next((i for i, (x, y) in enumerate(zip(mine, theirs)) if x != y), None)
    assert first_diff is None, f"first differing rank {first_diff}: {mine[first_diff]} vs {theirs[first_diff]}"
    assert tok.special_tokens == {s: vocab + i for i, s in enumerate(bpe.DEFAULT_SPECIALS)}


def test_trained_file_round_trips_through_plain_tiktoken(books, tmp_path):
    texts = _books(books, 200_000)
    tok = bpe.train_tokenizer(texts, 2000, workers=1, name="t")
    tok.save(tmp_path / "t.json")
    # the documented few lines, without llmtool
    import json

    d = json.loads((tmp_path / "t.json").read_text())
    enc = tiktoken.Encoding(name=d["name"], pat_str=d["pattern"],
                            mergeable_ranks={base64.b64decode(t): i for i, t in enumerate(d["ranks"])},
                            special_tokens=d["special_tokens"])
    for t in _books(books):
        assert enc.decode_bytes(enc.encode_ordinary(t)) == t.encode()
        assert enc.encode_ordinary(t[:50_000]) == tok.encode(t[:50_000])
    rng = random.Random(0)
    for n in (1, 7, 1000, 100_000):
        raw = bytes(rng.getrandbits(8) for _ in range(n))
        assert enc.decode_bytes(enc._encode_bytes(raw)) == raw  # arbitrary bytes, not UTF-8
        s = raw.decode("latin-1")
        assert tok.decode(tok.encode(s)) == s
        s = raw.decode("utf-8", errors="replace")  # what the readers make of non-UTF-8 input
        assert tok.decode(tok.encode(s)) == s
    s = "<|endoftext|> naïve 日本語 🤖 \r\n\t x" * 3
    assert tok.decode(tok.encode(s)) == s
    assert tok.eot_id not in tok.encode(s)  # special-token text is plain text


def test_empty_corpus_is_bad_input():
    with pytest.raises(BadInputError, match="empty corpus"):
        bpe.train_tokenizer([], 1000)
    with pytest.raises(BadInputError, match="empty corpus"):
        bpe.train_tokenizer(["", ""], 1000)


def test_vocab_too_small_and_bad_regex_are_usage_errors():
    with pytest.raises(UsageError, match="at least 260"):
        bpe.train_tokenizer(["hello"], 259)
    bpe.train_tokenizer(["hello"], 257, special_tokens=["<|x|>"])  # exactly 256 + specials: no merges
    with pytest.raises(UsageError, match="invalid regex"):
        bpe.train_tokenizer(["hello"], 1000, pattern="([a-z]")
    with pytest.raises(UsageError, match="twice"):
        bpe.train_tokenizer(["hello"], 1000, special_tokens=["<|a|>", "<|a|>"])


def test_vocab_larger_than_corpus_stops_early():
    tok = bpe.train_tokenizer(["abc abc"], 5000, special_tokens=["<|endoftext|>"])
    assert tok.extra["stopped_early"]
    assert tok.extra["merges"] == len(tok.mergeable_ranks) - 256 < 10
    assert tok.special_tokens["<|endoftext|>"] == tok.vocab_size - 1


def test_custom_pattern_and_digits2():
    tok = bpe.train_tokenizer(["12345 678 " * 50], 300, pattern="gpt4-digits2", special_tokens=[])
    assert b"123" not in tok.mergeable_ranks and b"12" in tok.mergeable_ranks
    tok = bpe.train_tokenizer(["ab cd " * 50], 300, pattern=r"\S+|\s+", special_tokens=[])
    assert tok.pattern == r"\S+|\s+"
    assert tok.extra["pattern_name"] == "custom"
