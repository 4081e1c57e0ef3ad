"""One invocation of a stage: output naming, provenance, the up-to-date check and the summary.

A stage reads like a recipe:

    run = StageRun("filter", version=1, params={...}, inputs=[src], output=o, opts=opts)
    if run.up_to_date():
        return
    with TableWriter(run.output, run.provenance) as w:
        ...
    run.summary(docs_in=n, docs_out=m)

    >>> strip_suffix("crawl.warc.gz")
    'crawl'
    >>> parse_shard("3/8")
    (3, 8)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llmtool.errors import UsageError
from llmtool.io.console import log, set_logging


@dataclass
class Opts:
    """The common options, bundled so they pass through to StageRun in one piece."""

    force: bool = False
    json: bool = False
    quiet: bool = False
    verbose: bool = False


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N); None -> (0, 1)."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard {shard!r}: expected I/N, e.g. 0/8")
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {shard!r}: need 0 <= I < N")
    return i, n


def default_workers(workers: int | None) -> int:
    if workers is not None:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_KNOWN_SUFFIXES = (".warc.wet.gz", ".warc.wat.gz", ".warc.gz", ".warc", ".wet.gz", ".wet", ".arc.gz",
                   ".arc", ".jsonl.gz", ".jsonl", ".json.gz", ".json", ".parquet", ".arrow",
                   ".txt.gz", ".txt", ".html.gz", ".html", ".htm", ".bin", ".gz")


def strip_suffix(name: str) -> str:
    for suf in _KNOWN_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return Path(name).stem if "." in name else name


def default_output(inputs: list[str], stage: str, ext: str = ".parquet") -> str:
    """gzip-style: raw.parquet -> raw.STAGE.parquet beside it; stdin or a piped stdout -> '-'."""
    from llmtool.io.tables import stdout_is_pipe

    if not inputs or inputs[0] == "-" or stdout_is_pipe():
        return "-"
    first = inputs[0]
    if "://" in first or first.startswith("@"):
        base = strip_suffix(first.rstrip("/").rsplit("/", 1)[-1].lstrip("@")) or stage
        return f"{base}.{stage}{ext}"
    p = Path(first)
    name = f"{strip_suffix(p.name)}.{stage}{ext}"
    folder = p.parent if os.access(p.parent, os.W_OK) else Path(".")
    return str(folder / name)


# ---------------------------------------------------------------- the run


class StageRun:
    """One invocation of a stage: output naming, provenance, up-to-date check, summary."""

    def __init__(self, stage: str, version: int, params: dict, inputs: list[str], output: str | None,
                 opts: Opts, ext: str = ".parquet", binary_output: bool = True):
        from llmtool.io import provenance as prov

        set_logging(stage, opts.quiet, opts.verbose)
        self.stage = stage
        self.opts = opts
        self.t0 = time.perf_counter()
        self.output = output if output is not None else default_output(inputs, stage, ext)
        if opts.json and self.output == "-":
            raise UsageError("--json prints the summary on stdout, so the data needs -o FILE")
        if binary_output and self.output == "-" and sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal: pipe it on or pass -o FILE")
        self.inputs = inputs
        records = [prov.input_record(i) for i in inputs]
        self.provenance = prov.strip_nested(prov.make(stage, version, params, records))

    @property
    def key(self) -> str | None:
        return self.provenance["key"]

    def up_to_date(self) -> bool:
        """True (and says so) when the output exists with the same provenance key."""
        from llmtool.io.provenance import read_provenance

        if self.opts.force or self.output == "-" or self.key is None or not os.path.exists(self.output):
            return False
        old = read_provenance(self.output)
        if old and old.get("key") == self.key:
            if self.opts.json:
                print(json.dumps({"stage": self.stage, "output": self.output, "up_to_date": True}))
            else:
                log(f"{self.output} is up to date (use --force to rebuild)")
            return True
        return False

    def summary(self, **fields) -> dict:
        """The one-line summary on stderr, or a JSON object on stdout with --json."""
        seconds = time.perf_counter() - self.t0
        data = {"stage": self.stage, "output": self.output, "seconds": round(seconds, 3), **fields}
        if self.opts.json:
            print(json.dumps(data, default=str))
        else:
            parts = []
            for k, v in fields.items():
                if isinstance(v, dict):
                    if v:
                        parts.append(f"{k}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items()))
                elif isinstance(v, float):
                    parts.append(f"{k.replace('_', ' ')} {v:.4g}")
                else:
                    parts.append(f"{k.replace('_', ' ')} {v}")
            dest = "stdout" if self.output == "-" else self.output
            log(f"{'; '.join(parts)} -> {dest} ({seconds:.1f}s)")
        return data
