"""A mutation fuzzer for llmtool: damaged artifacts of every kind must be rejected cleanly.

    python -m fuzz --seconds 120 --seed 1            (make fuzz: FUZZ_SECONDS=180)
    python -m fuzz --seed 1 --case 17 --keep         rerun one case and keep its folder

It builds small seed artifacts with llmtool, then loops until the time budget is spent:
case N takes kind N mod K (round robin, so every kind gets cases), mutates a seed with
random.Random(f"{seed}:{N}") and runs the command that reads it under a memory cap and a
timeout (fuzz/harness.py says what passes). Failing cases are saved under --out with their
inputs, a cmd.sh that reproduces them and the stderr; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from fuzz import harness, seeds, targets

ROOT = Path(__file__).resolve().parents[1]


def _serve(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    """A local web server over the seeds, for *.paths.gz lists (no network needed)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/", server


def _save(case: harness.Case, n: int, case_dir: Path, out: Path, verdict, stderr: str, sig: str, mem: int) -> Path:
    dest = out / f"{n:05d}-{case.kind}-{case.command}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(case_dir / "in", dest / "in")
    setup = "".join(f"cp -r {a} {b}; " for a, b in case.setup)
    stdin = f" < {case.stdin}" if case.stdin else " < /dev/null"
    argv, serve = list(case.argv), ""
    if "--base-url" in argv:  # the fuzzer's seed server is gone: serve in/ (the crawl is there)
        argv[argv.index("--base-url") + 1] = "http://127.0.0.1:8765/"
        serve = ("${PYTHON:-python} -m http.server 8765 --bind 127.0.0.1 -d in >/dev/null 2>&1 & "
                 "trap 'kill $!' EXIT; sleep 1\n")
    (dest / "cmd.sh").write_text(
        "#!/bin/sh\n# Reproduce: PYTHON=/path/to/.venv/bin/python sh cmd.sh\n"
        + f'cd "$(dirname "$0")" && rm -rf out tmp cache && mkdir out tmp cache && {setup}\n'
        + "export OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= TMPDIR=$PWD/tmp LLMTOOL_CACHE=$PWD/cache\n"
        + f"{serve}ulimit -v {mem // 1024}\n${{PYTHON:-python}} -m llmtool {shlex.join(argv)}{stdin}\n")
    (dest / "stderr.txt").write_text(stderr)
    (dest / "verdict.txt").write_text(f"{verdict.reason}\nsignature: {sig}\nmutation: {case.note}\n")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180, help="time budget, seed building included")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "fuzz" / "findings"), help="where failing cases are saved")
    ap.add_argument("--mem-gib", type=float, default=3.0, help="address-space cap per command (torch needs ~1)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply the per-command timeouts")
    ap.add_argument("--kinds", default="", help=f"comma-separated kinds (default all: {','.join(targets.KINDS)})")
    ap.add_argument("--case", type=int, action="append", help="run only these case numbers (repeatable)")
    ap.add_argument("--max-cases", type=int, default=0, help="stop after this many cases")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="cases run at once (one per spare core)")
    ap.add_argument("--no-real", action="store_true", help="do not add files from the shared data folder")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed at the end)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case, with its last stderr line")
    ap.add_argument("--max-saved", type=int, default=3, help="cases saved per failure signature")
    a = ap.parse_args(argv)

    start = time.monotonic()
    kinds = [k for k in (a.kinds.split(",") if a.kinds else targets.KINDS) if k]
    unknown = [k for k in kinds if k not in targets.KINDS]
    if unknown:
        ap.error(f"unknown kind(s): {', '.join(unknown)}")
    mem = int(a.mem_gib * 2**30)
    out = Path(a.out)
    work = Path(tempfile.mkdtemp(prefix="llmtool-fuzz-"))
    seed_dir = work / "seeds"
    print(f"fuzz: seed {a.seed}, budget {a.seconds:.0f}s, memory cap {a.mem_gib:g} GiB, work {work}", file=sys.stderr)
    env = harness.child_env(work)
    (work / "tmp").mkdir()
    all_seeds = seeds.build(seed_dir, env, use_real=not a.no_real)
    base_url, server = _serve(seed_dir)
    print(f"fuzz: seeds built in {time.monotonic() - start:.0f}s "
          f"({sum(len(all_seeds[k]) for k in kinds)} files over {len(kinds)} kinds)", file=sys.stderr)

    stats: dict[str, Counter] = defaultdict(Counter)
    groups: dict[str, list] = {}

    def one(n: int):
        """Make and run case n (thread-safe: its own folder, its own RNG)."""
        kind = kinds[n % len(kinds)]
        case_dir = work / f"case{n}"
        shutil.rmtree(case_dir, ignore_errors=True)
        case = targets.make_case(kind, n // len(kinds), all_seeds, seed_dir, case_dir,
                                 random.Random(f"{a.seed}:{n}"), base_url)
        case.timeout *= a.timeout_scale
        return (n, case, case_dir, *harness.run(case, case_dir, mem))

    def record(n, case, case_dir, verdict, stderr, secs):
        s = stats[case.kind]
        s["cases"] += 1
        s[verdict.status] += 1
        s["seconds"] += secs
        line = f"fuzz: case {n} {case.kind} {case.command}: {verdict.status}"
        if verdict.status == harness.FAIL:
            sig = harness.signature(case, verdict, stderr)
            group = groups.setdefault(sig, [])
            saved = _save(case, n, case_dir, out, verdict, stderr, sig, mem) if len(group) < a.max_saved else None
            group.append((n, case.kind, saved))
            line += f" ({sig}) [{case.note}]"
        elif verdict.status == harness.ODD or a.verbose or a.case:
            last = (stderr.strip().splitlines() or [""])[-1]
            line += f" ({last[:150]}) [{case.note}]"
        if verdict.status in (harness.FAIL, harness.ODD) or a.verbose or a.case:
            print(line, file=sys.stderr)
        if not a.keep:
            shutil.rmtree(case_dir, ignore_errors=True)

    numbers = iter(a.case or range(a.max_cases or 10**9))
    pool = ThreadPoolExecutor(max(1, a.jobs))
    pending: set = set()
    try:
        while True:
            # Start cases while there is time (an explicit --case list always runs in full).
            while len(pending) < a.jobs and (a.case or a.seconds - (time.monotonic() - start) > 2):
                n = next(numbers, None)
                if n is None:
                    break
                pending.add(pool.submit(one, n))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: f.result()[0]):
                record(*f.result())
    except KeyboardInterrupt:
        print("fuzz: interrupted", file=sys.stderr)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        server.shutdown()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(stats, groups, out, time.monotonic() - start, a, work)
    return 1 if groups else 0


