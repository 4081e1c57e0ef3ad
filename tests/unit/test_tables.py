"""Tables: sniffing readers, Parquet/stream writers, end markers, atomic writes."""

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.errors import BadInputError
from llmtool.io.provenance import make, read_provenance
from llmtool.io.tables import TableWriter, expand_inputs, open_table


def _table(n=2500):
    return pa.table({"text": [f"doc {i}" for i in range(n)], "n": list(range(n))})


def test_parquet_round_trip_keeps_rows_order_and_provenance(tmp_path):
    prov = make("test", 1, {"a": 1}, [])
    out = tmp_path / "t.parquet"
    with TableWriter(str(out), prov) as w:
        for b in _table().to_batches(max_chunksize=700):
            w.write(b)
    t = open_table(str(out))
    assert t.read_all().column("n").to_pylist() == list(range(2500))
    assert t.provenance["key"] == prov["key"]
    assert read_provenance(out)["stage"] == "test"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # ordinary permissions, not mkstemp's


def test_writer_error_leaves_no_file_and_keeps_old_output(tmp_path):
    out = tmp_path / "t.parquet"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with TableWriter(str(out), None) as w:
            w.write(_table())
            raise RuntimeError("boom")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_jsonl_gz_and_text_are_sniffed(tmp_path):
    j = tmp_path / "a.jsonl.gz"
    j.write_bytes(gzip.compress(b'{"text": "x", "id": 1}\n{"text": "y", "id": 2}\n'))
    assert open_table(str(j)).read_all().column("text").to_pylist() == ["x", "y"]
    t = tmp_path / "b.txt"
    t.write_text("just some text\nover lines")
    assert open_table(str(t)).read_all().column("text").to_pylist() == ["just some text\nover lines"]


def test_missing_column_and_bad_json_are_bad_input(tmp_path):
    j = tmp_path / "a.jsonl"
    j.write_text('{"body": "x"}\n')
    with pytest.raises(BadInputError, match="missing column"):
        open_table(str(j))
    j.write_text('{"text": "x"}\n{"text": \n')
    with pytest.raises(BadInputError, match=":2: invalid JSON"):
        open_table(str(j))


def test_binary_and_cut_gzip_inputs_are_bad_input(tmp_path):
    b = tmp_path / "x.bin"
    b.write_bytes(b"\x01\x00\x02" * 100)
    with pytest.raises(BadInputError, match="binary data of unknown format"):
        open_table(str(b))
    g = tmp_path / "x.jsonl.gz"
    whole = gzip.compress("".join(f'{{"text": "doc {i * 7919 % 10007}"}}\n' for i in range(5000)).encode())
    g.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt gzip"):
        open_table(str(g))


def test_truncated_parquet_is_bad_input(tmp_path):
    out = tmp_path / "t.parquet"
    pq.write_table(_table(), out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        open_table(str(out))


WRITE_STREAM = """
import sys, pyarrow as pa
from llmtool.io.tables import TableWriter
with TableWriter("-", None) as w:
    for i in range(3):
        w.write(pa.table({"text": [f"d{i}-{j}" for j in range(1500)]}))
    if len(sys.argv) > 1:
        raise SystemExit(1)
"""


def _stream(fail: bool) -> bytes:
    args = [sys.executable, "-c", WRITE_STREAM] + (["fail"] if fail else [])
    return subprocess.run(args, capture_output=True).stdout


def test_stream_round_trip_through_stdin(monkeypatch):
    import io

    data = _stream(fail=False)
    monkeypatch.setattr("llmtool.io.tables._stdin_stream", lambda: io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    t = open_table("-")
    assert t.read_all().num_rows == 4500


def test_stream_without_end_marker_is_refused(monkeypatch):
    import io

    data = _stream(fail=True)
    assert data  # some batches made it out before the failure
    monkeypatch.setattr("llmtool.io.tables._stdin_stream", lambda: io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(BadInputError, match="end marker"):
        open_table("-").read_all()
    # a stream cut in the middle of a batch is refused too
    cut = _stream(fail=False)[:-300]
    monkeypatch.setattr("llmtool.io.tables._stdin_stream", lambda: io.BufferedReader(io.BytesIO(cut)))
    with pytest.raises(BadInputError):
        open_table("-").read_all()


def test_expand_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("b", "a"):
        pq.write_table(_table(3), tmp_path / "d" / f"{n}.parquet")
    assert [p.rsplit("/", 1)[1] for p in expand_inputs([str(tmp_path / "d")])] == ["a.parquet", "b.parquet"]
    assert len(expand_inputs([str(tmp_path / "d" / "*.parquet")])) == 2
    with pytest.raises(BadInputError, match="no such file"):
        expand_inputs([str(tmp_path / "nope.parquet")])


def test_json_provenance_of_foreign_file_is_none(tmp_path):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"a": 1}))
    assert read_provenance(f) is None


def test_text_column_is_written_without_a_dictionary(tmp_path):
    """Every document differs, so only the short repeated columns get a dictionary."""
    path = tmp_path / "d.parquet"
    with TableWriter(str(path)) as w:
        w.write(pa.table({"id": [str(i) for i in range(50)], "dump": ["CC-MAIN-2024-22"] * 50,
                          "text": [f"document number {i} " * 20 for i in range(50)]}))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["dump"] and "RLE_DICTIONARY" not in encodings["text"]
    assert pq.read_table(path).column("text").to_pylist()[7] == "document number 7 " * 20


def test_arrow_uses_jemalloc_where_the_wheel_has_it():
    import os

    code = ("import pyarrow as pa, llmtool.io.tables\n"
            "try:\n    pa.jemalloc_memory_pool(); has = True\nexcept NotImplementedError:\n    has = False\n"
            "print(pa.default_memory_pool().backend_name if has else 'jemalloc')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"})
    assert out.stdout.strip() == "jemalloc"
