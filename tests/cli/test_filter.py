"""`llmtool filter` end to end: on pages and documents built from the bundled books (fast tier),
and on real web pages and documents from the data folder (real tier)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

WARC = "web/trafilatura_eval_pages.part0.warc.gz"
DOLMA = "web/text/dolma_CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"


@pytest.fixture(scope="module", params=["books", pytest.param("real", marks=pytest.mark.real)])
def kind(request):
    """Which inputs the tests below get: built from the bundled books, or the real web data."""
    return request.param


@pytest.fixture(scope="module")
def warc(kind, request):
    """A crawl: the demo's (book chapters as web pages), or the trafilatura evaluation WARC."""
    if kind == "books":
        return request.getfixturevalue("sample_warc")
    return request.getfixturevalue("data") / WARC


@pytest.fixture(scope="module")
def pages(tmp_path_factory, warc):
    """The first 60 pages of the crawl, as `llmtool fetch` writes them."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("pages") / "pages.parquet"
    r = run_cli("fetch", warc, "--limit", "60", "-o", out, "-q")
    assert r.rc == 0, r.err
    return out


@pytest.fixture(scope="module")
def docs(tmp_path_factory, kind, request):
    """200 text documents as JSONL, text plus unknown columns: runs of the books' paragraphs
    mixed with junk pages (tests/bundled.py), or real Common Crawl documents (dolma)."""
    out = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    if kind == "books":
        from tests.bundled import book_documents

        rows = book_documents(request.getfixturevalue("books"), 200)
        out.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return out
    with gzip.open(request.getfixturevalue("data") / DOLMA, "rt") as fh:
        lines = [next(fh) for _ in range(200)]
    out.write_text("".join(lines))
    return out


def test_fetch_pipe_filter_end_to_end(cli, warc, tmp_path):
    fetched = cli("fetch", warc, "--limit", "40", "-q")
    assert fetched.rc == 0, fetched.err
    out = tmp_path / "clean.parquet"
    r = cli("filter", "-", "-o", out, "--json", "--workers", "2", input=fetched.out)
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["docs_in"] == 40 and s["docs_out"] >= 1
    assert s["docs_in"] == s["docs_out"] + sum(s["dropped"].values())
    assert "url_lists" in s  # no block list given: the summary says so
    t = pq.read_table(out)
    assert t.schema.names == ["id", "url", "date", "dump", "content_type", "text", "source", "metadata",
                              "language", "language_score"]
    for row in t.to_pylist():
        assert row["language"] == "en" and row["language_score"] > 0.65
        assert "<" not in row["text"][:200]  # extracted text, not HTML


def test_plain_text_table_with_unknown_columns(cli, docs, tmp_path):
    out, rej = tmp_path / "o.parquet", tmp_path / "rej.parquet"
    r = cli("filter", docs, "-o", out, "--rejected", rej, "--json", "--workers", "1")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    kept, dropped = pq.read_table(out), pq.read_table(rej)
    assert kept.num_rows == s["docs_out"] > 20
    assert kept.num_rows + dropped.num_rows == 200
    src = [json.loads(line) for line in docs.read_text().splitlines()]
    assert set(src[0]) - {"text"} <= set(kept.schema.names)  # unknown columns pass through
    # order kept, ids intact, and every dropped row carries the reason the summary counted
    ids = [d["id"] for d in src]
    out_ids = kept.column("id").to_pylist()
    assert out_ids == [i for i in ids if i in set(out_ids)]
    reasons = dropped.column("reason").to_pylist()
    assert all(":" in x for x in reasons)
    assert {k: reasons.count(k) for k in set(reasons)} == s["dropped"]
    by_id = {d["id"]: d["text"] for d in src}
    assert all(by_id[i] == t for i, t in zip(dropped.column("id").to_pylist(), dropped.column("text").to_pylist()))


def test_output_is_identical_for_any_worker_count(cli, pages, docs, tmp_path):
    for src in (pages, docs):
        results = []
        for w in (1, 2, 3):
            out = tmp_path / f"w{w}.parquet"
            r = cli("filter", src, "-o", out, "--workers", w, "--explain", "--force", "-q")
            assert r.rc == 0, r.err
            results.append(pq.read_table(out).replace_schema_metadata(None))
        assert results[0].equals(results[1]) and results[0].equals(results[2])


def test_shards_partition_the_rows(cli, docs, tmp_path):
    whole = tmp_path / "all.parquet"
    assert cli("filter", docs, "-o", whole, "--skip", "lid", "-q").rc == 0
    ids = []
    for i in range(3):
        out = tmp_path / f"s{i}.parquet"
        r = cli("filter", docs, "-o", out, "--skip", "lid", "--shard", f"{i}/3", "--json")
        assert r.rc == 0, r.err
        ids += pq.read_table(out).column("id").to_pylist()
    assert sorted(ids) == sorted(pq.read_table(whole).column("id").to_pylist())


def test_explain_skip_only_and_set(cli, docs, tmp_path):
    out = tmp_path / "e.parquet"
    r = cli("filter", docs, "-o", out, "--explain", "--json")
    assert r.rc == 0, r.err
    t = pq.read_table(out)
    assert {"n_words", "dup_5_gram_frac", "c4_sentences", "line_punct_ratio"} <= set(t.schema.names)
    assert all(v >= 50 for v in t.column("n_words").to_pylist())
    base = json.loads(r.out)["docs_out"]
    # a stricter threshold keeps fewer, a skipped filter keeps more
    strict = json.loads(cli("filter", docs, "-o", tmp_path / "s.parquet", "--json",
                            "--set", "gopher_quality.min_doc_words=400").out)
    assert strict["docs_out"] < base and "gopher_quality:short_doc" in strict["dropped"]
    loose = json.loads(cli("filter", docs, "-o", tmp_path / "l.parquet", "--json", "--skip", "fineweb,c4").out)
    assert loose["docs_out"] > base and not any(k.startswith(("c4", "fineweb")) for k in loose["dropped"])
    only = json.loads(cli("filter", docs, "-o", tmp_path / "c4.parquet", "--json", "--only", "c4").out)
    assert set(only["dropped_by_step"]) <= {"c4", "extract"}


def test_malformed_rows_are_counted_not_fatal(cli, tmp_path):
    good = ("The history of the town goes back to the twelfth century, when a small abbey was built beside "
            "the river. Over the following centuries the settlement grew into a market town with a busy "
            "harbour. Merchants traded wool, grain and timber with ports across the North Sea. Today the old "
            "quarter still has narrow streets and timber-framed houses. Visitors can walk along the walls and "
            "see the ruins of the abbey, which have been restored with care.")
    huge = "<html><body>" + "<div><p>deep</p>" * 20000 + "</body></html>"
    table = pa.table({
        "text": [good, "", None, "%PDF-1.7 binary", "<html><body></body></html>", huge, "<p>" + good + "</p>"],
        "content_type": ["text/plain", "text/plain", None, "application/pdf", "text/html", "text/html", None],
        "url": [None] * 7,
    })
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    out, rej = tmp_path / "o.parquet", tmp_path / "r.parquet"
    r = cli("filter", src, "-o", out, "--rejected", rej, "--json", "--extract-timeout", "2")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["docs_in"] == 7
    assert s["dropped"]["extract:empty"] == 2
    assert s["dropped"]["extract:not_html"] == 1
    assert s["dropped"]["extract:no_content"] >= 1
    assert pq.read_table(out).num_rows + pq.read_table(rej).num_rows == 7
    assert pq.read_table(out).column("text").to_pylist()[0] == good  # plain text: no extraction


def test_stream_output_and_up_to_date(cli, docs, tmp_path):
    r = cli("filter", docs, "-o", "-", "--skip", "lid", "-q")
    assert r.rc == 0
    assert ipc.open_stream(r.out).read_all().num_rows > 0
    out = tmp_path / "o.parquet"
    assert cli("filter", docs, "-o", out, "-q").rc == 0
    again = cli("filter", docs, "-o", out)
    assert again.rc == 0 and "up to date" in again.err


def test_blocklist_folder(cli, docs, tmp_path):
    lists = tmp_path / "bl" / "adult"
    lists.mkdir(parents=True)
    (lists / "domains").write_text("100kinvesting.com\n")
    rows = [json.loads(x) for x in docs.read_text().splitlines()[:20]]
    for row in rows:
        row["url"] = row.get("id")
    rows[0]["url"] = "http://www.100kinvesting.com/2016/post"
    src = tmp_path / "u.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = cli("filter", src, "-o", tmp_path / "o.parquet", "--url-blocklist", tmp_path / "bl", "--json")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["dropped"].get("url:domain") == 1 and "url_lists" not in s


@pytest.mark.parametrize("args, code, message", [
    (["missing.parquet"], 3, "no such file"),
    (["{docs}", "--skip", "gopher"], 2, "unknown step"),
    (["{docs}", "--set", "gopher_quality.min_words=3"], 2, "--set"),
    (["{docs}", "--extractor", "lxml"], 2, "trafilatura or resiliparse"),
    (["{docs}", "--shard", "3/3"], 2, "shard"),
    (["{docs}", "--only", "c4", "--skip", "pii"], 2, "--only and --skip"),
    (["{docs}", "--rejected", "-"], 2, "--rejected"),
    (["{notext}"], 3, "missing column"),
    (["{docs}", "--url-blocklist", "nowhere"], 3, "no such block list"),
])
def test_errors_are_one_line_with_the_right_code(cli, docs, tmp_path, args, code, message):
    notext = tmp_path / "notext.jsonl"
    notext.write_text('{"body": "x"}\n')
    args = [a.format(docs=docs, notext=notext) for a in args]
    r = cli("filter", *args, "-o", tmp_path / "o.parquet")
    assert r.rc == code, r.err
    assert message in r.err and "Traceback" not in r.err
    assert not (tmp_path / "o.parquet").exists()


def test_cpu_budget_timeouts_are_counted(cli, pages, tmp_path):
    rej = tmp_path / "r.parquet"
    # the budget is CPU time counted in scheduler ticks: which light page runs out of it varies,
    # so give it 180 pages (a fifth of the books' pages time out, most real ones)
    r = cli("filter", pages, pages, pages, "-o", tmp_path / "o.parquet", "--rejected", rej, "--json",
            "--extract-timeout", "0.001", "--no-prescreen", "--workers", "1")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["dropped"].get("extract:timeout", 0) >= 10
    assert pq.read_table(rej).column("reason").to_pylist().count("extract:timeout") == s["dropped"]["extract:timeout"]


@pytest.mark.parametrize("name", [
    pytest.param("web/warc/resiliparse_warcfile_CC-MAIN-2020-34.warc.gz", marks=pytest.mark.real),
    pytest.param("web/warc/dolma_sample-0000.warc.gz", marks=pytest.mark.real),
    pytest.param("web/warc/resiliparse_clueweb-quirk.warc.gz", marks=pytest.mark.real),
    "web/warc/warcio_example.arc.gz",
    "web/wet/whirlwind_CC-MAIN-2024-22.warc.wet.gz",
    "web/wet/ccnet_sample.warc.wet",
], ids=lambda n: n.rsplit("/", 1)[1])
def test_other_warc_and_wet_samples(cli, datafile, tmp_path, name):
    fetched = cli("fetch", datafile(name), "-q")
    assert fetched.rc == 0, fetched.err
    r = cli("filter", "-", "-o", tmp_path / "o.parquet", "--json", "--lang", "all", input=fetched.out)
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["docs_in"] == ipc.open_stream(fetched.out).read_all().num_rows
    assert s["docs_in"] == s["docs_out"] + sum(s["dropped"].values())


@pytest.mark.parametrize("kind", [pa.large_string(), pa.binary()])
def test_text_column_types(cli, tmp_path, kind):
    text = ("The history of the town goes back to the twelfth century, when a small abbey was built "
            "beside the river. Over the following centuries the settlement grew into a market town with "
            "a busy harbour. Merchants traded wool, grain and timber with ports across the North Sea. "
            "Today the old quarter still has narrow streets and timber-framed houses. Visitors can walk "
            "along the walls and see the ruins of the abbey, which have been restored with care.")
    values = [text, "x"] if kind != pa.binary() else [text.encode(), b"x"]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array(values, type=kind), "n": [1, 2]}), src)
    r = cli("filter", src, "-o", tmp_path / "o.parquet", "--rejected", tmp_path / "r.parquet", "-q")
    assert r.rc == 0, r.err
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.column("text").to_pylist() == [text] and out.column("n").to_pylist() == [1]
    assert pq.read_table(tmp_path / "r.parquet").column("n").to_pylist() == [2]


def test_non_string_text_is_bad_input(cli, tmp_path):
    src = tmp_path / "n.jsonl"
    src.write_text('{"text": 1}\n{"text": 2}\n')
    r = cli("filter", src, "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and "expected strings" in r.err


def test_several_inputs_make_one_output_in_order(cli, docs, tmp_path):
    lines = docs.read_text().splitlines(keepends=True)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(lines[:120]))
    b.write_text("".join(lines[120:]))
    both, single = tmp_path / "both.parquet", tmp_path / "single.parquet"
    assert cli("filter", a, b, "-o", both, "--skip", "lid", "-q").rc == 0
    assert cli("filter", docs, "-o", single, "--skip", "lid", "-q").rc == 0
    assert pq.read_table(both).column("id").to_pylist() == pq.read_table(single).column("id").to_pylist()


@pytest.mark.slow
def test_same_documents_kept_as_datatrove_on_the_whole_warc(cli, data, tmp_path):
    """The full FineWeb pipeline on all 517 pages, llmtool vs datatrove (make test-slow)."""
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    from bench.bench_filter import make_parquet, read_pages, run_datatrove

    pages = read_pages()
    src = make_parquet(pages, str(tmp_path))
    out = tmp_path / "o.parquet"
    r = cli("filter", src, "-o", out, "--skip", "url", "--workers", "2")
    assert r.rc == 0, r.err
    ours = set(pq.read_table(out).column("id").to_pylist())
    _, _, theirs = run_datatrove(pages)
    theirs = set(theirs)
    assert len(ours & theirs) >= 0.98 * len(ours | theirs), (sorted(ours - theirs), sorted(theirs - ours))


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupt_with_workers_exits_cleanly(pages, tmp_path, sig):
    """Ctrl-C or SIGTERM mid-run with a process pool: exit 130 promptly, no output left and
    no worker left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o.parquet"
    p = subprocess.Popen([sys.executable, "-m", "llmtool", "filter", *[str(pages)] * 30,
                          "--no-prescreen", "--workers", "2", "-o", str(out)],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # start-up, then the pool is busy with trafilatura (12 s of work or more)
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    p.send_signal(getattr(signal, sig))
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    for pid in children:  # the pool's workers are gone too
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
