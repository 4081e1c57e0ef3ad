"""fetch on edge-case archives, end to end: the small ones bundled in tests/data, the bigger real
ones (marked `real`) from the data folder."""

import json

import pyarrow.parquet as pq
import pytest

from llmtool.data.fetch import normalise_date

CASES = [
    # file, documents expected, a reason that must be counted (or None)
    pytest.param("web/trafilatura_eval_pages.part0.warc.gz", 517, None, marks=pytest.mark.real),
    pytest.param("web/warc/resiliparse_clueweb-quirk.warc.gz", 29, "invalid_date (kept, date null)",
                 marks=pytest.mark.real),
    pytest.param("web/warc/resiliparse_warcfile_CC-MAIN-2020-34.warc.gz", 16, None, marks=pytest.mark.real),
    # 22 responses + 2 text resources
    pytest.param("web/warc/dolma_sample-0000.warc.gz", 24, None, marks=pytest.mark.real),
    ("web/warc/warcio_example-trunc.warc", 1, "malformed_tail"),
    ("web/warc/warcio_example.arc.gz", 1, None),
    ("web/warc/warcio_example.warc.gz", 1, None),  # gzip Content-Encoding undone
    ("web/warc/warcio_example-iana.org-chunked.warc", 1, None),
    ("web/warc/warcio_example-wrong-chunks.warc.gz", 1, None),
    ("web/wet/whirlwind_CC-MAIN-2024-22.warc.wet.gz", 1, None),
    ("web/wet/ccnet_sample.warc.wet", 3, "recovered_bad_content_length"),
    ("web/warc/whirlwind_CC-MAIN-2024-22.warc.wat.gz", 0, None),  # metadata only
]


def _name(case) -> str:
    return (case.values if hasattr(case, "values") else case)[0]


@pytest.mark.parametrize("name,docs,reason", CASES, ids=[_name(c).rsplit("/", 1)[1] for c in CASES])
def test_archive_edge_cases(cli, datafile, tmp_path, name, docs, reason):
    out = tmp_path / "o.parquet"
    r = cli("fetch", datafile(name), "-o", out, "--json")
    assert r.rc == 0, r.err
    summary = json.loads(r.out)
    assert summary["documents"] == docs
    t = pq.read_table(out)
    assert t.num_rows == docs
    assert t.schema.names == ["id", "url", "date", "dump", "content_type", "text", "source", "metadata"]
    if reason:
        assert summary["skipped"].get(reason, 0) >= 1, summary
    for row in t.to_pylist():
        assert row["text"].strip()
        assert not (row["url"] or "").startswith("<")


def test_clueweb_pages_are_decoded_from_euc_jp(cli, data, tmp_path):
    out = tmp_path / "o.parquet"
    cli("fetch", data / "web/warc/resiliparse_clueweb-quirk.warc.gz", "-o", out)
    rows = pq.read_table(out).to_pylist()
    assert all(r["date"] is None for r in rows)
    japanese = sum(any("\u3040" <= ch <= "\u30ff" for ch in r["text"]) for r in rows)
    assert japanese >= 25  # hiragana/katakana: decoded, not mojibake
    assert sum("\ufffd" in r["text"] for r in rows) <= 3


def test_common_crawl_metadata(cli, datafile, tmp_path):
    out = tmp_path / "o.parquet"
    cli("fetch", datafile("web/warc/whirlwind_CC-MAIN-2024-22.warc.gz"), "-o", out)
    (row,) = pq.read_table(out).to_pylist()
    assert row["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert row["dump"] == "CC-MAIN-2024-22"
    assert row["date"] == "2024-05-18T01:58:10Z"
    assert row["content_type"] == "text/html"
    assert row["id"].startswith("<urn:uuid:")
    assert json.loads(row["metadata"])["http_status"] == 200
    assert "Escopete" in row["text"]


def test_local_text_html_jsonl_and_folders(cli, data, tmp_path):
    out = tmp_path / "o.parquet"
    r = cli("fetch", data / "web/html/cs336_moby.html", data / "text/tinyshakespeare.txt",
            data / "web/text/dolma_cc_en_head-0091.jsonl.gz", "-o", out, "--json")
    assert r.rc == 0, r.err
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["content_type"] == "text/html" and "<html" in rows[0]["text"].lower()
    assert rows[1]["content_type"] == "text/plain" and rows[1]["text"].startswith("First Citizen")
    dolma = rows[2:]
    assert len(dolma) == 10 and all(json.loads(r["metadata"]) for r in dolma)
    r = cli("fetch", data / "web/wet", "-o", tmp_path / "f.parquet", "--json")
    assert json.loads(r.out)["documents"] == 4


def test_limit_workers_and_shards_are_consistent(cli, datafile, sample_warc, tmp_path):
    srcs = [datafile("web/warc/warcio_example.warc.gz"), sample_warc, datafile("web/wet/ccnet_sample.warc.wet")]
    one = tmp_path / "one.parquet"
    two = tmp_path / "two.parquet"
    assert cli("fetch", *srcs, "-o", one, "--workers", "1").rc == 0
    assert cli("fetch", *srcs, "-o", two, "--workers", "2").rc == 0
    a, b = pq.read_table(one), pq.read_table(two)
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("text").to_pylist() == b.column("text").to_pylist()
    ids = []
    for i in range(2):
        cli("fetch", *srcs, "--shard", f"{i}/2", "-o", tmp_path / f"s{i}.parquet")
        ids.append(pq.read_table(tmp_path / f"s{i}.parquet").column("id").to_pylist())
    assert sorted(ids[0] + ids[1]) == sorted(a.column("id").to_pylist())
    assert cli("fetch", *srcs, "-o", tmp_path / "l.parquet", "--limit", "20", "--workers", "2").rc == 0
    assert pq.read_table(tmp_path / "l.parquet").column("id").to_pylist() == a.column("id").to_pylist()[:20]


def test_source_list_file(cli, datafile, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two sources\n{datafile('web/warc/whirlwind_CC-MAIN-2024-22.warc.gz')}\n"
                   f"{datafile('web/wet/whirlwind_CC-MAIN-2024-22.warc.wet.gz')}\n")
    r = cli("fetch", f"@{lst}", "-o", tmp_path / "o.parquet", "--json")
    assert r.rc == 0 and json.loads(r.out)["documents"] == 2


def test_binary_file_is_a_clear_error(cli, tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(bytes(range(256)) * 10)
    r = cli("fetch", f, "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and "binary file of unknown format" in r.err


def test_truncated_gzip_archive_keeps_readable_records(cli, sample_warc, tmp_path):
    src = sample_warc.read_bytes()  # one gzip member per record, as Common Crawl writes them
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(src[: len(src) // 2])
    r = cli("fetch", cut, "-o", tmp_path / "o.parquet", "--json")
    summary = json.loads(r.out)
    assert r.rc == 0 and 50 <= summary["documents"] < 232
    assert summary["skipped"].get("truncated_record", 0) == 1


@pytest.mark.parametrize("raw,iso", [
    ("2024-05-18T01:58:10Z", "2024-05-18T01:58:10Z"),
    ("2008-10-29T05:21:46-0700", "2008-10-29T12:21:46Z"),
    ("2008-10-294T05:21:46-0700", None),
    ("", None),
    ("yesterday", None),
])
def test_normalise_date(raw, iso):
    assert normalise_date(raw) == iso
