"""Summaries of io-level artifacts for `llmtool info`: tables (any format the readers take).

The dispatch on what a path is, and the printing, live with the stage
(`llmtool/stages/info_describe.py`): token files, tokenizers and checkpoints are described
by their own packages, which io must not import.

Values are data, not display strings: numbers stay numbers, so `llmtool info --json` can
be read by programs.
"""

from __future__ import annotations

import os


def describe_table(path: str) -> dict:
    """Rows, columns, size and provenance of a table (Parquet, Arrow stream, JSONL), or `-`."""
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
        except Exception:  # not Parquet: no row groups to show
            pass
    else:
        info["arrow_bytes"] = nbytes
    info["provenance"] = t.provenance
    return info
