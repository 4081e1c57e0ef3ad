"""fetch vs datatrove's WarcReader on the same real WARC (517 pages), side by side.

Both read in-process with one worker and materialise every document (id, url, text);
llmtool's full CLI run (including the Parquet write) is timed too. Correctness: the
documents both produce, matched by URL, and how many texts are identical.

    python bench/bench_fetch.py [WARC]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "web" / "trafilatura_eval_pages.part0.warc.gz"
REPEATS = 3


def llmtool_docs(path: Path) -> dict[str, str]:
    from llmtool.data.fetch import documents_of

    return {d["url"]: d["text"] for d in documents_of(str(path), Counter())}


def datatrove_docs(path: Path) -> dict[str, str]:
    from datatrove.pipeline.readers import WarcReader

    reader = WarcReader(str(path.parent), glob_pattern=path.name, recursive=False)
    return {d.metadata.get("url"): d.text for d in reader.run()}


def best_time(fn, path):
    best, result = float("inf"), None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = fn(path)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    t_ours, ours = best_time(llmtool_docs, path)
    t_dt, theirs = best_time(datatrove_docs, path)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "llmtool", "fetch", str(path), "-o", f"{d}/o.parquet",
                        "--workers", "1", "-q"], check=True)
        t_cli = time.perf_counter() - t0
    common = set(ours) & set(theirs)
    same = sum(ours[u] == theirs[u] for u in common)
    print(f"input: {path.name} ({path.stat().st_size / 1e6:.1f} MB), best of {REPEATS}, 1 worker")
    print(f"{'tool':<28}{'docs':>7}{'seconds':>10}{'docs/s':>10}")
    print(f"{'llmtool fetch (in-process)':<28}{len(ours):>7}{t_ours:>10.3f}{len(ours) / t_ours:>10.0f}")
    print(f"{'datatrove WarcReader':<28}{len(theirs):>7}{t_dt:>10.3f}{len(theirs) / t_dt:>10.0f}")
    print(f"{'llmtool fetch CLI (+parquet)':<28}{len(ours):>7}{t_cli:>10.3f}{len(ours) / t_cli:>10.0f}")
    print(f"speed ratio llmtool/datatrove (docs/s): {(len(ours) / t_ours) / (len(theirs) / t_dt):.2f}x (target >= 2x)")
    print(f"correctness: {len(common)} documents in both, identical text {same}/{len(common)} "
          f"({same / max(len(common), 1):.1%}); only llmtool {len(set(ours) - set(theirs))}, "
          f"only datatrove {len(set(theirs) - set(ours))}")


if __name__ == "__main__":
    main()
