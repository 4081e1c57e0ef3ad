"""Running one case and judging it against the CLI contract.

A case is a folder: `in/` holds the (mutated) inputs, `out/` is made from copies listed in
`setup` (an older, valid output that a failing run must leave byte-for-byte as it was), and
the command runs there in a subprocess under a memory cap and a timeout.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

OK, REJECTED, ODD, FAIL = "ok", "rejected", "odd", "fail"
_ERROR_LINE = re.compile(r"^llmtool [a-z-]+: error: ")
_MEMORY = ("MemoryError", "std::bad_alloc", "out of memory", "Cannot allocate memory", "Unable to allocate")


@dataclass
class Verdict:
    status: str  # ok (exit 0), rejected (clean exit 2/3/4), odd (clean exit 1), fail
    reason: str = ""


def classify(rc: int | None, stderr: str, timed_out: bool = False) -> Verdict:
    """The contract: exit 0, or exit 2/3/4 whose stderr ends with ONE `llmtool STAGE: error: ...`
    line (progress lines before it also start with `llmtool `); never a traceback, a signal,
    a hang, a memory-cap death or a multi-line error."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if timed_out:
        return Verdict(FAIL, "timeout")
    if "Traceback (most recent call last)" in stderr:
        return Verdict(FAIL, "memory cap (traceback)" if any(m in stderr for m in _MEMORY) else "traceback")
    if rc is None or rc < 0:
        try:
            name = signal.Signals(-rc).name
        except (TypeError, ValueError):
            name = str(rc)
        return Verdict(FAIL, f"killed by {name}")
    if rc == 0:
        return Verdict(OK)
    errors = [ln for ln in lines if _ERROR_LINE.match(ln)]
    stray = [ln for ln in lines if not ln.startswith("llmtool ")]
    if rc == 1 and any(m in stderr for m in _MEMORY):
        return Verdict(FAIL, "memory cap")
    if rc not in (1, 2, 3, 4):
        return Verdict(FAIL, f"exit {rc}")
    if len(errors) != 1 or errors[0] != lines[-1]:
        return Verdict(FAIL, f"exit {rc} without exactly one final error line")
    if stray:
        return Verdict(FAIL, f"exit {rc} with stray stderr lines")
    # Exit 1 says "llmtool broke", not "your input is bad": worth a look, not a crash.
    return Verdict(ODD if rc == 1 else REJECTED, f"exit {rc}")


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (dot files included)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changed = [f"changed {k}" for k in before if k in after and before[k] != after[k]]
    gone = [f"removed {k}" for k in before if k not in after]
    new = [f"new {k}" for k in after if k not in before]
    return changed + gone + new


def _validate_output(path: Path) -> str | None:
    """Is a successful run's output readable? None if so, else why not."""
    try:
        if path.is_dir():
            if (path / "config.json").exists():
                import json

                from safetensors import safe_open

                json.loads((path / "config.json").read_text())
                with safe_open(str(path / "model.safetensors"), "np") as f:
                    list(f.keys())
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        elif path.suffix == ".bin":
            from llmtool.io.tokfile import TokenFile

            TokenFile(path, verify=True)
        elif path.suffix == ".json":
            from llmtool.tokenizer.file import load_tokenizer

            load_tokenizer(str(path))
    except Exception as e:  # noqa: BLE001 - anything unreadable is the finding
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None


def check_outputs(case_dir: Path, before_in: dict, before_out: dict, verdict: Verdict) -> Verdict:
    """Inputs are never modified; a failed run leaves out/ as it was; a good run's outputs
    are readable and no temporary files stay behind."""
    changed_in = diff(before_in, snapshot(case_dir / "in"))
    if changed_in:
        return Verdict(FAIL, "input modified: " + changed_in[0])
    if verdict.status == FAIL:
        return verdict  # the crash is the finding (a killed run cannot clean up)
    # Spill files (dedup --tmp-dir defaults to $TMPDIR) are "removed on exit"; torch leaves
    # only an empty cache folder there, so files are what counts.
    spilled = [str(p.relative_to(case_dir)) for p in (case_dir / "tmp").rglob("*") if p.is_file()]
    if spilled:
        return Verdict(FAIL, "temporary file left in TMPDIR: " + _generic(spilled[0]))
    after_out = snapshot(case_dir / "out")
    if verdict.status != OK:
        changes = diff(before_out, after_out)
        if changes:
            return Verdict(FAIL, "failed run changed its output: " + _generic(changes[0]))
        return verdict
    leftovers = [k for k in after_out if re.search(r"(^|/)\.[^/]*\.(tmp|old)(/|$)", k)]
    if leftovers:
        return Verdict(FAIL, "temporary file left: " + _generic(leftovers[0]))
    for top in sorted({k.split("/")[0] for k in after_out}):
        why = _validate_output(case_dir / "out" / top)
        if why:
            return Verdict(FAIL, f"unreadable output {top}: {why}")
    return verdict


