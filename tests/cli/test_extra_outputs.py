"""Extra outputs (filter --rejected, dedup --clusters, tokenize's OUTPUT.val.bin) keep the rule of
the main output: a file llmtool did not write is never replaced without --force."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

NOTES = b"my notes, not an llmtool output\n"


@pytest.fixture
def docs(tmp_path):
    words = "the quick brown fox jumps over the lazy dog and runs far away".split()
    texts = [" ".join(words[i % 7:] + words[: i % 7]) * 20 + f" number {i}." for i in range(40)]
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts, "id": [str(i) for i in range(40)]}), path)
    return path


def _refused(r, notes):
    assert r.rc == 2, r.err
    assert "refusing to replace" in r.err and "Traceback" not in r.err
    assert r.err.strip().count("\n") == 0
    assert notes.read_bytes() == NOTES


def test_filter_rejected(cli, docs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOTES)
    args = ["filter", docs, "-o", tmp_path / "kept.parquet", "--rejected", notes, "-w", "1"]
    _refused(cli(*args), notes)
    assert not (tmp_path / "kept.parquet").exists()
    assert cli(*args, "--force").rc == 0 and notes.read_bytes() != NOTES


def test_dedup_clusters(cli, docs, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(NOTES)
    _refused(cli("dedup", docs, "-o", tmp_path / "d.parquet", "--clusters", notes, "-w", "1"), notes)


def test_tokenize_held_out_file(cli, docs, tmp_path):
    tok = tmp_path / "tok.json"
    assert cli("bpe-train", docs, "-V", "300", "-o", tok, "-q").rc == 0
    notes = tmp_path / "data.val.bin"
    notes.write_bytes(NOTES)
    args = ["tokenize", docs, "-t", tok, "-o", tmp_path / "data.bin", "--val-docs", "2"]
    _refused(cli(*args), notes)
    assert cli(*args, "--force").rc == 0 and notes.read_bytes() != NOTES
    # its own earlier held-out file is replaced without --force when parameters change
    r = cli("tokenize", docs, "-t", tok, "-o", tmp_path / "data.bin", "--val-docs", "3")
    assert r.rc == 0, r.err
