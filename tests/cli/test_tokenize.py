"""`llmtool tokenize` and `llmtool info` on token files, end to end."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.io.tokfile import TokenFile


@pytest.fixture
def env(data):
    """GPT-2's rank file comes from the real data folder (tests taking this are real-tier)."""
    return {"LLMTOOL_TIKTOKEN_DIR": str(data / "tiktoken")}


@pytest.fixture
def docs_parquet(books, tmp_path):
    text = (books / "pride_and_prejudice.txt").read_text(encoding="utf-8")
    docs = [d for d in text.split("\n\n\n") if d.strip()]
    p = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": docs, "id": list(range(len(docs)))}), p, row_group_size=50)
    return p, docs


def test_tokenize_parquet_with_gpt2(cli, env, docs_parquet, tmp_path):
    src, docs = docs_parquet
    out = tmp_path / "data.bin"
    r = cli("tokenize", src, "-t", "gpt2", "-o", out, "--val-docs", 3, "--json", env=env)
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["docs"] == len(docs) - 3 and s["val_docs"] == 3
    tf = TokenFile(out, verify=True)
    assert tf.header.n_docs == len(docs) - 3 and tf.header.bos_id == tf.header.eot_id == 50256
    assert tf.meta["tokenizer"]["name"] == "gpt2" and tf.meta["provenance"]["stage"] == "tokenize"
    val = TokenFile(tmp_path / "data.val.bin", verify=True)
    assert val.header.n_docs == 3

    info = cli("info", out, "--decode", 40, env=env)
    assert info.rc == 0, info.err
    assert "documents: " + str(len(docs) - 3) in info.text and "<|endoftext|>" in info.text
    assert docs[3][:40].split()[0] in info.text

    # same output with another worker count
    r2 = cli("tokenize", src, "-t", "gpt2", "-o", tmp_path / "w1.bin", "--val-docs", 3, "-w", 1, env=env)
    assert r2.rc == 0
    assert np.array_equal(TokenFile(tmp_path / "w1.bin").tokens, tf.tokens)

    again = cli("tokenize", src, "-t", "gpt2", "-o", out, "--val-docs", 3, env=env)
    assert again.rc == 0 and "up to date" in again.err


def test_trained_tokenizer_pipe_and_exports(cli, books, tmp_path):
    tok = tmp_path / "tok.json"
    assert cli("bpe-train", books / "moby_dick.txt", "-V", 1024, "-o", tok, "-q").rc == 0
    text = (books / "pride_and_prejudice.txt").read_bytes()
    out = tmp_path / "p.bin"
    r = cli("tokenize", "-", "-t", tok, "-o", out, "--bos", "<|im_start|>", input=text)
    assert r.rc == 0, r.err
    tf = TokenFile(out, verify=True)
    assert tf.header.dtype == np.uint16 and tf.tokens[0] == 1021 and tf.header.eot_id == 1020

    assert cli("tokenize", out, "--format", "llmc", "-o", tmp_path / "l.bin").rc == 0
    raw = np.fromfile(tmp_path / "l.bin", dtype=np.int32, count=3)
    assert list(raw) == [20240520, 1, len(tf)]
    assert cli("tokenize", out, "--format", "nanogpt", "-o", tmp_path / "n.bin").rc == 0
    assert np.array_equal(np.fromfile(tmp_path / "n.bin", dtype=np.uint16), tf.tokens)
    # straight from text to llm.c layout, with a held-out file in the same layout
    r = cli("tokenize", books / "moby_dick.txt", books / "pride_and_prejudice.txt", "-t", tok,
            "--format", "llmc", "--val-docs", 1, "-o", tmp_path / "m.bin")
    assert r.rc == 0, r.err
    assert np.fromfile(tmp_path / "m.val.bin", dtype=np.int32, count=1)[0] == 20240520

    # the tokenizer changes under the token file: decoding is refused
    assert cli("bpe-train", books / "moby_dick.txt", "-V", 900, "-o", tok, "-q").rc == 0
    r = cli("info", out, "--decode", 10)
    assert r.rc == 3 and "different tokenizer" in r.err


def test_truncated_and_corrupt_token_files(cli, env, docs_parquet, tmp_path):
    src, _ = docs_parquet
    out = tmp_path / "d.bin"
    assert cli("tokenize", src, "-t", "gpt2", "-o", out, env=env).rc == 0
    raw = out.read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-100])
    r = cli("info", tmp_path / "cut.bin")
    assert r.rc == 3 and "truncated" in r.err
    bad = bytearray(raw)
    bad[5000] ^= 0xFF
    (tmp_path / "bad.bin").write_bytes(bytes(bad))
    r = cli("info", tmp_path / "bad.bin")
    assert r.rc == 3 and "checksum" in r.err
    r = cli("tokenize", tmp_path / "cut.bin", "--format", "llmc", "-o", tmp_path / "x.bin")
    assert r.rc == 3 and not (tmp_path / "x.bin").exists()


def test_usage_errors(cli, env, docs_parquet, tmp_path):
    src, _ = docs_parquet
    r = cli("tokenize", src, "-o", tmp_path / "x.bin")
    assert r.rc == 2 and "--tokenizer" in r.err
    r = cli("tokenize", src, "-t", "gpt2", "--bos", "<|im_start|>", "-o", tmp_path / "x.bin", env=env)
    assert r.rc == 3 and "no special token" in r.err
    r = cli("tokenize", src, "-t", "gpt2", "--val-docs", 1, "--val-fraction", 0.1, "-o", tmp_path / "x.bin", env=env)
    assert r.rc == 2
    r = cli("tokenize", src, "-t", "gpt2", "--format", "csv", "-o", tmp_path / "x.bin", env=env)
    assert r.rc == 2
    r = cli("tokenize", src, "-t", "nope.json", "-o", tmp_path / "x.bin")
    assert r.rc == 3 and "no such tokenizer" in r.err
    r = cli("tokenize", src, "-t", "gpt2", "-o", "-", env=env)
    assert r.rc == 2
