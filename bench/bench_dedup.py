"""Benchmark: `llmtool dedup` vs datatrove's 4-stage MinHash pipeline and datasketch's MinHashLSH.

Same documents (../shared/data/dedup/near_dup_corpus.part0.jsonl.gz, 5,503 real web
documents with exact and near copies), same settings (word 5-grams, 112 hashes in
14 bands x 8 rows), 1 worker each; llmtool also with all cores. Prints docs/s, the
ratio, peak memory (RSS of each tool's process tree) and, against the corpus's ground
truth (`base_id`), per perturbation level p the share of copies caught and the precision.

    python bench/bench_dedup.py            # or: make bench / python -m bench dedup
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPUS = DATA / "dedup" / "near_dup_corpus.part0.jsonl.gz"


# ---------------------------------------------------------------- one tool per subprocess


def run_llmtool(work: Path, workers: int, extra: list[str]) -> tuple[set[str], dict]:
    out, clusters = work / "out.parquet", work / "clusters.parquet"
    cmd = [sys.executable, "-m", "llmtool", "dedup", str(CORPUS), "-o", str(out), "--clusters", str(clusters),
           "-w", str(workers), "--force", "-q", *extra]
    subprocess.run(cmd, check=True, cwd=ROOT)
    import pyarrow.parquet as pq

    rows = pq.read_table(clusters, columns=["id", "kept", "cluster_id", "cluster_size"]).to_pylist()
    return ({r["id"] for r in rows if not r["kept"]},
            {r["id"]: r["cluster_id"] for r in rows if r["cluster_size"] > 1})


def run_datatrove(work: Path) -> tuple[set[str], dict]:
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashes import xxhash as dt_xxhash

    # datatrove 0.10.1 passes str to xxhash, which xxhash >= 4 refuses ("Strings must be
    # encoded"); xxhash 3 encoded str as UTF-8 itself, so this shim restores that behaviour.
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)  # FineWeb's settings
    reader = JsonlReader(str(CORPUS.parent), glob_pattern=CORPUS.name, id_key="id")
    stages = [
        [reader, MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
        [MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)],
        [MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg,
                             save_cluster_id=True)],
        [JsonlReader(str(CORPUS.parent), glob_pattern=CORPUS.name, id_key="id"),
         MinhashDedupFilter(input_folder=str(work / "remove"), load_cluster_ids=True,
                            exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
         JsonlWriter(str(work / "kept"), compression=None)],
    ]
    # stage 2 runs one task per bucket (datatrove requires it), one after another (1 worker)
    for i, (pipeline, tasks) in enumerate(zip(stages, [1, cfg.num_buckets, 1, 1], strict=True)):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}"),
                              skip_completed=False).run()
    removed, cluster = set(), {}
    for folder in ("removed", "kept"):
        for f in (work / folder).glob("*.jsonl"):
            for line in f.open():
                doc = json.loads(line)
                if folder == "removed":
                    removed.add(doc["id"])
                cid = doc.get("metadata", {}).get("minhash_cluster_id", -1)
                if cid != -1:
                    cluster[doc["id"]] = cid
    return removed, cluster


def run_datasketch(work: Path) -> tuple[set[str], dict]:
    """MinHashLSH the usual way: query each document, drop it if it has a match, else insert."""
    from datasketch import MinHash, MinHashLSH

    from llmtool.data.dedup.normalise import normalise

    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    removed, cluster = set(), {}
    with gzip.open(CORPUS, "rt") as fh:
        for line in fh:
            doc = json.loads(line)
            words = normalise(doc["text"]).split()
            shingles = {" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))} if words else set()
            m = MinHash(num_perm=112, seed=1)
            m.update_batch([s.encode() for s in shingles])
            found = lsh.query(m)
            if found:
                removed.add(doc["id"])
                first = min(found)  # a kept document: its own cluster key
                cluster[doc["id"]] = cluster.setdefault(first, first)
            else:
                lsh.insert(doc["id"], m)
    return removed, cluster


def child(tool: str, work: str, workers: int, extra: list[str]) -> None:
    """Run one tool in this (fresh) process and print its time, peak RSS and removed ids."""
    t0 = time.perf_counter()
    w = Path(work)
    if tool == "llmtool":
        removed, cluster = run_llmtool(w, workers, extra)
    elif tool == "datatrove":
        removed, cluster = run_datatrove(w)
    else:
        removed, cluster = run_datasketch(w)
    seconds = time.perf_counter() - t0
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"seconds": seconds, "rss_mb": rss / 1024, "removed": sorted(removed),
                      "cluster": cluster}, default=str))


def measure(tool: str, workers: int = 1, extra: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-dedup-{tool}-") as work:
        p = subprocess.run([sys.executable, __file__, "--child", tool, work, str(workers), *(extra or [])],
                           capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- quality


def quality(rows: list[dict], removed: set[str], cluster: dict) -> tuple[float, dict]:
    """Precision and, per perturbation level p, the share of copies caught.

    Precision: a removed document must leave a kept document with its base_id.
    Recall counts the groups whose original text (kind orig or exact) is in this part of
    the corpus (the others' originals are elsewhere): every member but the first such
    reference is a copy, caught when the tool put it in one cluster with another member
    of its group (which of the two it keeps is its survivor rule, not a miss).
    """
    groups = collections.defaultdict(list)
    for r in rows:
        groups[r["base_id"]].append(r)
    kept_bases = collections.Counter(r["base_id"] for r in rows if r["id"] not in removed)
    rem = [r for r in rows if r["id"] in removed]
    precision = sum(kept_bases[r["base_id"]] > 0 for r in rem) / max(1, len(rem))
    caught = collections.defaultdict(lambda: [0, 0])
    for members in groups.values():
        refs = [r for r in members if r["kind"] in ("orig", "exact")]
        if not refs:
            continue
        for r in members:
            if r is refs[0]:
                continue
            c = caught[r["p"]]
            c[1] += 1
            mine = cluster.get(r["id"])
            c[0] += mine is not None and any(cluster.get(o["id"]) == mine for o in members if o is not r)
    return precision, {p: a / b for p, (a, b) in sorted(caught.items())}


def main() -> int:
    if not CORPUS.exists():
        print(f"bench_dedup: {CORPUS} not found; skipping")
        return 0
    with gzip.open(CORPUS, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    n = len(rows)
    mb = sum(len(r["text"].encode()) for r in rows) / 1e6
    ncores = len(os.sched_getaffinity(0))
    print(f"corpus: {n} docs, {mb:.1f} MB of text; settings: 5-grams, 112 hashes, 14 bands x 8 rows; "
          f"{ncores} cores", flush=True)
    runs = [
        ("llmtool dedup -w 1", "llmtool", 1, []),
        (f"llmtool dedup -w {ncores}", "llmtool", ncores, []),
        ("datatrove 4-stage MinHash, 1 worker", "datatrove", 1, []),
        ("datasketch MinHashLSH (query+insert)", "datasketch", 1, []),
        ("llmtool --bands 37 --rows 3 --verify-jaccard 0.45 -w 1", "llmtool", 1,
         ["--bands", "37", "--rows", "3", "--verify-jaccard", "0.45"]),
    ]
    results = {}
    for label, tool, workers, extra in runs:
        r = measure(tool, workers, extra)
        results[label] = r
        prec, rec = quality(rows, set(r["removed"]), r["cluster"])
        print(f"{label:58s} {r['seconds']:7.2f} s {n / r['seconds']:8.0f} docs/s  peak RSS {r['rss_mb']:6.0f} MB"
              f"  removed {len(r['removed'])}", flush=True)
        print(f"{'':58s} precision {prec:.4f}; share of copies removed by p: "
              + " ".join(f"{p:g}:{v:.3f}" for p, v in rec.items()), flush=True)
    base = results["llmtool dedup -w 1"]
    dt = results["datatrove 4-stage MinHash, 1 worker"]
    ds = results["datasketch MinHashLSH (query+insert)"]
    allc = results[f"llmtool dedup -w {ncores}"]
    print(f"\nspeed-up vs datatrove (1 worker each): {dt['seconds'] / base['seconds']:.1f}x; "
          f"llmtool on {ncores} cores: {dt['seconds'] / allc['seconds']:.1f}x")
    print(f"speed-up vs datasketch MinHashLSH: {ds['seconds'] / base['seconds']:.1f}x")
    a, b = set(base["removed"]), set(dt["removed"])
    print(f"agreement with datatrove's removals: {len(a & b)} common, {len(a - b)} only llmtool, "
          f"{len(b - a)} only datatrove (Jaccard {len(a & b) / max(1, len(a | b)):.3f})")
    # which document of a cluster survives differs (datatrove's union-find root depends on
    # the pair order), so also compare the documents each tool found to have a duplicate
    a, b = set(base["cluster"]), set(dt["cluster"])
    print(f"agreement on documents found to have a duplicate: {len(a & b)} common, {len(a - b)} only llmtool, "
          f"{len(b - a)} only datatrove (Jaccard {len(a & b) / max(1, len(a | b)):.3f}); "
          "the rest are pairs near the LSH threshold, where each tool's own hash functions decide")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
        sys.exit(0)
    sys.exit(main())
