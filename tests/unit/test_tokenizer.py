"""The tokenizer file, named encodings offline, the token-file pipeline and the exports.

GPT-2's and GPT-4's rank files come from the real data folder (tests taking `tiktoken_files` are
real-tier); the rest use a small BPE trained on the bundled books."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from llmtool.errors import BadInputError
from llmtool.io.tokfile import TokenFile
from llmtool.tokenizer import bpe, named
from llmtool.tokenizer import file as tfile
from llmtool.tokenizer.export import export_tokens, write_tiktoken
from llmtool.tokenizer.file import Tokenizer, load_tokenizer
from llmtool.tokenizer.pipeline import encode_batch, tokenize_to_file


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.setattr(tfile, "_named_cache", {})


@pytest.fixture
def tiktoken_files(data, monkeypatch):
    """Named encodings (gpt2, cl100k_base) load offline from the real data's tiktoken/."""
    monkeypatch.setenv("LLMTOOL_TIKTOKEN_DIR", str(data / "tiktoken"))


@pytest.fixture(scope="module")
def small(books):
    """A 600-token BPE trained on Moby-Dick's first 100,000 characters."""
    return bpe.train_tokenizer([(books / "moby_dick.txt").read_text(encoding="utf-8")[:100_000]], 600,
                               workers=1, name="small")


def test_gpt2_ids_are_gpt2s(tiktoken_files):
    tok = load_tokenizer("gpt2")
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.vocab_size == 50257 and tok.eot_id == 50256 == tok.bos_id
    assert tok.decode([15496, 995]) == "Hello world"
    assert load_tokenizer("r50k_base").fingerprint == tok.fingerprint


def test_cl100k_matches_tiktoken_on_books(data, tiktoken_files):
    tok = load_tokenizer("cl100k_base")
    ranks = load_tiktoken_bpe(str(data / "tiktoken" / "cl100k_base.tiktoken"))
    ref = tiktoken.Encoding("ref", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)
    text = (data / "text" / "moby_dick.txt").read_text(encoding="utf-8")[:300_000]
    assert tok.encode(text) == ref.encode_ordinary(text)
    assert tok.encode("Hello world") == [9906, 1917]
    assert tok.special_id("<|endofprompt|>") == 100276


def test_named_files_found_through_env(data, tmp_path, monkeypatch):
    shutil.copy(data / "tiktoken" / "cl100k_base.tiktoken", tmp_path / "cl100k_base.tiktoken")
    monkeypatch.setenv("LLMTOOL_TIKTOKEN_DIR", str(tmp_path))
    ranks, spec = named.load_named("cl100k_base")
    assert spec["source"] == str(tmp_path / "cl100k_base.tiktoken") and len(ranks) == 100256


def test_unknown_name_and_missing_file():
    with pytest.raises(BadInputError, match="unknown tokenizer"):
        load_tokenizer("gpt9")
    with pytest.raises(BadInputError, match="no such tokenizer file"):
        load_tokenizer("nope/tok.json")


def test_save_load_round_trip_and_corruption(tiktoken_files, tmp_path):
    tok = load_tokenizer("gpt2").with_special_tokens(["<|im_start|>", "<|endoftext|>"])
    assert tok.special_tokens == {"<|endoftext|>": 50256, "<|im_start|>": 50257} and tok.vocab_size == 50258
    p = tmp_path / "tok.json"
    tok.save(p)
    back = load_tokenizer(p)
    assert back.fingerprint == tok.fingerprint and back.encode("a b c") == tok.encode("a b c")
    assert back.vocab_size == 50258
    (tmp_path / "ck").mkdir()
    shutil.copy(p, tmp_path / "ck" / "tokenizer.json")
    assert load_tokenizer(tmp_path / "ck").fingerprint == tok.fingerprint  # a checkpoint folder
    d = json.loads(p.read_text())
    d["ranks"][300], d["ranks"][301] = d["ranks"][301], d["ranks"][300]
    p.write_text(json.dumps(d))
    with pytest.raises(BadInputError, match="fingerprint does not match"):
        load_tokenizer(p)
    p.write_text('{"format": "llmtool-tokenizer", "ranks": [')
    with pytest.raises(BadInputError, match="invalid JSON"):
        load_tokenizer(p)
    p.write_text('{"hello": 1}')
    with pytest.raises(BadInputError, match="not an llmtool tokenizer"):
        load_tokenizer(p)


def test_special_id_missing_is_bad_input(small):
    with pytest.raises(BadInputError, match="no special token"):
        small.special_id("<|nope|>")


def test_decode_of_unknown_id_is_bad_input(small):
    with pytest.raises(BadInputError, match="not in tokenizer"):
        small.decode([60000])


def _table(tmp_path, texts, rows_per_group=3):
    p = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts}), p, row_group_size=rows_per_group)
    return str(p)


def _docs(books):
    text = (books / "pride_and_prejudice.txt").read_text(encoding="utf-8")
    docs = [d for d in text.split("\n\n") if d.strip()][:400]
    return docs + ["", "literal <|endoftext|> inside", None]


def test_pipeline_output_is_identical_for_any_worker_count(books, small, tmp_path):
    tok = small
    src = _table(tmp_path, _docs(books), rows_per_group=7)
    outs = []
    for w in (1, 3):
        dest = tmp_path / f"w{w}.bin"
        stats = tokenize_to_file([src], tok, str(dest), tok.eot_id, {"x": 1}, workers=w)
        outs.append(dest.read_bytes())
    assert outs[0] == outs[1]
    tf = TokenFile(tmp_path / "w1.bin", verify=True)
    docs = [d for d in _docs(books) if d]
    assert stats["docs"] == tf.header.n_docs == len(docs) and stats["empty"] == 2
    for i in (0, 17, len(docs) - 1):
        ids = tf.document(i)
        assert ids[0] == tok.eot_id  # the separator precedes every document
        assert list(ids[1:]) == tok.encode(docs[i])
    assert tok.eot_id not in tf.document(len(docs) - 1)[1:]  # literal special text is plain text
    assert tf.header.fingerprint == tok.fingerprint[:32]


