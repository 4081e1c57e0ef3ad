"""Readers and outputs that hold the contract (issue 10): input identity, overwrite refusal,
output paths, concatenated streams, malformed tables / JSONL / token files, info."""

import io
import json
import os
import struct
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.errors import BadInputError, UsageError
from llmtool.io import provenance
from llmtool.io.provenance import input_record, make, read_provenance
from llmtool.io.run import Opts, StageRun, check_writable, ensure_folder
from llmtool.io.tables import TableWriter, open_table, parse_json_line
from llmtool.io.tokfile import TokenFile, TokenFileWriter


def _docs(n=10, start=0):
    return pa.table({"id": [str(i) for i in range(start, start + n)],
                     "text": [f"document {i} " * 5 for i in range(start, start + n)]})


def _artifact(path, table=None, stage="fetch", created="2020-01-01T00:00:00Z"):
    """An llmtool output: the table with its provenance in the schema metadata."""
    prov = {**make(stage, 1, {}, []), "created": created}
    with TableWriter(str(path), prov) as w:
        w.write(table if table is not None else _docs())
    return prov


# ---------------------------------------------------------------- input identity


def test_table_edited_with_pyarrow_is_a_new_input(tmp_path):
    src = tmp_path / "in.parquet"
    _artifact(src)
    before = input_record(str(src))
    # pyarrow keeps the schema metadata (our provenance) through an edit
    pq.write_table(pq.read_table(src).slice(0, 3), src)
    assert read_provenance(src)["key"] == before["provenance"]["key"]
    assert input_record(str(src))["key"] != before["key"]


def test_rebuilt_identical_input_keeps_its_key(tmp_path):
    """Same rows, same provenance key, another creation time (a rerun, or a piped stage
    rerun): downstream stays up to date."""
    src = tmp_path / "in.parquet"
    _artifact(src, created="2020-01-01T00:00:00Z")
    first = input_record(str(src))["key"]
    _artifact(src, created="2021-06-30T12:34:56Z")
    assert input_record(str(src))["key"] == first


def test_shards_split_with_pyarrow_have_their_own_keys(tmp_path):
    whole = tmp_path / "all.parquet"
    _artifact(whole)
    t = pq.read_table(whole)
    pq.write_table(t.slice(0, 5), tmp_path / "a.parquet")
    pq.write_table(t.slice(5), tmp_path / "b.parquet")
    keys = {input_record(str(tmp_path / n))["key"] for n in ("a.parquet", "b.parquet", "all.parquet")}
    assert len(keys) == 3


def test_stream_file_and_token_file_identity_follow_content(tmp_path):
    # Arrow stream: the same rows written again keep the key; another row changes it
    def stream(path, table, created):
        prov = {**make("fetch", 1, {}, []), "created": created}
        with open(path, "wb") as f, pa.ipc.new_stream(f, table.schema.with_metadata(
                {provenance.PARQUET_KEY: json.dumps(prov).encode()})) as w:
            w.write_table(table)
    s = tmp_path / "s.arrow"
    stream(s, _docs(), "2020-01-01T00:00:00Z")
    k = input_record(str(s))["key"]
    stream(s, _docs(), "2022-01-01T00:00:00Z")
    assert input_record(str(s))["key"] == k
    stream(s, _docs(11), "2022-01-01T00:00:00Z")
    assert input_record(str(s))["key"] != k

    # token file: its tokens are its content
    def tokens(path, arr, created):
        prov = {**make("tokenize", 1, {}, []), "created": created}
        with TokenFileWriter(path, vocab_size=300, eot_id=256, meta={"provenance": prov}) as w:
            w.add_document(np.array(arr))
    t = tmp_path / "t.bin"
    tokens(t, [1, 2, 3], "2020-01-01T00:00:00Z")
    k = input_record(str(t))["key"]
    tokens(t, [1, 2, 3], "2023-01-01T00:00:00Z")
    assert input_record(str(t))["key"] == k
    tokens(t, [1, 2, 4], "2023-01-01T00:00:00Z")
    assert input_record(str(t))["key"] != k


def test_unchanged_input_is_not_rehashed(tmp_path, monkeypatch):
    src = tmp_path / "in.parquet"
    _artifact(src)
    rec = input_record(str(src))

    def boom(path):
        raise AssertionError("rehashed an input whose size and mtime did not change")

    monkeypatch.setattr(provenance, "content_digest", boom)
    assert input_record(str(src), previous=rec)["key"] == rec["key"]
    os.utime(src, ns=(1, 1))  # touched: hash again
    with pytest.raises(AssertionError):
        input_record(str(src), previous=rec)


