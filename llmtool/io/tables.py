"""Document tables: Parquet on disk, Arrow IPC streams on pipes, JSONL and text as input.

Readers sniff the first bytes, so every stage accepts any of them, from a file or `-`:

    >>> from llmtool.io.tables import open_table, TableWriter
    >>> t = open_table("docs.parquet")                 # doctest: +SKIP
    >>> for batch in t.batches(): ...                  # doctest: +SKIP

A stream written by TableWriter ends with an empty batch whose metadata says `end` and
the row count; a reader that reaches the end of a stream without it raises BadInputError
(exit 3), so a crashed upstream stage never passes for a short but valid table.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from llmtool.errors import BadInputError, UsageError
from llmtool.io.atomic import atomic_path
from llmtool.io.provenance import PARQUET_KEY, remember_stdin, with_stdin_lineage

# pyarrow's own SIGINT handler, installed around some reads and writes, can swallow a
# Ctrl-C; Python's handler raises KeyboardInterrupt, which our atomic writers clean up after.
pa.enable_signal_handlers(False)


def _prefer_jemalloc() -> None:
    """Use Arrow's jemalloc pool where the wheel has one, unless the user chose a pool.

    Reading 500 pages of raw HTML (a 77 MB row group) peaked at 513 MB with the default
    mimalloc and 334 MB with jemalloc, and its page faults cost 0.2-0.8 s of system time
    against a steady 0.2 s (docs/filter.md)."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, AttributeError, pa.ArrowException):  # e.g. Windows wheels
        pass


_prefer_jemalloc()

END_KEY = b"llmtool.end"
ROW_GROUP_ROWS = 5000
BATCH_ROWS = 1000
IPC_MAGIC = b"\xff\xff\xff\xff"


# ---------------------------------------------------------------- input discovery


def expand_inputs(sources: list[str], patterns: tuple[str, ...] = ("*.parquet",)) -> list[str]:
    """Files behind the arguments: paths, folders (their files matching `patterns`), globs."""
    out: list[str] = []
    for s in sources:
        if s == "-" or "://" in s or s.startswith("@"):
            out.append(s)
        elif os.path.isdir(s):
            found = sorted({str(p) for pat in patterns for p in Path(s).rglob(pat) if p.is_file()})
            if not found:
                raise BadInputError(f"{s}: folder holds no input files ({', '.join(patterns)})")
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = sorted(glob.glob(s, recursive=True))
            if not found:
                raise BadInputError(f"{s}: no file matches this pattern")
            out.extend(found)
        elif not os.path.exists(s):
            raise BadInputError(f"{s}: no such file")
        else:
            out.append(s)
    return out


# ---------------------------------------------------------------- reading


class Table:
    """One input table: its schema, provenance and a single pass over its batches."""

    def __init__(self, name: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                 num_rows: int | None = None):
        self.name = name
        self.schema = schema
        self._batches = batches
        self.num_rows = num_rows

    @property
    def provenance(self) -> dict | None:
        meta = self.schema.metadata or {}
        return json.loads(meta[PARQUET_KEY]) if PARQUET_KEY in meta else None

    def batches(self) -> Iterator[pa.RecordBatch]:
        return self._batches

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self._batches), schema=self.schema)


def _stdin_stream() -> io.BufferedReader:
    return sys.stdin.buffer


def open_table(source: str, columns: list[str] | None = None, require: tuple[str, ...] = ("text",)) -> Table:
    """Open a table by sniffing its bytes: Parquet, Arrow IPC stream, JSONL(.gz) or text."""
    name = "stdin" if source == "-" else source
    if source == "-":
        if sys.stdin.isatty():
            raise UsageError("input '-' is a terminal: pipe a table in, or name a file")
        fh = _stdin_stream()
    else:
        try:
            fh = open(source, "rb")
        except FileNotFoundError:
            raise BadInputError(f"{source}: no such file")
        except IsADirectoryError:
            raise BadInputError(f"{source}: is a folder (name its files, or a glob)")
        except PermissionError:
            raise BadInputError(f"{source}: permission denied")
    head = fh.peek(8)[:8] if hasattr(fh, "peek") else b""
    if head[:4] == b"PAR1":
        table = _open_parquet(source, fh, columns)
    elif head[:4] == IPC_MAGIC:
        table = _open_ipc(name, fh)
    elif head[:2] == b"\x1f\x8b":
        table = _open_text_like(name, gzip.GzipFile(fileobj=fh))
    elif not head:
        raise BadInputError(f"{name}: empty input (did the upstream stage fail?)")
    else:
        table = _open_text_like(name, fh)
    if source == "-":
        remember_stdin(table.provenance)
    missing = [c for c in require if c not in table.schema.names]
    if missing:
        raise BadInputError(
            f"{name}: missing column(s) {', '.join(missing)} (has: {', '.join(table.schema.names)})"
        )
    if columns:
        wanted = [c for c in columns if c in table.schema.names]
        table = Table(table.name, _select_schema(table.schema, wanted),
                      (b.select(wanted) for b in table.batches()), table.num_rows)
    return table


