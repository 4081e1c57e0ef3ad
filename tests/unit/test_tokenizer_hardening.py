"""Tokenizer files with wrong types, adding special tokens, and held-out splits (issue 10)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tiktoken

from llmtool.errors import BadInputError
from llmtool.io.tokfile import TokenFile
from llmtool.tokenizer import bpe, pipeline
from llmtool.tokenizer.file import Tokenizer, add_special_tokens, load_tokenizer, pattern_problem

TEXT = ["the cat sat on the mat, the cat ate the rat. " * 4, "a dog and a cat and a rat " * 4]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return bpe.train_tokenizer(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"], workers=1)


@pytest.fixture
def good(tok) -> dict:
    return tok.to_dict()


def write(tmp_path, d: dict):
    p = tmp_path / "tok.json"
    p.write_text(json.dumps(d))
    return p


# ---------------------------------------------------------------- files with wrong types


BAD_FIELDS = {
    "pattern a number": {"pattern": 5},
    "pattern empty": {"pattern": ""},  # tiktoken's Rust core panics on it
    "pattern matching empty text": {"pattern": r"\s*"},
    "pattern not a regex": {"pattern": "(("},
    "special_tokens a list": {"special_tokens": ["<|endoftext|>"]},
    "special id negative": {"special_tokens": {"<|endoftext|>": -1}},
    "special id 2^32": {"special_tokens": {"<|endoftext|>": 2**32}},
    "special id a float": {"special_tokens": {"<|endoftext|>": 1.5}},
    "special id a bool": {"special_tokens": {"<|endoftext|>": True}},
    "special id taken by a rank": {"special_tokens": {"<|endoftext|>": 65}},
    "special token without a name": {"special_tokens": {"": 400}},
    "version a string": {"version": "1"},
    "ranks a string": {"ranks": "AAEC"},
    "ranks of numbers": {"ranks": [1, 2, 3]},
    "rank_ids negative": {"rank_ids": "negative"},
    "name a number": {"name": 7},
    "bos_token a number": {"bos_token": 1},
    "explicit_n_vocab a string": {"explicit_n_vocab": "300"},
    "training a list": {"training": [1, 2]},
    "provenance a string": {"provenance": "made by hand"},
    "a byte without a rank": {"ranks": "drop byte 10"},
}


@pytest.mark.parametrize("change", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_wrong_types_are_one_bad_input_error(tmp_path, good, change):
    d = {**good, **change}
    d.pop("fingerprint")  # the content check, not the fingerprint check, must catch these
    if change.get("rank_ids") == "negative":
        d["rank_ids"] = [-1, *range(1, len(good["ranks"]))]
    if change.get("ranks") == "drop byte 10":
        d["ranks"] = [t for t in good["ranks"] if base64.b64decode(t) != b"\n"]
    with pytest.raises(BadInputError, match="corrupt tokenizer file") as e:
        load_tokenizer(write(tmp_path, d))
    assert "\n" not in str(e.value)


def test_a_good_file_still_loads(tmp_path, tok, good):
    back = load_tokenizer(write(tmp_path, good))
    assert back.fingerprint == tok.fingerprint and back.encode("the cat") == tok.encode("the cat")


def test_pattern_problem():
    assert pattern_problem(bpe.GPT4) is None and pattern_problem(bpe.GPT2) is None
    assert pattern_problem(bpe.GPT4_DIGITS2) is None
    for bad in ("", "a*", "(?=a)", "x|", 3, None):
        assert pattern_problem(bad)


def test_bpe_train_refuses_a_pattern_matching_empty_text(cli, tmp_path):
    src = tmp_path / "t.txt"
    src.write_text("hello world, some text to train on\n")
    r = cli("bpe-train", src, "-V", "300", "--pattern", "a*", "-o", tmp_path / "t.json")
    assert r.rc == 2 and "can match empty text" in r.err
    assert "panicked" not in r.err and "Traceback" not in r.err


def test_cli_reports_an_empty_pattern_in_one_line(cli, tmp_path, good):
    d = {**good, "pattern": ""}
    d.pop("fingerprint")
    r = cli("info", write(tmp_path, d))
    assert r.rc == 3, r.err
    assert r.err.count("\n") == 1 and r.err.startswith("llmtool info: error:")


# ---------------------------------------------------------------- add_special_tokens


CHAT = ["<|im_start|>", "<|im_end|>"]


def test_add_special_tokens_appends_at_the_next_free_ids(tok):
    chat = add_special_tokens(tok, [*CHAT, "<|endoftext|>", "<|im_end|>"])
    n = tok.vocab_size
    assert chat.special_tokens == {**tok.special_tokens, "<|im_start|>": n, "<|im_end|>": n + 1}
    assert chat.vocab_size == n + 2
    assert chat.fingerprint != tok.fingerprint
    assert tok.special_tokens == {"<|endoftext|>": n - 1}  # the original is unchanged
    assert add_special_tokens(chat, CHAT) is chat  # nothing new: the same tokenizer
    assert tok.with_special_tokens(CHAT).fingerprint == chat.fingerprint
    with pytest.raises(BadInputError):
        add_special_tokens(tok, [""])


def test_added_tokens_survive_a_save_and_load_in_plain_tiktoken(tmp_path, tok):
    chat = add_special_tokens(tok, CHAT)
    p = tmp_path / "chat.json"
    chat.save(p)
    assert load_tokenizer(p).fingerprint == chat.fingerprint
    d = json.loads(p.read_text())
    enc = tiktoken.Encoding(name=d["name"], pat_str=d["pattern"],
                            mergeable_ranks={base64.b64decode(t): i for i, t in enumerate(d["ranks"])},
                            special_tokens=d["special_tokens"])
    ids = enc.encode("hi<|im_end|>", allowed_special="all")
    assert ids[-1] == chat.special_tokens["<|im_end|>"]
    assert enc.decode(ids) == "hi<|im_end|>"


def test_user_text_with_special_token_text_is_ordinary_text(tok):
    chat = add_special_tokens(tok, CHAT)
    text = "the cat said <|im_end|><|im_start|> and <|endoftext|>"
    specials = set(chat.special_tokens.values())
    for ids in (chat.encode(text), chat.encode_batch([text])[0],
                pipeline.encode_batch(chat.encoding, [text], None)[0].tolist()):
        assert not specials & set(ids)
        assert chat.decode(ids) == text
    assert chat.encode("the cat") == tok.encode("the cat")  # ordinary text: the same ids as before


# ---------------------------------------------------------------- held-out split


def _parquet(tmp_path, texts) -> str:
    p = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts}), p)
    return str(p)


def _split(tmp_path, tok, texts, **kw):
    out = str(tmp_path / "data.bin")
    val = str(tmp_path / "data.val.bin")
    stats = pipeline.tokenize_to_file([_parquet(tmp_path, texts)], tok, out, tok.eot_id, {}, val_path=val, **kw)
    return stats, TokenFile(out), TokenFile(val)


def test_a_fraction_that_picks_nothing_holds_out_the_last_document(tmp_path, tok):
    texts = [f"doc {i}" for i in range(73)]
    assert not any(pipeline.is_val(t, 0.01) for t in texts)  # the case of the issue
    stats, train, val = _split(tmp_path, tok, texts, val_fraction=0.01)
    assert stats["val_fallback"] == 1 and stats["val_docs"] == 1 and stats["docs"] == 72
    assert tok.decode(val.document(0)[1:]) == "doc 72"
    assert len(train.doc_starts) == 72


def test_fallback_also_when_the_input_ends_on_a_batch_boundary(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(pipeline, "_BATCH_DOCS", 8)
    texts = [f"doc {i}" for i in range(16)]
    stats, train, val = _split(tmp_path, tok, texts, val_fraction=0.01)
    assert stats["val_docs"] == 1 and stats["docs"] == 15
    assert np.array_equal(val.document(0)[1:], tok.encode("doc 15"))


def test_no_fallback_when_the_hash_picks_a_document_or_there_is_one_document(tmp_path, tok):
    texts = [f"doc {i}" for i in range(200)]
    picked = [t for t in texts if pipeline.is_val(t, 0.05)]
    stats, _, _ = _split(tmp_path, tok, texts, val_fraction=0.05)
    assert picked and stats["val_docs"] == len(picked) and stats["val_fallback"] == 0
    stats, _, _ = _split(tmp_path, tok, ["just one document"], val_fraction=0.01)
    assert stats["docs"] == 1 and stats["val_docs"] == 0


# ---------------------------------------------------------------- damaged local rank files


@pytest.mark.parametrize("damage", ["negative rank", "byte missing"])
def test_damaged_local_rank_file_is_bad_input(tmp_path, monkeypatch, damage):
    from llmtool.tokenizer import file as tfile

    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines += [f"{base64.b64encode(b'ab').decode()} 256"]
    if damage == "negative rank":
        lines[-1] = f"{base64.b64encode(b'ab').decode()} -1"
    else:
        del lines[10]
    (tmp_path / "cl100k_base.tiktoken").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LLMTOOL_TIKTOKEN_DIR", str(tmp_path))
    monkeypatch.setattr(tfile, "_named_cache", {})
    with pytest.raises(BadInputError, match="not a usable rank file"):
        load_tokenizer("cl100k_base")
