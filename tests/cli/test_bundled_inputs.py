"""The fast tier's twins of real-tier tests: the same checks on inputs built from the bundled
books and tests/data, so that a fresh clone tests every input kind without the data folder."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow.parquet as pq

from tests.bundled import book_documents


def test_local_text_html_jsonl_gz_and_folders(cli, books, datafile, tmp_path):
    """Like test_fetch.py::test_local_text_html_jsonl_and_folders (real tier)."""
    page = tmp_path / "moby.html"
    page.write_text("<html><head><title>Moby-Dick</title></head><body><p>Call me Ishmael.</p></body></html>")
    docs = tmp_path / "docs.jsonl.gz"
    with gzip.open(docs, "wt") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in book_documents(books, 10))
    out = tmp_path / "o.parquet"
    r = cli("fetch", page, books / "pride_and_prejudice.txt", docs, "-o", out, "--json")
    assert r.rc == 0, r.err
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["content_type"] == "text/html" and "<html" in rows[0]["text"].lower()
    assert rows[1]["content_type"] == "text/plain"
    assert rows[1]["text"].startswith("It is a truth universally acknowledged")
    ours = rows[2:]
    assert len(ours) == 10 and all(json.loads(r["metadata"]) for r in ours)
    folder = tmp_path / "wet"
    folder.mkdir()
    for name in ("ccnet_sample.warc.wet", "whirlwind_CC-MAIN-2024-22.warc.wet.gz"):
        shutil.copy(datafile(f"web/wet/{name}"), folder / name)
    r = cli("fetch", folder, "-o", tmp_path / "f.parquet", "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["documents"] == 4