def test_pipeline_held_out_split(books, small, tmp_path):
    tok = small
    docs = [d for d in _docs(books) if d]
    src = _table(tmp_path, docs)
    s = tokenize_to_file([src], tok, str(tmp_path / "a.bin"), tok.eot_id, {}, workers=2,
                         val_path=str(tmp_path / "a.val.bin"), val_fraction=0.1)
    assert 10 < s["val_docs"] < 80 and s["docs"] + s["val_docs"] == len(docs)
    s2 = tokenize_to_file([src], tok, str(tmp_path / "b.bin"), tok.eot_id, {}, workers=1,
                          val_path=str(tmp_path / "b.val.bin"), val_docs=5)
    assert s2["val_docs"] == 5
    val = TokenFile(tmp_path / "b.val.bin")
    assert list(val.document(0)[1:]) == tok.encode(docs[0])


def test_encode_batch_matches_encode_ordinary(small):
    tok = small
    texts = ["a <|endoftext|> b", "x" * 1000, "naïve \ud800 surrogate"]
    toks, starts = encode_batch(tok.encoding, texts, 7)
    assert list(starts) == [0, len(tok.encode(texts[0])) + 1, len(tok.encode(texts[0])) + len(tok.encode(texts[1])) + 2]
    assert list(toks[1:starts[1]]) == tok.encode(texts[0])
    assert list(toks[starts[2] + 1:]) == tok.encoding.encode_ordinary(texts[2])


def test_fingerprint_mismatch_is_refused(small, tmp_path):
    src = _table(tmp_path, ["hello world"] * 4)
    tokenize_to_file([src], small, str(tmp_path / "d.bin"), small.eot_id, {}, workers=1)
    tf = TokenFile(tmp_path / "d.bin")
    tf.check_tokenizer(small.fingerprint)
    other = bpe.train_tokenizer(["hello world, hello there " * 40], 300, workers=1)
    with pytest.raises(BadInputError, match="different tokenizer"):
        tf.check_tokenizer(other.fingerprint)


def test_exports(small, tmp_path):
    tok = small
    write_tiktoken(tok, tmp_path / "t.tiktoken")
    assert load_tiktoken_bpe(str(tmp_path / "t.tiktoken")) == tok.mergeable_ranks
    src = _table(tmp_path, ["to be or not to be", "that is the question"])
    tokenize_to_file([src], tok, str(tmp_path / "d.bin"), tok.eot_id, {}, workers=1)
    tf = TokenFile(tmp_path / "d.bin")
    export_tokens(str(tmp_path / "d.bin"), str(tmp_path / "llmc.bin"), "llmc")
    raw = (tmp_path / "llmc.bin").read_bytes()
    header = np.frombuffer(raw[:1024], dtype=np.int32)
    assert list(header[:3]) == [20240520, 1, len(tf)]
    assert np.array_equal(np.frombuffer(raw[1024:], dtype=np.uint16), tf.tokens)
    export_tokens(str(tmp_path / "d.bin"), str(tmp_path / "nano.bin"), "nanogpt")
    assert np.array_equal(np.memmap(tmp_path / "nano.bin", dtype=np.uint16, mode="r"), tf.tokens)


def test_tokenizer_pickles_for_process_pools(small):
    import pickle

    tok = small
    tok.encode("warm")  # builds the tiktoken object, which must not be pickled
    back = pickle.loads(pickle.dumps(tok))
    assert back.encode("hello there") == tok.encode("hello there")


def test_trained_tokenizer_info(books, tmp_path):
    from llmtool.tokenizer.info import describe_tokenizer

    tok = bpe.train_tokenizer([(books / "moby_dick.txt").read_text(encoding="utf-8")], 1000, workers=1, name="s")
    tok.save(tmp_path / "s.json")
    info = describe_tokenizer(str(tmp_path / "s.json"))
    assert info["vocab_size"] == 1000 and info["merges"] == 1000 - 256 - 4
    assert len(info["longest_tokens"]) == 10 and "<|im_end|>" in info["special_tokens"]
    assert isinstance(Tokenizer.load(tmp_path / "s.json"), Tokenizer)


def test_wide_vocab_exports(tiktoken_files, tmp_path):
    tok = load_tokenizer("cl100k_base")
    src = _table(tmp_path, ["a wide vocabulary", "needs uint32 tokens"])
    tokenize_to_file([src], tok, str(tmp_path / "w.bin"), tok.eot_id, {}, workers=1)
    tf = TokenFile(tmp_path / "w.bin")
    assert tf.header.dtype == np.uint32
    with pytest.raises(BadInputError, match="nanoGPT"):
        export_tokens(str(tmp_path / "w.bin"), str(tmp_path / "n.bin"), "nanogpt")
    assert not (tmp_path / "n.bin").exists()
    export_tokens(str(tmp_path / "w.bin"), str(tmp_path / "l.bin"), "llmc")
    raw = (tmp_path / "l.bin").read_bytes()
    assert list(np.frombuffer(raw[:12], dtype=np.int32)) == [20240801, 7, len(tf)]
    assert np.array_equal(np.frombuffer(raw[1024:], dtype=np.uint32), tf.tokens)
