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
    from llmtool.data.fetch_run import fetch

    fetch(sources, output, limit=limit, base_url=base_url, sha256=sha256, cache_dir=cache_dir,
          retries=retries, timeout=timeout, workers=workers, shard=shard,
          opts=Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose),
          stage_version=STAGE_VERSION)
