"""Summaries of artifacts for `llmtool info`: dispatch on what the path is.

Token files, tokenizers and checkpoints are described by their own packages (each exposes
`describe(path, **opts) -> dict`); tables and generic provenance are handled here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llmtool.errors import BadInputError
from llmtool.io.provenance import lineage


def _table_info(path: str) -> dict:
    from llmtool.io.tables import open_table

    t = open_table(path, require=())
    rows = 0
    nbytes = 0
    if t.num_rows is not None and path != "-":
        rows = t.num_rows
    else:
        for b in t.batches():
            rows += b.num_rows
            nbytes += b.nbytes
    info = {
        "kind": "table",
        "path": "stdin" if path == "-" else path,
        "rows": rows,
        "columns": {f.name: str(f.type) for f in t.schema},
    }
    if path != "-":
        info["size_bytes"] = os.path.getsize(path)
        import pyarrow.parquet as pq

        try:
            info["row_groups"] = pq.ParquetFile(path).num_row_groups
        except Exception:
            pass
    else:
        info["arrow_bytes"] = nbytes
    info["provenance"] = t.provenance
    return info


def describe(path: str, decode: int | None = None) -> dict:
    if path != "-" and not os.path.exists(path):
        raise BadInputError(f"{path}: no such file or folder")
    p = Path(path)
    if path != "-" and p.is_dir():
        if (p / "config.json").exists():
            from llmtool.model import checkpoint

            return checkpoint.describe(path)
        raise BadInputError(f"{path}: a folder that is not an llmtool checkpoint")
    if path != "-":
        with open(path, "rb") as f:
            head = f.read(8)
        from llmtool.io import tokfile

        if head == tokfile.MAGIC:
            from llmtool.tokenizer import info as tok_info

            return tok_info.describe_tokfile(path, decode=decode)
        if head[:1] == b"{" and path.endswith(".json"):
            from llmtool.tokenizer import info as tok_info

            return tok_info.describe_tokenizer(path)
    return _table_info(path)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def render(info: dict) -> None:
    """Print a description for people (stdout)."""
    out = sys.stdout
    prov = info.pop("provenance", None)
    text = info.pop("text", None)
    for k, v in info.items():
        if isinstance(v, dict):
            print(f"{k}:", file=out)
            for kk, vv in v.items():
                print(f"  {kk}: {vv}", file=out)
        elif isinstance(v, list):
            print(f"{k}: {', '.join(map(str, v))}", file=out)
        elif k.endswith("bytes") and isinstance(v, int):
            print(f"{k}: {v} ({_fmt_bytes(v)})", file=out)
        else:
            print(f"{k}: {v}", file=out)
    chain = lineage(prov)
    if chain:
        print("lineage (newest first):", file=out)
        for p in chain:
            params = ", ".join(f"{k}={v}" for k, v in (p.get("params") or {}).items())
            if len(params) > 300:  # the full record is in `llmtool info --json`
                params = params[:297] + "..."
            srcs = ", ".join(i["path"] for i in p.get("inputs", []))
            print(f"  {p.get('stage')} v{p.get('stage_version')} [{p.get('created')}] "
                  f"{p.get('tool')} from {srcs or '-'}" + (f" ({params})" if params else ""), file=out)
    else:
        print("lineage: none recorded (not made by llmtool)", file=out)
    if text:
        print("text:", file=out)
        print(text, file=out)
