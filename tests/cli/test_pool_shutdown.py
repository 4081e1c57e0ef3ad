"""Stopping a stage that runs a worker pool: SIGTERM to the whole process group (what `timeout`,
Slurm's scancel, systemd and `kill -TERM -PGID` do) ends fetch, filter and dedup with exit 130
(or 0 if they were done), never hangs, and leaves no temporary file, no scratch folder in
$TMPDIR and no worker behind. A SIGKILLed run's leftovers go on the next run.

Inputs are built from the bundled public-domain books (the `sample_warc` fixture), no shared data.
`make test-slow` runs the full loop: 20 random stops per stage.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

STAGES = ("fetch", "filter", "dedup")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_warc):
    d = tmp_path_factory.mktemp("pool_inputs")
    warc = sample_warc  # 232 pages: the books' chapters, with copies and near-copies
    pages, all_pages, docs = d / "pages.parquet", d / "all_pages.parquet", d / "docs.parquet"
    r = run_cli("fetch", warc, "--limit", "60", "-o", pages, "-q")
    assert r.rc == 0, r.err
    r = run_cli("fetch", warc, "-o", all_pages, "-q")
    assert r.rc == 0, r.err
    r = run_cli("fetch", warc, warc, warc, warc, "-w", "1", "-o", docs, "-q")
    assert r.rc == 0, r.err
    return {"warc": warc, "pages": pages, "all_pages": all_pages, "docs": docs}


def _command(stage: str, inputs: dict, out: Path, big: bool = False) -> list[str]:
    """`stage -w 2`: a second or two of work, or (big) several seconds, so that a stop 0.6-3 s
    after the start lands in the middle of it."""
    if big:
        src = {"fetch": [inputs["warc"]] * 80, "filter": [inputs["all_pages"]] * 3, "dedup": [inputs["docs"]] * 8}
    else:
        src = {"fetch": [inputs["warc"]] * 8, "filter": [inputs["pages"]], "dedup": [inputs["docs"]]}
    return [sys.executable, "-m", "llmtool", stage, *map(str, src[stage]), "-w", "2", "-o", str(out)]


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _start(stage: str, inputs: dict, tmp_path: Path, big: bool = False):
    out_dir, tmp_dir = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir(exist_ok=True)
    tmp_dir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_dir), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(_command(stage, inputs, out_dir / "out.parquet", big), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    return p, out_dir, tmp_dir


def _wait_for_workers(p, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None and len(_group(p.pid)) < 3:
        time.sleep(0.02)


def _finish(p) -> tuple[bool, str]:
    try:
        return False, p.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return True, p.communicate()[1]


def _survivors(pgid: int) -> list[int]:
    deadline = time.monotonic() + 5  # spawn's resource tracker leaves when its pipe closes
    while time.monotonic() < deadline and _group(pgid):
        time.sleep(0.05)
    left = _group(pgid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def stop_once(stage: str, inputs: dict, tmp_path: Path, delay: float, after_workers: bool,
              big: bool = False) -> dict:
    """Start `stage -w 2`, SIGTERM its process group after `delay` seconds (counted from the
    moment its workers run, with after_workers), and report what happened."""
    p, out_dir, tmp_dir = _start(stage, inputs, tmp_path, big)
    if after_workers:
        _wait_for_workers(p)
    time.sleep(delay)
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    hung, err = _finish(p)
    survivors = _survivors(p.pid)
    leftovers = [n for n in os.listdir(out_dir) if n != "out.parquet"] + os.listdir(tmp_dir)
    for name in os.listdir(out_dir):
        os.unlink(out_dir / name)
    return {"rc": p.returncode, "hung": hung, "leftovers": leftovers, "survivors": survivors, "err": err}


def _check(r: dict) -> None:
    assert not r["hung"], r["err"]
    assert r["rc"] in (0, 130), r["err"]
    if r["rc"] == 130:
        assert "interrupted" in r["err"]
    assert "Traceback" not in r["err"], r["err"]
    assert r["leftovers"] == [] and r["survivors"] == []


@pytest.mark.parametrize("stage", STAGES)
def test_sigterm_to_the_group_while_workers_run(stage, inputs, tmp_path):
    delay = random.Random(stage).uniform(0.0, 0.5)
    _check(stop_once(stage, inputs, tmp_path, delay, after_workers=True))


def test_sigkilled_fetch_leaves_no_worker_and_its_leftovers_go_next_time(inputs, tmp_path):
    p, out_dir, tmp_dir = _start("fetch", inputs, tmp_path)
    _wait_for_workers(p)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (os.listdir(tmp_dir) and os.listdir(out_dir)):
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)  # the parent alone: its workers must die with it
    p.communicate(timeout=30)
    assert _survivors(p.pid) == []
    assert os.listdir(out_dir) and os.listdir(tmp_dir)  # what SIGKILL leaves
    r = run_cli(*_command("fetch", inputs, out_dir / "out.parquet")[3:], env={"TMPDIR": str(tmp_dir)})
    assert r.rc == 0, r.err
    assert os.listdir(out_dir) == ["out.parquet"] and os.listdir(tmp_dir) == []


@pytest.mark.slow
def test_sigterm_at_random_points_20_runs_per_stage(inputs, tmp_path):
    """The issue's protocol: `-w 2`, SIGTERM to the group 0.6-3 s after the start, 20 runs a stage."""
    rng = random.Random(int(os.environ.get("LLMTOOL_STOP_SEED", "10")))
    table = {}
    for stage in STAGES:
        runs = [stop_once(stage, inputs, tmp_path, rng.uniform(0.6, 3.0), after_workers=False, big=True)
                for _ in range(20)]
        table[stage] = {"runs": len(runs), "exit 130": sum(r["rc"] == 130 for r in runs),
                        "exit 0": sum(r["rc"] == 0 for r in runs), "hangs": sum(r["hung"] for r in runs),
                        "leftovers": sum(bool(r["leftovers"]) for r in runs),
                        "survivors": sum(bool(r["survivors"]) for r in runs),
                        "other": [(r["rc"], r["err"][-300:]) for r in runs if r["rc"] not in (0, 130)]}
        print(stage, table[stage])
    for stage, row in table.items():
        assert row["hangs"] == row["leftovers"] == row["survivors"] == 0 and not row["other"], (stage, row)
