"""Many fetch sources into one stream of record batches, in source order, in parallel.

    >>> from collections import Counter
    >>> cfg = {"cache_dir": "/tmp/cache", "sha256": None, "retries": 5, "timeout": 30.0}
    >>> failed = []
    >>> for batch in read_sources(["a.warc.gz", "b.warc.gz"], cfg, 2, Counter(), failed):  # doctest: +SKIP
    ...     writer.write(batch)

With several workers each reads whole sources into a temporary Arrow file in a scratch
folder; the batches are yielded in source order, so the output is the same for any worker
count. The workers are spawned, not forked: they run pyarrow (and HTTP downloads), whose
thread pools and allocator are not safe to use in a child forked from a parent that has
used them, and the parent has (it is writing the output).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from llmtool.data.fetch import SCHEMA, documents_of
from llmtool.data.http import download
from llmtool.data.sources import is_url
from llmtool.errors import LlmtoolError
from llmtool.io.console import debug, warn

BATCH = 1000


def localize(source: str, cfg: dict) -> str:
    """A local path for the source: itself, or its download in the cache."""
    if not is_url(source):
        return source
    return str(download(source, Path(cfg["cache_dir"]), sha256=cfg["sha256"], retries=cfg["retries"],
                        timeout=cfg["timeout"], log=cfg.get("log", lambda m: None)))


def iter_batches(source: str, cfg: dict, stats: Counter, limit: int | None) -> Iterator[pa.RecordBatch]:
    """The documents of one source, BATCH rows at a time, at most `limit` in all."""
    path = localize(source, cfg)
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


def _read_to_file(job: tuple[str, dict, str, int | None]) -> tuple[str | None, Counter, str | None]:
    """In a worker: one source into an Arrow file; its error comes back as text, so that
    the other sources go on."""
    import pyarrow.ipc as ipc

    source, cfg, tmp_path, limit = job
    stats: Counter = Counter()
    try:
        with pa.OSFile(tmp_path, "wb") as sink, ipc.new_file(sink, SCHEMA) as w:
            for batch in iter_batches(source, cfg, stats, limit):
                w.write_batch(batch)
        return tmp_path, stats, None
    except LlmtoolError as e:
        return None, stats, str(e)


def read_sources(sources: list[str], cfg: dict, workers: int, stats: Counter, failed: list[str],
                 limit: int | None = None) -> Iterator[pa.RecordBatch]:
    """The documents of all sources in order, at most `limit`. A source that fails is
    skipped with a warning and appended to `failed`; a single source's error is raised.
    Close the iterator when stopping early (contextlib.closing): that stops the workers."""
    workers = min(workers, len(sources))
    if workers <= 1:
        yield from _read_serial(sources, {**cfg, "log": warn}, stats, failed, limit)
    else:
        yield from _read_parallel(sources, cfg, workers, stats, failed, limit)


def _read_serial(sources, cfg, stats, failed, remaining) -> Iterator[pa.RecordBatch]:
    for source in sources:
        try:
            for batch in iter_batches(source, cfg, stats, remaining):
                yield batch
                if remaining is not None:
                    remaining -= batch.num_rows
        except LlmtoolError as e:
            if len(sources) == 1:
                raise
            failed.append(source)
            warn(f"skipping source: {e}")
        if remaining is not None and remaining <= 0:
            return


def _read_parallel(sources, cfg, workers, stats, failed, remaining) -> Iterator[pa.RecordBatch]:
    import pyarrow.ipc as ipc

    from llmtool.io.atomic import scratch_dir
    from llmtool.io.pool import WorkerPool

    scratch = scratch_dir("fetch")
    try:
        jobs = ((s, cfg, str(scratch / f"{i}.arrow"), remaining) for i, s in enumerate(sources))
        # depth 1: a source is a long task, none should wait behind another while a worker idles;
        # window 2 x workers bounds the finished files waiting on disk for their turn
        with WorkerPool(_read_to_file, workers, start="spawn", depth=1, window=2 * workers) as pool:
            for source, (path, st, err) in zip(sources, pool.map(jobs)):
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
                        yield batch
                os.unlink(path)
                if remaining is not None and remaining <= 0:
                    pool.kill()  # the limit is reached: the other sources are not needed
                    break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    debug(f"read {len(sources)} sources with {workers} workers")
