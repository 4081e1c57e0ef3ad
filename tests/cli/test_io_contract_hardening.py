"""The CLI on malformed inputs and awkward outputs (issue 10): one line on stderr, the right
exit code, nothing written; and `llmtool info` on every kind of file.

Most runs call `llmtool.cli.main` in this process (a subprocess costs ~1 s of imports on
two cores); a few go through the `cli` fixture to see the real stderr of a real process.
"""

import gzip
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.io.provenance import make
from llmtool.io.tables import TableWriter
from llmtool.io.tokfile import TokenFileWriter


def main(capsys, *args):
    """(exit code, stdout, stderr) of `llmtool ARGS`, run in this process."""
    from llmtool.cli import main as llmtool_main

    with pytest.raises(SystemExit) as e:
        llmtool_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _one_error_line(err: str, stage: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"llmtool {stage}: error: ") and "Traceback" not in err


def _docs(n=10):
    # words differ by letters, not digits: dedup's normalisation folds digits together
    texts = [f"hello world document {i} " + " ".join(chr(97 + (i + j) % 26) * 3 for j in range(0, 26, 3))
             for i in range(n)]
    return pa.table({"id": [str(i) for i in range(n)], "text": texts})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Malformed inputs, built here: name -> path."""
    d = tmp_path_factory.mktemp("bad")
    out = {}
    # a flipped byte makes invalid UTF-8 in the text column (uncompressed, so the text is findable)
    p = d / "utf8.parquet"
    pq.write_table(_docs(), p, compression="none", use_dictionary=False)
    raw = bytearray(p.read_bytes())
    raw[raw.find(b"hello world document 3")] = 0xFF
    p.write_bytes(bytes(raw))
    out["utf8.parquet"] = p
    s = d / "utf8.arrow"
    sink = pa.BufferOutputStream()
    prov = make("fetch", 1, {}, [])
    schema = _docs().schema.with_metadata({b"llmtool.provenance": json.dumps(prov).encode()})
    with pa.ipc.new_stream(sink, schema) as w:
        w.write_table(_docs().cast(schema))
        w.write_batch(pa.RecordBatch.from_pylist([], schema=_docs().schema), custom_metadata={b"llmtool.end": b"10"})
    raw = bytearray(sink.getvalue().to_pybytes())
    raw[raw.find(b"hello world document 3")] = 0xFF
    s.write_bytes(bytes(raw))
    out["utf8.arrow"] = s
    deep = 5000
    (d / "deep.jsonl").write_text('{"text": "a", "x": ' + "[" * deep + "]" * deep + "}\n")
    out["deep.jsonl"] = d / "deep.jsonl"
    (d / "nested.jsonl").write_text('{"text": "a", "x": ' + "[" * 900 + "1" + "]" * 900 + "}\n")
    out["nested.jsonl"] = d / "nested.jsonl"
    (d / "bigint.jsonl").write_text(f'{{"text": "a b c", "id": {2**64}}}\n')
    out["bigint.jsonl"] = d / "bigint.jsonl"
    (d / "inttext.jsonl").write_text('{"text": 5}\n{"text": 6}\n')
    out["inttext.jsonl"] = d / "inttext.jsonl"
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from llmtool.tokenizer import bpe

    t = bpe.train_tokenizer(["a small corpus for a small tokenizer " * 20], 300, workers=1, name="tiny")
    path = tmp_path_factory.mktemp("tok") / "tiny.json"
    t.save(path)
    return path


STAGES = {
    "fetch": [],
    "filter": ["--skip", "url,lid"],
    "dedup": [],
    "tokenize": ["-t", "TOK"],
    "bpe-train": ["-V", "300"],
}


@pytest.mark.parametrize("name", ["utf8.parquet", "utf8.arrow", "deep.jsonl", "nested.jsonl", "bigint.jsonl"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_malformed_input_is_one_line_exit_3(capsys, inputs, tok, tmp_path, stage, name):
    args = [a if a != "TOK" else tok for a in STAGES[stage]]
    out = tmp_path / "out.x"
    rc, _, err = main(capsys, stage, inputs[name], *args, "-w", 1, "-o", out)
    assert rc == 3, err
    assert _one_error_line(err, stage), err
    assert not out.exists()


@pytest.mark.parametrize("stage", ["tokenize", "bpe-train"])
def test_text_that_is_a_number_is_bad_input(capsys, inputs, tok, tmp_path, stage):
    args = [a if a != "TOK" else tok for a in STAGES[stage]]
    rc, _, err = main(capsys, stage, inputs["inttext.jsonl"], *args, "-w", 1, "-o", tmp_path / "o")
    assert rc == 3 and _one_error_line(err, stage) and "column 'text' has type int64" in err


def test_a_real_process_says_one_line(cli, inputs, tmp_path):
    r = cli("dedup", inputs["utf8.parquet"], "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and _one_error_line(r.err, "dedup") and "UTF8" in r.err


# ---------------------------------------------------------------- outputs


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "docs.parquet"
    pq.write_table(_docs(), p)
    return p


def test_fetch_does_not_eat_a_foreign_file_without_force(cli, table, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    r = cli("fetch", table, "-o", notes)
    assert r.rc == 2 and _one_error_line(r.err, "fetch") and "--force" in r.err
    assert notes.read_text() == "my notes\n"
    r = cli("fetch", table, "-o", notes, "--force")
    assert r.rc == 0 and notes.read_bytes()[:4] == b"PAR1"


def test_own_output_is_replaced_when_parameters_change(capsys, table, tmp_path):
    out = tmp_path / "f.parquet"
    assert main(capsys, "fetch", table, "-o", out, "-q")[0] == 0
    assert main(capsys, "fetch", table, "-o", out, "--limit", 3, "-q")[0] == 0
    assert pq.read_metadata(out).num_rows == 3
    # ... but another stage's output is not
    rc, _, err = main(capsys, "dedup", table, "-o", out)
    assert rc == 2 and "an output of llmtool fetch" in err


def test_edited_input_is_not_up_to_date(capsys, table, tmp_path):
    """pyarrow keeps our provenance through an edit; the next stage must still see it."""
    f, d = tmp_path / "f.parquet", tmp_path / "d.parquet"
    assert main(capsys, "fetch", table, "-o", f, "-q")[0] == 0
    assert main(capsys, "dedup", f, "--mode", "exact", "-o", d, "-q")[0] == 0
    assert pq.read_metadata(d).num_rows == 10
    pq.write_table(pq.read_table(f).slice(0, 3), f)
    rc, _, err = main(capsys, "dedup", f, "--mode", "exact", "-o", d)
    assert rc == 0 and "up to date" not in err
    assert pq.read_metadata(d).num_rows == 3


def test_unwritable_outputs_are_one_line(capsys, table, tmp_path):
    rc, _, err = main(capsys, "fetch", table, "-o", table.parent / "docs.parquet" / "x.parquet")
    assert rc == 2 and _one_error_line(err, "fetch") and "not a folder" in err
    rc, _, err = main(capsys, "fetch", table, "-o", "/proc/x.parquet")
    assert rc == 2 and _one_error_line(err, "fetch")
    rc, _, err = main(capsys, "dedup", table, "--out-dir", table)
    assert rc == 2 and _one_error_line(err, "dedup") and "--out-dir" in err
    rc, _, err = main(capsys, "fetch", table, "-o", tmp_path)
    assert rc == 2 and "is a folder" in err


# ---------------------------------------------------------------- streams and info


def _stream(rows: range) -> bytes:
    import io
    import sys

    buf = io.BytesIO()

    class Out:
        buffer = buf

        def isatty(self):
            return False

    old, sys.stdout = sys.stdout, Out()
    try:
        with TableWriter("-", make("fetch", 1, {}, [])) as w:
            w.write(pa.table({"text": [f"doc {i}" for i in rows]}))
    finally:
        sys.stdout = old
    return buf.getvalue()


def test_cat_of_two_streams_counts_every_row(cli):
    r = cli("info", "-", input=_stream(range(16)) + _stream(range(16, 40)))
    assert r.rc == 0 and "rows: 40" in r.text


def test_info_knows_archives_rank_files_and_exported_token_files(capsys, tmp_path):
    from llmtool.tokenizer.export import export_tokens

    warc = tmp_path / "c.warc.gz"
    warc.write_bytes(gzip.compress(b"WARC/1.0\r\nWARC-Type: warcinfo\r\nContent-Length: 0\r\n\r\n\r\n\r\n"))
    rank = tmp_path / "r.tiktoken"
    rank.write_text("IQ== 0\nIg== 1\n")
    with TokenFileWriter(tmp_path / "t.bin", vocab_size=300, eot_id=256) as w:
        w.add_document(np.array([1, 2, 3]))
    export_tokens(str(tmp_path / "t.bin"), str(tmp_path / "l.bin"), "llmc")
    export_tokens(str(tmp_path / "t.bin"), str(tmp_path / "n.bin"), "nanogpt")
    expect = {warc: "web archive (WARC)", rank: "tiktoken rank file", tmp_path / "l.bin": "llm.c layout",
              tmp_path / "n.bin": "nanoGPT layout"}
    for path, kind in expect.items():
        rc, out, err = main(capsys, "info", path, "--json")
        assert rc == 0, err
        info = json.loads(out)
        assert kind in info["kind"] and "rows" not in info
    assert json.loads(main(capsys, "info", tmp_path / "l.bin", "--json")[1])["tokens"] == 3
    assert json.loads(main(capsys, "info", rank, "--json")[1])["ranks"] == 2


def test_info_json_numbers_and_negative_decode(capsys, tmp_path):
    with TokenFileWriter(tmp_path / "t.bin", vocab_size=300, eot_id=256, fingerprint="ab" * 16) as w:
        w.add_document(np.array([1, 2, 3]))
    rc, out, _ = main(capsys, "info", tmp_path / "t.bin", "--json")
    info = json.loads(out)
    assert rc == 0 and info["tokens"] == 3 and info["bos_id"] is None and info["tokenizer"]["fingerprint"] == "ab" * 16
    rc, _, err = main(capsys, "info", tmp_path / "t.bin", "--decode", "-3")
    assert rc == 2 and _one_error_line(err, "info")


def test_info_on_damaged_checkpoints(capsys, tmp_path):
    from llmtool.model import checkpoint
    from llmtool.model.gpt import GPT, GPTConfig

    ck = tmp_path / "ck"
    m = GPT(GPTConfig(vocab_size=97, n_layer=1, n_embd=16, n_head=2, n_kv_head=2, context=8))
    checkpoint.save(ck, m, None, {"step": 1}, [{"step": 1, "loss": 2.5, "tokens": 10}],
                    {"stage": "pretrain", "key": "k", "complete": True})
    info = json.loads(main(capsys, "info", ck, "--json")[1])
    assert info["finished"] is True and info["trained"] == {"step": 1, "tokens": 10, "loss": 2.5}
    assert isinstance(info["parameters"], int)

    cut = tmp_path / "cut"
    shutil.copytree(ck, cut)
    w = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(w[: len(w) // 2])
    info = json.loads(main(capsys, "info", cut, "--json")[1])
    assert info["finished"] is False and "truncated" in info["problem"]

    odd = tmp_path / "odd"
    shutil.copytree(ck, odd)
    (odd / "metrics.jsonl").write_text('{"step": "x", "loss": "abc"}\n[1, 2]\n{"loss": 3.5, "tokens": "many"}\n')
    for prov in ("[1, 2]", '{"stage": 5, "params": "x", "inputs": 7}', '{"inputs": [3, {"provenance": 4}]}'):
        (odd / "provenance.json").write_text(prov)
        rc, out, err = main(capsys, "info", odd)
        assert rc == 0, err
        assert "loss: 3.5" in out