def _run(tmp_path, inputs, output, params=None, force=False, stage="filter"):
    return StageRun(stage, 1, params or {"p": 1}, [str(i) for i in inputs], str(output),
                    Opts(force=force, quiet=True))


def test_up_to_date_is_not_fooled_by_an_edited_input(tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    _artifact(src)
    run = _run(tmp_path, [src], out)
    with TableWriter(str(out), run.provenance) as w:
        w.write(_docs())
    assert _run(tmp_path, [src], out).up_to_date()
    pq.write_table(pq.read_table(src).slice(0, 3), src)
    assert not _run(tmp_path, [src], out).up_to_date()


# ---------------------------------------------------------------- overwrite refusal


def test_refuses_to_replace_a_file_llmtool_did_not_write(tmp_path):
    src, notes = tmp_path / "in.parquet", tmp_path / "notes.txt"
    _artifact(src)
    notes.write_text("my notes")
    with pytest.raises(UsageError, match="not a file llmtool wrote.*--force"):
        _run(tmp_path, [src], notes)
    assert notes.read_text() == "my notes"
    assert _run(tmp_path, [src], notes, force=True).output == str(notes)  # --force: allowed


def test_refuses_another_stages_output_but_replaces_its_own(tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    _artifact(src)
    with pytest.raises(UsageError, match="output of llmtool fetch"):
        _run(tmp_path, [src], src)  # filter over its own (fetch-made) input
    run = _run(tmp_path, [src], out, params={"p": 1})
    with TableWriter(str(out), run.provenance) as w:
        w.write(_docs())
    # our own earlier output, made with other parameters: replaced without --force
    again = _run(tmp_path, [src], out, params={"p": 2})
    assert not again.up_to_date()


def test_llmc_file_counts_as_a_tokenize_output(tmp_path):
    src = tmp_path / "in.parquet"
    _artifact(src)
    llmc = tmp_path / "l.bin"
    header = np.zeros(256, dtype="<i4")
    header[:3] = (20240520, 1, 0)
    llmc.write_bytes(header.tobytes())
    _run(tmp_path, [src], llmc, stage="tokenize")  # no error
    with pytest.raises(UsageError):
        _run(tmp_path, [src], llmc, stage="filter")


def test_unwritable_outputs_are_usage_errors(tmp_path):
    src = tmp_path / "in.parquet"
    _artifact(src)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        _run(tmp_path, [src], tmp_path / "afile" / "out.parquet")
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        _run(tmp_path, [src], tmp_path / "adir")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        ensure_folder(str(tmp_path / "afile"), "--out-dir")
    ensure_folder(str(tmp_path / "new" / "deeper"))
    assert (tmp_path / "new" / "deeper").is_dir()
    if os.path.isdir("/proc/self"):  # root may write almost anywhere, but not a new file in /proc
        with pytest.raises(UsageError, match="cannot write"):
            check_writable("/proc/x.parquet")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # not as root
            with pytest.raises(UsageError, match="cannot write"):
                check_writable(str(ro / "x.parquet"))
    finally:
        ro.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "in.parquet", "new", "ro"]


# ---------------------------------------------------------------- concatenated streams


def _stream_bytes(table, stage="fetch") -> bytes:
    """What `llmtool STAGE ... -o -` writes: a stream with our end marker."""
    buf = io.BytesIO()

    class Out:
        buffer = buf

        def isatty(self):
            return False

    old = sys.stdout
    sys.stdout = Out()
    try:
        with TableWriter("-", make(stage, 1, {}, [])) as w:
            w.write(table)
    finally:
        sys.stdout = old
    return buf.getvalue()


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr("llmtool.io.tables._stdin_stream", lambda: io.BufferedReader(io.BytesIO(data)))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)


def test_concatenated_streams_are_read_whole(monkeypatch, tmp_path):
    a, b = _stream_bytes(_docs(16)), _stream_bytes(_docs(24, start=16))
    _stdin(monkeypatch, a + b)
    t = open_table("-")
    assert t.read_all().column("id").to_pylist() == [str(i) for i in range(40)]
    # the same from a file
    (tmp_path / "ab.arrow").write_bytes(a + b + a)
    assert open_table(str(tmp_path / "ab.arrow")).read_all().num_rows == 56


