"""The CLI contract of docs/design.md §1, checked on the commands end to end."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq


def test_help_lists_groups_and_does_not_import_torch():
    code = ("import sys, runpy\nsys.argv=['llmtool','--help']\n"
            "try:\n    runpy.run_module('llmtool', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('torch','numpy','pyarrow','trafilatura','transformers') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    assert "HEAVY []" in p.stderr, p.stderr
    for group in ("Data", "Inspect"):
        assert group in p.stdout
    assert "fetch" in p.stdout and "info" in p.stdout
    assert elapsed < 5  # generous: the point is no heavy imports, checked above


def test_stage_help_shows_examples(cli):
    r = cli("fetch", "--help")
    assert r.rc == 0 and "llmtool fetch crawl.warc.gz" in r.text


def test_usage_error_exit_2(cli):
    r = cli("fetch", "x.warc", "--shard", "9/2")
    assert r.rc == 2 and "--shard" in r.err


def test_missing_file_is_one_line_exit_3(cli, tmp_path):
    r = cli("fetch", tmp_path / "nope.warc.gz", "-o", tmp_path / "o.parquet")
    assert r.rc == 3
    assert r.err.strip().count("\n") == 0 and "no such file" in r.err
    assert "Traceback" not in r.err


def test_up_to_date_and_force(cli, sample_warc, tmp_path):
    out = tmp_path / "o.parquet"
    src = sample_warc
    assert cli("fetch", src, "-o", out).rc == 0
    mtime = out.stat().st_mtime_ns
    r = cli("fetch", src, "-o", out)
    assert r.rc == 0 and "up to date" in r.err and out.stat().st_mtime_ns == mtime
    r = cli("fetch", src, "-o", out, "--limit", "3")  # other parameters: rebuilt
    assert r.rc == 0 and pq.read_metadata(out).num_rows == 3
    r = cli("fetch", src, "-o", out, "--limit", "3", "--force")
    assert r.rc == 0 and "up to date" not in r.err


def test_json_summary_and_its_usage_error(cli, sample_warc, tmp_path):
    import json

    src = sample_warc
    r = cli("fetch", src, "-o", tmp_path / "o.parquet", "--json")
    summary = json.loads(r.out)
    assert summary["documents"] == 232 and summary["stage"] == "fetch"
    assert cli("fetch", src, "-o", "-", "--json").rc == 2


def test_pipe_and_truncated_pipe(cli, sample_warc, tmp_path):
    stream = cli("fetch", sample_warc, "-o", "-").out
    r = cli("info", "-", input=stream)
    assert r.rc == 0 and "rows: 232" in r.text and "fetch v1" in r.text
    # cut inside a batch (a corrupt stream) or between batches (no end marker): refused either way
    r = cli("info", "-", input=stream[: len(stream) // 2])
    assert r.rc == 3 and ("truncated" in r.err or "end marker" in r.err), r.err
    r = cli("info", "-", input=b"")
    assert r.rc == 3 and "empty input" in r.err


def test_default_output_name_follows_gzip(cli, datafile, tmp_path):
    import shutil

    src = tmp_path / "crawl.warc.gz"
    shutil.copy(datafile("web/warc/whirlwind_CC-MAIN-2024-22.warc.gz"), src)
    r = subprocess.run([sys.executable, "-m", "llmtool", "fetch", str(src)], cwd=tmp_path,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "crawl.fetch.parquet").exists()


def test_ctrl_c_during_write_leaves_no_output(sample_warc, tmp_path):
    out = tmp_path / "out.parquet"
    srcs = [str(sample_warc)] * 80  # 90 MB of pages: seconds of work to interrupt
    p = subprocess.Popen([sys.executable, "-m", "llmtool", "fetch", *srcs,
                          "--workers", "1", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        time.sleep(0.02)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_sigterm_also_cleans_up(sample_warc, tmp_path):
    out = tmp_path / "out.parquet"
    srcs = [str(sample_warc)] * 60
    p = subprocess.Popen([sys.executable, "-m", "llmtool", "fetch", *srcs, "--workers", "1",
                          "-o", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.name.endswith(".tmp") for f in tmp_path.iterdir()):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 130
    assert list(tmp_path.iterdir()) == []


def test_refuses_binary_to_terminal(datafile):
    # `script` gives the child a real terminal on stdout
    import shutil

    if not shutil.which("script"):
        import pytest

        pytest.skip("no `script` to make a terminal")
    src = datafile("web/warc/whirlwind_CC-MAIN-2024-22.warc.gz")
    cmd = f"{sys.executable} -m llmtool fetch {src} -o -"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert "refusing to write binary data to a terminal" in p.stdout + p.stderr


def test_lineage_survives_pipes(cli, sample_warc, tmp_path, monkeypatch):
    import io

    from llmtool.io.provenance import input_record, lineage, make, read_provenance
    from llmtool.io.tables import TableWriter, open_table

    stream = cli("fetch", sample_warc, "-o", "-").out
    monkeypatch.setattr("llmtool.io.tables._stdin_stream", lambda: io.BufferedReader(io.BytesIO(stream)))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    out = tmp_path / "o.parquet"
    prov = make("next", 1, {}, [input_record("-")])  # made before stdin is read, as stages do
    with TableWriter(str(out), prov) as w:
        for b in open_table("-").batches():
            w.write(b)
    assert [p["stage"] for p in lineage(read_provenance(out))] == ["next", "fetch"]