def _select_schema(schema: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([schema.field(n) for n in names], metadata=schema.metadata)


def _open_parquet(source: str, fh, columns: list[str] | None) -> Table:
    import pyarrow.parquet as pq

    if source == "-":  # Parquet needs its footer: buffer a piped file in memory
        fh = pa.BufferReader(fh.read())
    try:
        pf = pq.ParquetFile(fh)
    except Exception as e:
        raise BadInputError(f"{source}: not a readable Parquet file ({e}); is it truncated?")
    schema = pf.schema_arrow
    name = "stdin" if source == "-" else source

    def gen():
        try:
            for i in range(pf.num_row_groups):
                # One thread: a warm read of a 77 MB row group took 0.10 s this way and 0.22 s with
                # pyarrow's thread pool on 2 cores; stages parallelise across row groups anyway.
                group = pf.read_row_group(i, columns=columns, use_threads=False)
                yield from group.to_batches(max_chunksize=BATCH_ROWS * 10)
        except OSError as e:
            raise BadInputError(f"{name}: corrupt Parquet data ({e})")

    return Table(name, schema, gen(), pf.metadata.num_rows)


def _open_ipc(name: str, fh) -> Table:
    import pyarrow.ipc as ipc

    try:
        reader = ipc.open_stream(fh)
    except Exception as e:
        raise BadInputError(f"{name}: not a readable Arrow stream ({e})")

    def gen():
        rows = 0
        while True:
            try:
                batch, meta = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                raise BadInputError(
                    f"{name}: stream ended without its end marker after {rows} rows "
                    "(the stage writing it failed or was interrupted)"
                )
            except (pa.ArrowInvalid, OSError) as e:
                raise BadInputError(f"{name}: truncated or corrupt Arrow stream after {rows} rows ({e})")
            if meta is not None and END_KEY in meta:
                expected = int(meta[END_KEY])
                if expected != rows:
                    raise BadInputError(f"{name}: stream says {expected} rows but carried {rows}")
                return
            rows += batch.num_rows
            if batch.num_rows:
                yield batch

    return Table(name, reader.schema, gen())


def _open_text_like(name: str, fh) -> Table:
    """JSONL (first byte `{`) or plain text (the whole input is one document)."""
    try:
        data = fh.read()
    except (OSError, EOFError) as e:
        raise BadInputError(f"{name}: truncated or corrupt gzip data ({e})")
    if b"\x00" in data[:4096]:
        raise BadInputError(f"{name}: binary data of unknown format (not Parquet, an Arrow stream, JSONL or text)")
    text = data.decode("utf-8", errors="replace")
    if text.lstrip()[:1] == "{":
        rows = []
        # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085, \x1c..., which
        # JSON strings may contain raw (real dolma/CC files do)
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInputError(f"{name}:{lineno}: invalid JSON ({e.msg})")
            if not isinstance(row, dict):
                raise BadInputError(f"{name}:{lineno}: expected a JSON object per line")
            rows.append(row)
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise BadInputError(f"{name}: JSONL rows have inconsistent types ({e})")
    else:
        table = pa.table({"text": [text]})
    return Table(name, table.schema, iter(table.to_batches(max_chunksize=BATCH_ROWS)), table.num_rows)


# ---------------------------------------------------------------- writing


def stdout_is_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def refuse_terminal(dest: str) -> None:
    if dest == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write binary data to a terminal: pipe it on or pass -o FILE")


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: all but the document text and binary payloads.
    Every text differs, so a dictionary is built only to be abandoned; without it a table of
    raw HTML pages reads 1.8x faster (0.09 s instead of 0.17 s for 77 MB)."""
    return [f.name for f in schema
            if f.name != "text" and not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type))]


class TableWriter:
    """Write batches to Parquet (atomically) or, for `-`, to an Arrow IPC stream on stdout.

    Use as a context manager: on success the output appears complete (file renamed into
    place, or stream closed with its end marker); on any error nothing is left behind.
    The schema comes from `schema` or from the first batch; later batches are cast to it.
    """

    def __init__(self, dest: str, provenance: dict | None = None, schema: pa.Schema | None = None,
                 row_group_rows: int = ROW_GROUP_ROWS):
        refuse_terminal(dest)
        self.dest = dest
        self.provenance = provenance
        self.schema = self._with_meta(schema) if schema is not None else None
        self.rows = 0
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer = None
        self._atomic = None
        self._tmp: Path | None = None
        self.on_write = None  # called with the row count of each written batch (progress bars)

    def _with_meta(self, schema: pa.Schema) -> pa.Schema:
        meta = {k: v for k, v in (schema.metadata or {}).items() if k != PARQUET_KEY}
        if self.provenance is not None:
            meta[PARQUET_KEY] = json.dumps(self.provenance, default=str).encode()
        return schema.with_metadata(meta)

    def __enter__(self) -> TableWriter:
        if self.dest != "-":
            self._atomic = atomic_path(self.dest)
            self._tmp = self._atomic.__enter__()
        return self

    def _open(self) -> None:
        if self.provenance is not None:  # by now a piped input has shown its own lineage
            self.provenance = with_stdin_lineage(self.provenance)
            self.schema = self._with_meta(self.schema)
        if self.dest == "-":
            import pyarrow.ipc as ipc

            self._writer = ipc.new_stream(sys.stdout.buffer, self.schema)
        else:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(str(self._tmp), self.schema, compression="zstd",
                                            use_dictionary=_dictionary_columns(self.schema))

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        if self.schema is None:
            self.schema = self._with_meta(data.schema)
        if data.schema.remove_metadata() != self.schema.remove_metadata():
            try:
                data = data.select(self.schema.names).cast(self.schema.remove_metadata())
            except (KeyError, pa.ArrowInvalid, ValueError) as e:
                raise BadInputError(f"rows do not match the output schema ({e})")
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for b in batches:
            if b.num_rows:
                self._pending.append(b)
                self._pending_rows += b.num_rows
                if self.on_write is not None:
                    self.on_write(b.num_rows)
        limit = BATCH_ROWS if self.dest == "-" else self._row_group_rows
        if self._pending_rows >= limit:
            self._flush()

    def write_rows(self, rows: list[dict]) -> None:
        if rows:
            schema = self.schema.remove_metadata() if self.schema is not None else None
            self.write(pa.Table.from_pylist(rows, schema=schema))

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._open()
        table = pa.Table.from_batches(self._pending).combine_chunks()
        if self.dest == "-":
            for b in table.to_batches(max_chunksize=BATCH_ROWS):
                self._writer.write_batch(b)
        else:
            self._writer.write_table(table, row_group_size=self._row_group_rows)
        self.rows += table.num_rows
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        if self.schema is None:
            self.schema = self._with_meta(pa.schema([("text", pa.string())]))
        self._flush()
        if self._writer is None:
            self._open()
        if self.dest == "-":
            empty = pa.RecordBatch.from_pylist([], schema=self.schema.remove_metadata())
            self._writer.write_batch(empty, custom_metadata={END_KEY: str(self.rows).encode()})
            self._writer.close()
            sys.stdout.buffer.flush()
        else:
            self._writer.close()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException as e:
                exc_type, exc, tb = type(e), e, e.__traceback__
                if self._atomic is not None:
                    self._atomic.__exit__(exc_type, exc, tb)
                raise
        elif self._writer is not None and self.dest != "-":
            try:
                self._writer.close()
            except Exception:
                pass
        # For a stream, an exception means no end marker: the reader will refuse it.
        if self._atomic is not None:
            self._atomic.__exit__(exc_type, exc, tb)