def _generic(s: str) -> str:
    return re.sub(r"\.[A-Za-z0-9_]{6,}\.(tmp|old)", r".XXXX.\1", s)


@dataclass
class Case:
    kind: str
    command: str  # short name, e.g. "filter"
    argv: list[str]  # arguments after `llmtool`
    note: str = ""  # what the mutation did
    stdin: str | None = None  # relative to the case folder
    setup: list[tuple[str, str]] = field(default_factory=list)  # (from in/..., to out/...) copies
    timeout: float = 30.0  # CPU seconds (RLIMIT_CPU); the wall-clock limit is 4x, for a loaded machine


def child_env(case_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTOOL_CACHE", "CUDA_VISIBLE"))}
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", TMPDIR=str(case_dir / "tmp"), LLMTOOL_CACHE=str(case_dir / "cache"),
               COLUMNS="100")
    return env


def prepare(case: Case, case_dir: Path) -> None:
    for sub in ("out", "tmp", "cache"):
        shutil.rmtree(case_dir / sub, ignore_errors=True)
        (case_dir / sub).mkdir(parents=True)
    for src, dst in case.setup:
        (shutil.copytree if (case_dir / src).is_dir() else shutil.copy2)(case_dir / src, case_dir / dst)


def run(case: Case, case_dir: Path, mem_bytes: int) -> tuple[Verdict, str, float]:
    """Run the case (already materialised in case_dir/in); returns (verdict, stderr, seconds)."""
    prepare(case, case_dir)
    before_in, before_out = snapshot(case_dir / "in"), snapshot(case_dir / "out")
    cpu = int(case.timeout)

    def limits():
        # CPU time, not wall time, decides "hang": other jobs on a shared machine slow a run
        # down without making it spin. SIGXCPU at the soft limit, SIGKILL at the hard one.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    t0 = time.monotonic()
    stdin = open(case_dir / case.stdin, "rb") if case.stdin else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "llmtool", *case.argv], cwd=case_dir, env=child_env(case_dir),
                            stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=limits, start_new_session=True)
    timed_out = False
    try:
        _, err = proc.communicate(timeout=4 * case.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        _, err = proc.communicate()
    finally:
        if case.stdin:
            stdin.close()
    _kill_group(proc)  # workers a dead parent left behind
    seconds = time.monotonic() - t0
    stderr = err.decode("utf-8", "replace")
    # Killed at the CPU limit (SIGXCPU, or SIGKILL at the hard limit: only we send SIGKILL
    # otherwise, and then timed_out is already set) is a hang too.
    timed_out = timed_out or proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    verdict = check_outputs(case_dir, before_in, before_out, classify(proc.returncode, stderr, timed_out))
    return verdict, stderr, seconds


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def signature(case: Case, verdict: Verdict, stderr: str) -> str:
    """What groups failures with one root cause: command, reason, the exception line and the
    deepest llmtool frame of the traceback (numbers and paths blurred)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    where, last = "", ""
    if "Traceback" in stderr:
        frames = [ln.strip() for ln in lines if ln.strip().startswith("File ") and "/llmtool/" in ln]
        if frames:
            m = re.search(r'/(llmtool/[^"]+)", line \d+, in (\S+)', frames[-1])
            where = f"{m.group(1)}:{m.group(2)}" if m else frames[-1]
        tail = [ln for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Exit|Interrupt)\b", ln)]
        last = tail[-1] if tail else lines[-1]
    elif lines and verdict.reason != "timeout":
        last = lines[-1]
    last = re.sub(r"\d+", "N", re.sub(r"(/[^\s:'\"]+)+", "PATH", last))[:160]
    return " | ".join(x for x in (case.command, verdict.reason, where, last) if x)
