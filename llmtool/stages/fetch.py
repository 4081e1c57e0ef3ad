"""`llmtool fetch`: raw web data and local files → a document table.

    llmtool fetch crawl.warc.gz -o pages.parquet
    llmtool fetch crawl.warc.gz | llmtool info -
    llmtool fetch https://data.commoncrawl.org/crawl-data/.../x.warc.gz --sha256 HEX
    llmtool fetch warc.paths.gz --shard 3/100 -o shard3.parquet
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.io.run import Opts
from llmtool.stages.common import (
    ForceOpt,
    JsonOpt,
    OutputOpt,
    QuietOpt,
    ShardOpt,
    VerboseOpt,
    WorkersOpt,
)

STAGE_VERSION = 1


def run(
    sources: Annotated[list[str], typer.Argument(
        help="Files, folders, globs, http(s) URLs, hf://datasets/... paths, @LIST files, or *.paths.gz.")],
    output: OutputOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Stop after N documents.")] = None,
    base_url: Annotated[Optional[str], typer.Option(
        "--base-url", help="Prefix for the relative paths of a *.paths(.gz) list (default: Common Crawl).")] = None,
    sha256: Annotated[Optional[str], typer.Option("--sha256", help="Expected SHA-256 of a single downloaded source.")] = None,
    cache_dir: Annotated[Optional[str], typer.Option(
        "--cache-dir", help="Where downloads go (default: $LLMTOOL_CACHE or ~/.cache/llmtool/downloads).")] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries per download (exponential backoff).")] = 5,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds without data before a download attempt fails.")] = 30.0,
    workers: WorkersOpt = None,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Turn WARC/WET/ARC archives, web pages, text, JSONL and Parquet into a document table.

    Columns: id, url, date, dump, content_type, text (the decoded payload: HTML stays HTML),
    source, metadata (JSON). Malformed records are skipped and counted by reason.

    Examples:

      llmtool fetch crawl.warc.gz -o pages.parquet

      llmtool fetch crawl.warc.gz | llmtool filter - -o clean.parquet

      llmtool fetch warc.paths.gz --shard 0/64 --workers 8 -o part0.parquet
    """
    import contextlib
    from collections import Counter

    from llmtool.data.fetch import SCHEMA
    from llmtool.data.fetch_many import read_sources
    from llmtool.data.http import default_cache_dir
    from llmtool.data.sources import expand_sources
    from llmtool.errors import BadInputError, UsageError
    from llmtool.io.console import Progress
    from llmtool.io.pool import default_workers
    from llmtool.io.run import StageRun, parse_shard
    from llmtool.io.tables import TableWriter

    shard_i, shard_n = parse_shard(shard)
    resolved = expand_sources(sources, base_url)[shard_i::shard_n]
    if sha256 and len(resolved) != 1:
        raise UsageError("--sha256 checks a single source; pass one URL")
    params = {"limit": limit, "shard": f"{shard_i}/{shard_n}", "base_url": base_url}
    run_ = StageRun("fetch", STAGE_VERSION, params, resolved, output,
                    Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose))
    if run_.up_to_date():
        return
    cfg = {"cache_dir": str(cache_dir or default_cache_dir()), "sha256": sha256, "retries": retries,
           "timeout": timeout}
    stats: Counter = Counter()
    failed: list[str] = []
    with TableWriter(run_.output, run_.provenance, schema=SCHEMA) as writer, \
            Progress("fetch", total=limit, unit="docs") as progress, \
            contextlib.closing(read_sources(resolved, cfg, default_workers(workers), stats, failed,
                                            limit)) as batches:
        writer.on_write = progress.advance
        for batch in batches:
            writer.write(batch)
        if failed and len(failed) == len(resolved):
            # raised inside the writer, so an older output stays untouched (and a pipe gets no end marker)
            raise BadInputError(f"all {len(failed)} sources failed (first: {failed[0]})")
    skipped = {k: v for k, v in sorted(stats.items()) if not k.startswith("files:")}
    run_.summary(documents=writer.rows, sources=len(resolved), failed_sources=len(failed), skipped=skipped)
