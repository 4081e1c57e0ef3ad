"""`llmtool sample`: text prompts streamed to stdout, tables in and out, determinism, errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def base(tmp_path_factory, books):
    """A tiny model trained for a few steps on Moby-Dick with a 512-token BPE."""
    d = tmp_path_factory.mktemp("sample")
    book = books / "moby_dick.txt"
    assert run_cli("bpe-train", book, "-V", "512", "-o", d / "tok.json", "-q").rc == 0
    assert run_cli("tokenize", book, "-t", d / "tok.json", "-o", d / "train.bin", "-q").rc == 0
    r = run_cli("pretrain", d / "train.bin", "--depth", "1", "--width", "64", "--context", "64", "--micro-batch", "8",
                "--max-steps", "15", "-o", d / "base", "-q")
    assert r.rc == 0, r.err
    return d / "base"


def test_prompts_stream_to_stdout_deterministically(base, cli):
    r = cli("sample", base, "ROMEO:", "Zoë — ✓ naïve", "--max-tokens", "20", "--seed", "5")
    assert r.rc == 0, r.err
    parts = r.text.split("---\n")
    assert len(parts) == 2 and parts[0].startswith("ROMEO:") and parts[1].startswith("Zoë — ✓ naïve")
    assert len(parts[0]) > len("ROMEO:") + 5  # something was generated
    r.out.decode("utf-8")  # valid UTF-8 throughout (strict)
    again = cli("sample", base, "ROMEO:", "Zoë — ✓ naïve", "--max-tokens", "20", "--seed", "5")
    assert again.out == r.out
    other = cli("sample", base, "ROMEO:", "Zoë — ✓ naïve", "--max-tokens", "20", "--seed", "6")
    assert other.out != r.out
    g1 = cli("sample", base, "KING:", "-t", "0", "-n", "15", "--seed", "1")
    g2 = cli("sample", base, "KING:", "-t", "0", "-n", "15", "--seed", "2")
    assert g1.rc == 0 and g1.out == g2.out  # greedy ignores the seed


def test_table_in_table_out(base, tmp_path, cli):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(["To be", "Good"])))
    out = tmp_path / "c.parquet"
    r = cli("sample", base, "--input", prompts, "-o", out, "--num-samples", "3", "-n", "12", "--top-k", "20",
            "--top-p", "0.9")
    assert r.rc == 0, r.err
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 6 and {r["sample"] for r in rows} == {0, 1, 2}
    assert all(r["tokens"] <= 12 and r["finish"] in ("eot", "length") for r in rows)
    assert [r["id"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert json.loads(pq.read_schema(out).metadata[b"llmtool.provenance"])["stage"] == "sample"
    lines = tmp_path / "p.txt"
    lines.write_text("To be\n\nGood\n")
    r = cli("sample", base, "-f", lines, "-n", "5")
    assert r.rc == 0 and r.text.count("---\n") == 1


def test_errors(base, tmp_path, cli):
    r = cli("sample", tmp_path, "hi")
    assert r.rc == 3 and "not a checkpoint" in r.err
    r = cli("sample", base, "hi", "-o", tmp_path / "x.parquet")
    assert r.rc == 2 and "--input" in r.err
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "x"}\n')
    r = cli("sample", base, "--input", bad, "-o", tmp_path / "y.parquet")
    assert r.rc == 3 and "column" in r.err
    r = cli("sample", base, "hi", "--device", "cuda")
    if r.rc != 0:
        assert r.rc == 4 and "CUDA" in r.err
