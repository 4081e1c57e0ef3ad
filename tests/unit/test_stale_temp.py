"""Temporary files and scratch folders name their owner; those of dead processes are removed
on the next run, and nothing of a live process (or another host) is ever touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from llmtool.io import atomic
from llmtool.io.atomic import atomic_dir, atomic_path, clean_stale, scratch_dir

HOST = atomic._HOST


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_temp_names_carry_host_and_pid(tmp_path):
    with atomic_path(tmp_path / "out.parquet") as tmp:
        assert tmp.name.startswith(f".out.parquet.{HOST}.{os.getpid()}.") and tmp.name.endswith(".tmp")
    with atomic_dir(tmp_path / "ckpt") as tmp:
        assert tmp.name.startswith(f".ckpt.{HOST}.{os.getpid()}.")
    s = scratch_dir("test", tmp_path)
    assert s.name.startswith(f"llmtool-test.{HOST}.{os.getpid()}.") and s.is_dir()
    assert scratch_dir("test", tmp_path, hidden=True).name.startswith(".llmtool-test.")


def test_only_dead_processes_leftovers_are_removed(tmp_path):
    dead = _dead_pid()
    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "out.parquet").write_bytes(b"x")
        (tmp_path / "ckpt").mkdir()
        stale = [f".out.parquet.{HOST}.{dead}.abcd1234.tmp", f"llmtool-fetch.{HOST}.{dead}.k2j4_9zz",
                 f".llmtool-tokenize.{HOST}.{dead}.aaaaaaaa", f".ckpt.{HOST}.{dead}.bbbbbbbb.old",
                 f".ckpt.{HOST}.{dead}.cccccccc.tmp"]
        kept = [f".out.parquet.{HOST}.{live.pid}.abcd1234.tmp",  # a live process's
                f".out.parquet.{HOST}.{os.getpid()}.abcd1234.tmp",  # ours
                f"llmtool-dedup.{HOST}.{live.pid}.zzzzzzzz",
                f".out.parquet.otherhost.{dead}.abcd1234.tmp",  # another machine's, on a shared disk
                ".out.parquet.abcd1234.tmp", "llmtool-notes.txt", f"data.{dead}.tmp",  # not ours at all
                # a checkpoint swap cut short: the .old and .tmp folders are the only complete copies
                f".gone.{HOST}.{dead}.dddddddd.old", f".gone.{HOST}.{dead}.eeeeeeee.tmp"]
        for name in stale + kept:
            if "llmtool-" in name or "ckpt" in name or "gone" in name:
                (tmp_path / name).mkdir()
                (tmp_path / name / "part").write_bytes(b"x")
            else:
                (tmp_path / name).write_bytes(b"x")
        removed = clean_stale(tmp_path)
        assert sorted(p.name for p in removed) == sorted(stale)
        assert sorted(os.listdir(tmp_path)) == sorted(kept + ["out.parquet", "ckpt"])
    finally:
        live.kill()
        live.wait()


_WRITER = textwrap.dedent("""
    import sys, time
    from llmtool.io.atomic import atomic_path, scratch_dir
    s = scratch_dir("fetch", sys.argv[2])
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"partial")
        print(tmp, s, flush=True)
        time.sleep(60)
""")


def test_a_sigkilled_writers_leftovers_go_on_the_next_run(tmp_path):
    out, tmpdir = tmp_path / "out" / "a.parquet", tmp_path / "tmp"
    tmpdir.mkdir()
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(tmpdir)], stdout=subprocess.PIPE, text=True)
    temp, scratch = p.stdout.readline().split()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.1)
    assert os.path.exists(temp) and os.path.isdir(scratch)  # SIGKILL leaves them
    with atomic_path(out.parent / "b.parquet") as tmp:  # the next run writing in that folder
        tmp.write_bytes(b"done")
    mine = scratch_dir("fetch", tmpdir)
    assert not os.path.exists(temp) and not os.path.exists(scratch)
    assert sorted(os.listdir(out.parent)) == ["b.parquet"] and os.listdir(tmpdir) == [mine.name]
