"""Scale benchmark: `llmtool dedup` on generated ~4 KB documents (1M by default).

Documents are built from real sentences (the public-domain books in ../shared/data/text
and the Common Crawl documents of the near-duplicate corpus): each "original" is ~32
sentences drawn at random, so two originals share almost no 5-gram; 30% of the documents
are copies of an earlier one, exact or with p = 1%, 3%, 5% or 10% of the words replaced
or deleted. Reports the generation time, then llmtool's wall time, docs/s and peak RSS
(the whole process tree), and the share of planted copies removed per p.

    python bench/bench_dedup_scale.py               # 1,000,000 docs (long: ~15-30 min on 2 cores)
    python bench/bench_dedup_scale.py --docs 100000 --workers 2 --keep-files
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
LEVELS = [0.0, 0.01, 0.03, 0.05, 0.1]


def sentences() -> list[str]:
    """Real sentences of 8-60 words."""
    texts = [p.read_text(errors="replace") for p in sorted((DATA / "text").glob("*.txt"))]
    corpus = DATA / "dedup" / "near_dup_corpus.part0.jsonl.gz"
    if corpus.exists():
        with gzip.open(corpus, "rt") as fh:
            texts += [r["text"] for r in map(json.loads, fh) if r["kind"] == "orig"]
    out = []
    for t in texts:
        for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split())):
            if 8 <= s.count(" ") + 1 <= 60:
                out.append(s)
    return sorted(set(out))


def perturb(text: str, p: float, rng: np.random.Generator, vocab: list[str]) -> str:
    if p == 0:
        return text
    words = text.split(" ")
    hit = np.flatnonzero(rng.random(len(words)) < p)
    delete = rng.random(hit.size) < 0.5
    for i, d in zip(hit.tolist(), delete.tolist(), strict=True):
        words[i] = "" if d else vocab[int(rng.integers(len(vocab)))]
    return " ".join(w for w in words if w)


def generate(path: Path, n: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """Write n documents to a Parquet file; returns (p per doc or -1 for originals, source row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    sents = sentences()
    vocab = sorted({w for s in sents[:20000] for w in s.split(" ")})
    level = np.full(n, -1.0)
    source = np.full(n, -1, dtype=np.int64)
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("copy_of", pa.int64()), ("p", pa.float64())])
    recent: list[str] = []  # originals that copies are drawn from (a sliding pool)
    recent_ids: list[int] = []
    chunk = 10_000
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            ids, texts = [], []
            picks = rng.integers(0, len(sents), size=(m, 32))
            for j in range(m):
                i = start + j
                if recent and rng.random() < 0.3:
                    k = int(rng.integers(len(recent)))
                    p = LEVELS[int(rng.integers(len(LEVELS)))]
                    text = perturb(recent[k], p, rng, vocab)
                    level[i], source[i] = p, recent_ids[k]
                else:
                    text = " ".join(sents[s] for s in picks[j])
                    recent.append(text)
                    recent_ids.append(i)
                    if len(recent) > 5000:
                        recent.pop(0)
                        recent_ids.pop(0)
                ids.append(f"gen-{i}")
                texts.append(text)
            w.write_table(pa.table({"id": ids, "text": texts, "copy_of": source[start:start + m],
                                    "p": level[start:start + m]}, schema=schema), row_group_size=5000)
    return level.tolist(), source.tolist()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000, help="documents to generate (default 1M)")
    ap.add_argument("--workers", type=int, default=None, help="llmtool --workers (default: all cores)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temp folder, removed after)")
    ap.add_argument("--keep-files", action="store_true", help="keep the generated input and output")
    args = ap.parse_args()
    if not (DATA / "text").exists():
        print(f"bench_dedup_scale: {DATA / 'text'} not found; skipping")
        return 0
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-dedup-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    src, out, clusters = work / "gen.parquet", work / "gen.dedup.parquet", work / "clusters.parquet"
    try:
        t0 = time.perf_counter()
        level, source = generate(src, args.docs)
        gen_s = time.perf_counter() - t0
        size = src.stat().st_size
        import pyarrow.parquet as pq

        text_mb = sum(pq.ParquetFile(src).metadata.row_group(i).column(1).total_uncompressed_size
                      for i in range(pq.ParquetFile(src).metadata.num_row_groups)) / 1e6
        print(f"generated {args.docs} docs ({text_mb / args.docs * 1e3:.1f} KB of text each, "
              f"{size / 1e6:.0f} MB Parquet) in {gen_s:.0f}s", flush=True)
        cmd = [sys.executable, "-m", "llmtool", "dedup", str(src), "-o", str(out), "--clusters", str(clusters),
               "--tmp-dir", str(work), "--force", "--json"]
        if args.workers:
            cmd += ["-w", str(args.workers)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if p.returncode != 0:
            print(p.stderr[-3000:])
            return 1
        summary = json.loads(p.stdout)
        print(f"llmtool dedup: {seconds:.0f}s wall, {args.docs / seconds:.0f} docs/s, peak RSS {rss:.0f} MB "
              f"(largest process), docs out {summary['docs_out']} of {summary['docs_in']} "
              f"(exact {summary['exact_dups']}, near {summary['near_dups']})", flush=True)
        kept = pq.read_table(clusters, columns=["kept"]).column("kept").to_numpy(zero_copy_only=False)
        level_a = np.array(level)
        parts = []
        for lv in LEVELS:
            sel = level_a == lv
            parts.append(f"{lv:g}:{(~kept[sel]).mean():.3f}" if sel.any() else f"{lv:g}:-")
        originals = level_a < 0
        print("share of planted copies removed by p: " + " ".join(parts)
              + f"; originals removed: {(~kept[originals]).mean():.4f}")
    finally:
        if not args.keep_files and not args.dir:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
