"""`llmtool bpe-train` end to end on the public-domain books."""

from __future__ import annotations

import json

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from llmtool.tokenizer.file import load_tokenizer


def test_train_export_info_and_up_to_date(cli, books, tmp_path):
    src = books / "moby_dick.txt"
    out = tmp_path / "tok.json"
    r = cli("bpe-train", src, "-V", 2048, "-o", out, "--export", "tiktoken", "--eval",
            books / "pride_and_prejudice.txt", "--json")
    assert r.rc == 0, r.err
    summary = json.loads(r.out)
    assert summary["vocab"] == 2048 and summary["merges"] == 2048 - 256 - 4
    assert 2.0 < summary["heldout_bytes_per_token"] < summary["bytes_per_token"] < 5.0
    tok = load_tokenizer(out)
    assert tok.name == "tok" and tok.vocab_size == 2048 and tok.eot_id == 2044
    assert load_tiktoken_bpe(str(tmp_path / "tok.tiktoken")) == tok.mergeable_ranks
    text = src.read_text()
    enc = tiktoken.Encoding("t", pat_str=tok.pattern, mergeable_ranks=tok.mergeable_ranks,
                            special_tokens=tok.special_tokens)
    assert enc.decode(enc.encode_ordinary(text)) == text

    info = cli("info", out)
    assert info.rc == 0, info.err
    for needle in ("vocab_size: 2048", "<|im_sep|>: 2046", "longest_tokens:", "held-out bytes/token", "bpe-train v1"):
        assert needle in info.text, needle

    again = cli("bpe-train", src, "-V", 2048, "-o", out, "--export", "tiktoken", "--eval",
                books / "pride_and_prejudice.txt")
    assert again.rc == 0 and "up to date" in again.err


def test_workers_do_not_change_the_result(cli, books, tmp_path):
    src = books / "pride_and_prejudice.txt"
    for w in (1, 2):
        assert cli("bpe-train", src, "-V", 1000, "-w", w, "-o", tmp_path / f"w{w}.json", "-q").rc == 0
    assert load_tokenizer(tmp_path / "w1.json").fingerprint == load_tokenizer(tmp_path / "w2.json").fingerprint


def test_pipe_in_caps_and_specials(cli, books, tmp_path):
    text = (books / "moby_dick.txt").read_bytes()
    r = cli("bpe-train", "-", "-V", 600, "--max-chars", 100_000, "--special", "<|bos|>", "--pattern", "gpt2",
            "-o", tmp_path / "t.json", "--json", input=text)
    assert r.rc == 0, r.err
    tok = load_tokenizer(tmp_path / "t.json")
    assert tok.special_tokens == {"<|bos|>": 599} and json.loads(r.out)["chars"] == 100_000
    assert tok.extra["pattern_name"] == "gpt2"


def test_errors(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"text": ""}\n')
    r = cli("bpe-train", empty, "-o", tmp_path / "x.json")
    assert r.rc == 3 and "empty corpus" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "x.json").exists()

    small = tmp_path / "small.txt"
    small.write_text("the cat sat on the mat " * 20)
    r = cli("bpe-train", small, "-V", 200, "-o", tmp_path / "x.json")
    assert r.rc == 2 and "too small" in r.err
    r = cli("bpe-train", small, "--pattern", "([a-", "-o", tmp_path / "x.json")
    assert r.rc == 2 and "invalid regex" in r.err
    r = cli("bpe-train", tmp_path / "missing.txt", "-o", tmp_path / "x.json")
    assert r.rc == 3 and "no such file" in r.err

    r = cli("bpe-train", small, "-V", 5000, "-o", tmp_path / "x.json")
    assert r.rc == 0 and "stopped" not in r.err and "holds only" in r.err
    assert load_tokenizer(tmp_path / "x.json").vocab_size < 300