def test_concatenated_streams_with_other_columns_are_refused(monkeypatch):
    other = _docs(3).append_column("extra", pa.array([1, 2, 3]))
    _stdin(monkeypatch, _stream_bytes(_docs(16)) + _stream_bytes(other))
    with pytest.raises(BadInputError, match="stream 2 has other columns"):
        open_table("-").read_all()


def test_garbage_after_an_end_marker_is_refused(monkeypatch):
    a = _stream_bytes(_docs(4))
    _stdin(monkeypatch, a + b"trailing junk")
    with pytest.raises(BadInputError, match="after stream 1's end marker"):
        open_table("-").read_all()
    _stdin(monkeypatch, a + a[: len(a) // 2])  # a second stream cut short
    with pytest.raises(BadInputError):
        open_table("-").read_all()


# ---------------------------------------------------------------- malformed tables and JSONL


def _flip_utf8(path, needle: bytes):
    raw = bytearray(path.read_bytes())
    i = raw.find(needle)
    assert i >= 0
    raw[i] = 0xFF  # never valid in UTF-8
    path.write_bytes(bytes(raw))


def test_invalid_utf8_in_parquet_and_streams_is_bad_input(tmp_path):
    p = tmp_path / "u.parquet"
    pq.write_table(_docs(), p, compression="none", use_dictionary=False)
    _flip_utf8(p, b"document 3")
    with pytest.raises(BadInputError, match="corrupt data in row group 0.*UTF8"):
        open_table(str(p)).read_all()
    s = tmp_path / "u.arrow"
    s.write_bytes(_stream_bytes(_docs()))
    _flip_utf8(s, b"document 3")
    with pytest.raises(BadInputError, match="corrupt data.*UTF8"):
        open_table(str(s)).read_all()


def test_corrupt_provenance_metadata_is_bad_input(tmp_path):
    p = tmp_path / "m.parquet"
    for bad in (b"{not json", b"\xff\xfe", b"[1, 2]"):
        pq.write_table(_docs().replace_schema_metadata({provenance.PARQUET_KEY: bad}), p)
        with pytest.raises(BadInputError, match="corrupt llmtool provenance"):
            open_table(str(p))
        assert read_provenance(p) is None


def test_json_lines_deep_huge_and_odd(tmp_path):
    with pytest.raises(BadInputError, match="x.jsonl:7: JSON nested too deeply"):
        parse_json_line('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "x.jsonl:7")
    with pytest.raises(BadInputError, match="expected a JSON object"):
        parse_json_line("[1]", "x")
    j = tmp_path / "a.jsonl"
    j.write_text(f'{{"text": "ok", "n": 1}}\n{{"text": "big", "n": {2**64}}}\n')
    with pytest.raises(BadInputError, match=r"a.jsonl:2: field 'n': integer outside the 64-bit range"):
        open_table(str(j))
    j.write_text('{"text": "a", "x": ' + "[" * 900 + "1" + "]" * 900 + "}\n")
    with pytest.raises(BadInputError, match="nested more than"):
        open_table(str(j))
    j.write_text('{"text": 5}\n')
    with pytest.raises(BadInputError, match="column 'text' has type int64"):
        open_table(str(j))
    assert open_table(str(j), require=()).read_all().num_rows == 1  # fetch maps columns itself


def test_multiline_pyarrow_errors_become_one_line(tmp_path):
    p = tmp_path / "cut.parquet"
    pq.write_table(_docs(), p)
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(BadInputError) as e:
        open_table(str(p))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- token files


def _tokfile(path):
    with TokenFileWriter(path, vocab_size=300, eot_id=256, fingerprint="ab" * 16, meta={"k": 1}) as w:
        w.add_document(np.array([1, 2, 3]))


def test_token_file_with_non_ascii_fingerprint_or_list_metadata(tmp_path):
    p = tmp_path / "t.bin"
    _tokfile(p)
    raw = bytearray(p.read_bytes())
    raw[64] = 0xE9  # inside the 32-byte fingerprint
    (tmp_path / "fp.bin").write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="fingerprint is not ASCII"):
        TokenFile(tmp_path / "fp.bin")
    raw = bytearray(p.read_bytes())
    meta = b"[1, 2]"
    raw[104:112] = struct.pack("<Q", len(meta))
    raw[112:112 + len(meta)] = meta
    (tmp_path / "list.bin").write_bytes(bytes(raw))
    with pytest.raises(BadInputError, match="metadata is not a JSON object"):
        TokenFile(tmp_path / "list.bin")
