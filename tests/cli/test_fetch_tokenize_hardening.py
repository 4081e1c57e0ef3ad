"""Issue 10 end to end: exit codes and messages of fetch, filter --lang, tokenize and bpe-train."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.unit.test_fetch_hardening import PAGE, RedirectServer, arc_gz


@pytest.fixture
def redirects():
    s = RedirectServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_fetch_redirect_to_a_local_file_exits_3_at_once(cli, redirects, tmp_path):
    out = tmp_path / "o.parquet"
    r = cli("fetch", f"{redirects.url}/to/file", "-o", out, env={"LLMTOOL_CACHE": str(tmp_path / "cache")})
    assert r.rc == 3, r.err
    assert r.err.count("\n") == 1 and "only redirects to http(s)" in r.err
    assert redirects.requests == ["/to/file"] and not out.exists()


def test_fetch_arc_ids_do_not_depend_on_workers(cli, tmp_path):
    srcs = []
    for name in ("a", "b"):
        f = tmp_path / f"{name}.arc.gz"
        f.write_bytes(arc_gz([(f"http://example.com/{name}{i}", PAGE) for i in range(3)]))
        srcs.append(f)
    ids = []
    for w in ("1", "2", "1"):
        out = tmp_path / f"w{w}.parquet"
        r = cli("fetch", *srcs, "-o", out, "-w", w, "--force")
        assert r.rc == 0, r.err
        ids.append(pq.read_table(out).column("id").to_pylist())
    assert len(ids[0]) == 6 and len(set(ids[0])) == 6
    assert ids[0] == ids[1] == ids[2]


def test_filter_lang_must_be_a_language_code(cli, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"text": "The cat sat on the mat."}) + "\n")
    r = cli("filter", src, "--lang", "english", "-o", tmp_path / "o.parquet")
    assert r.rc == 2 and "'english'" in r.err and "language code" in r.err
    assert r.err.count("\n") == 1
    r = cli("filter", src, "--lang", "en,zz", "-o", tmp_path / "o.parquet")
    assert r.rc == 2 and "'zz'" in r.err and "'en'" not in r.err


def test_tokenize_small_val_fraction_warns_and_holds_out_one_document(cli, tmp_path):
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [f"doc {i}" for i in range(73)]}), src)
    out = tmp_path / "data.bin"
    # a tokenizer trained here keeps the test offline (gpt2's rank file is in the real data)
    tok = tmp_path / "tok.json"
    assert cli("bpe-train", src, "-V", "300", "-o", tok, "-q").rc == 0
    r = cli("tokenize", src, "-t", tok, "-o", out, "--val-fraction", "0.01", "--json")
    assert r.rc == 0, r.err
    summary = json.loads(r.out)
    assert summary["val_docs"] == 1 and summary["docs"] == 72
    assert "picked none of the 73 documents" in r.err


@pytest.mark.parametrize("stage,default", [("tokenize", "INPUT.tokenize.bin"), ("bpe-train", "INPUT.bpe-train.json")])
def test_help_names_the_real_default_output(cli, stage, default):
    r = cli(stage, "--help", env={"COLUMNS": "200"})
    text = r.text + r.err
    assert default in text and ".parquet beside" not in text
