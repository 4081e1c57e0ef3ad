"""The fetch stage's recipe: resolve sources, read them (in a process pool), write one table.

Workers each read whole sources into temporary Arrow files; the parent concatenates them
in source order, so the output is identical for any worker count.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa

from llmtool.data.fetch import SCHEMA, documents_of
from llmtool.data.http import default_cache_dir, download
from llmtool.data.sources import expand_sources, is_url
from llmtool.errors import BadInputError, LlmtoolError, UsageError
from llmtool.io.console import Progress, log, warn
from llmtool.io.run import Opts, StageRun, default_workers, parse_shard
from llmtool.io.tables import TableWriter

BATCH = 1000


def _localize(source: str, cfg: dict) -> str:
    if not is_url(source):
        return source
    return str(download(source, Path(cfg["cache_dir"]), sha256=cfg["sha256"], retries=cfg["retries"],
                        timeout=cfg["timeout"], log=cfg.get("log", lambda m: None)))


def _iter_batches(source: str, cfg: dict, stats: Counter, limit: int | None):
    path = _localize(source, cfg)
    rows: list[dict] = []
    n = 0
    for doc in documents_of(path, stats, source=source):
        rows.append(doc)
        n += 1
        if len(rows) >= BATCH:
            yield pa.RecordBatch.from_pylist(rows, schema=SCHEMA)
            rows = []
        if limit is not None and n >= limit:
            break
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=SCHEMA)


def _worker(job: tuple[str, dict, str, int | None]) -> tuple[str | None, Counter, str | None]:
    """Read one source into a temporary Arrow file; errors come back as text, not exceptions."""
    import pyarrow.ipc as ipc

    source, cfg, tmp_path, limit = job
    stats: Counter = Counter()
    try:
        with pa.OSFile(tmp_path, "wb") as sink, ipc.new_file(sink, SCHEMA) as w:
            for batch in _iter_batches(source, cfg, stats, limit):
                w.write_batch(batch)
        return tmp_path, stats, None
    except LlmtoolError as e:
        return None, stats, str(e)


def fetch(sources: list[str], output: str | None, *, limit: int | None, base_url: str | None,
          sha256: str | None, cache_dir: str | None, retries: int, timeout: float,
          workers: int | None, shard: str | None, opts: Opts, stage_version: int) -> None:
    shard_i, shard_n = parse_shard(shard)
    resolved = expand_sources(sources, base_url)[shard_i::shard_n]
    if sha256 and len(resolved) != 1:
        raise UsageError("--sha256 checks a single source; pass one URL")
    params = {"limit": limit, "shard": f"{shard_i}/{shard_n}", "base_url": base_url}
    run = StageRun("fetch", stage_version, params, resolved, output, opts)
    if run.up_to_date():
        return
    cfg = {"cache_dir": str(cache_dir or default_cache_dir()), "sha256": sha256, "retries": retries,
           "timeout": timeout}
    stats: Counter = Counter()
    failed: list[str] = []
    n_workers = min(default_workers(workers), len(resolved))
    with TableWriter(run.output, run.provenance, schema=SCHEMA) as writer, \
            Progress("fetch", total=limit, unit="docs") as progress:
        writer.on_write = progress.advance
        remaining = limit
        if n_workers <= 1:
            cfg["log"] = warn
            for source in resolved:
                try:
                    for batch in _iter_batches(source, cfg, stats, remaining):
                        writer.write(batch)
                        if remaining is not None:
                            remaining -= batch.num_rows
                except LlmtoolError as e:
                    if len(resolved) == 1:
                        raise
                    failed.append(source)
                    warn(f"skipping source: {e}")
                if remaining is not None and remaining <= 0:
                    break
        else:
            _fetch_parallel(resolved, cfg, n_workers, writer, stats, failed, remaining)
    if failed and len(failed) == len(resolved):
        raise BadInputError(f"all {len(failed)} sources failed (first: {failed[0]})")
    skipped = {k: v for k, v in sorted(stats.items()) if not k.startswith("files:")}
    run.summary(documents=writer.rows, sources=len(resolved), failed_sources=len(failed), skipped=skipped)


def _fetch_parallel(resolved, cfg, n_workers, writer, stats, failed, remaining) -> None:
    import pyarrow.ipc as ipc

    tmpdir = tempfile.mkdtemp(prefix="llmtool-fetch-")
    try:
        jobs = [(s, cfg, os.path.join(tmpdir, f"{i}.arrow"), remaining) for i, s in enumerate(resolved)]
        with get_context("spawn").Pool(n_workers) as pool:
            for (source, *_), (path, st, err) in zip(jobs, pool.imap(_worker, jobs)):
                stats.update(st)
                if err:
                    failed.append(source)
                    warn(f"skipping source: {err}")
                    continue
                with pa.memory_map(path) as src:
                    reader = ipc.open_file(src)
                    for i in range(reader.num_record_batches):
                        batch = reader.get_batch(i)
                        if remaining is not None:
                            batch = batch.slice(0, max(remaining, 0))
                            remaining -= batch.num_rows
                        writer.write(batch)
                os.unlink(path)
                if remaining is not None and remaining <= 0:
                    pool.terminate()
                    break
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    log(f"read {len(resolved)} sources with {n_workers} workers", level=2)
