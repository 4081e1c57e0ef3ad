"""The typer option types every stage shares (the run-time services live in llmtool.io.run
and llmtool.io.console, below every layer that needs them)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# ---------------------------------------------------------------- shared options

OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="Output path, or - for stdout. Default: stdout when it is a pipe, "
    "else INPUT.STAGE.parquet beside the input.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even if the output is up to date.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout (needs -o FILE).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-w", min=1,
                                                   help="Worker processes (default: all cores).")]
ShardOpt = Annotated[Optional[str], typer.Option(
    "--shard", help="I/N: process only shard I (0-based) of N, for cluster job arrays.")]