def report(stats, groups, out: Path, elapsed: float, a, work: Path) -> None:
    print(f"\nfuzz: seed {a.seed}, {elapsed:.0f}s, {sum(s['cases'] for s in stats.values())} cases")
    print(f"{'kind':<11} {'cases':>5} {'ok':>4} {'rejected':>8} {'exit 1':>6} {'FAIL':>4} {'s/case':>6}")
    for kind, s in stats.items():
        print(f"{kind:<11} {s['cases']:>5} {s['ok']:>4} {s['rejected']:>8} {s['odd']:>6} {s['fail']:>4} "
              f"{s['seconds'] / max(s['cases'], 1):>6.1f}")
    if groups:
        print(f"\n{len(groups)} distinct failure(s), saved under {out}:")
        for sig, cases in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            kinds = ",".join(sorted({k for _, k, _ in cases}))
            example = next((str(p) for _, _, p in cases if p), "")
            print(f"  {len(cases):>3}x [{kinds}] {sig}\n       e.g. case {cases[0][0]}: {example}/cmd.sh")
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(
            {"seed": a.seed, "stats": stats, "failures": {s: [[n, k] for n, k, _ in c] for s, c in groups.items()}},
            indent=1, default=str))
    else:
        print("\nno failures")
    if a.keep:
        print(f"work folder kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
