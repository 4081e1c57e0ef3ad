"""Document tables: Parquet on disk, Arrow IPC streams on pipes, JSONL and text as input.

Readers sniff the first bytes, so every stage accepts any of them, from a file or `-`:

    >>> from llmtool.io.tables import open_table, TableWriter
    >>> t = open_table("docs.parquet")                 # doctest: +SKIP
    >>> for batch in t.batches(): ...                  # doctest: +SKIP

A stream written by TableWriter ends with an empty batch whose metadata says `end` and
the row count; a reader that reaches the end of a stream without it raises BadInputError
(exit 3), so a crashed upstream stage never passes for a short but valid table. Streams
concatenated end to end (`cat a.arrow b.arrow | llmtool info -`) are read whole, one after
the other, when their columns agree; streams with other columns are refused.

Malformed data never reaches a stage as a Python exception: invalid UTF-8 in a string
column, JSON nested too deeply or with integers beyond 64 bits, a `text` column that is
not text and corrupt provenance metadata are all BadInputError, with a one-line message.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import stat
import sys
import zlib
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
# Parquet readers refuse schemas nested deeper than 100 levels (a list takes two); refusing
# deeper JSON at the door keeps every table a stage writes readable by the next one.
MAX_NESTING = 32
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


def one_line(e: BaseException | str) -> str:
    """An exception's text on one line: pyarrow's messages often span several."""
    return " ".join(str(e).split())


def parse_json_line(line: str | bytes, where: str) -> dict:
    """One JSONL row as a dict, or BadInputError naming `where` (e.g. 'file.jsonl:12')."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{where}: invalid JSON ({e.msg})")
    except RecursionError:  # json gives up near 1,000 levels with Python's own error
        raise BadInputError(f"{where}: JSON nested too deeply")
    except UnicodeDecodeError:
        raise BadInputError(f"{where}: invalid UTF-8")
    if not isinstance(row, dict):
        raise BadInputError(f"{where}: expected a JSON object per line")
    return row


def _too_deep(t: pa.DataType) -> bool:
    """Whether a type nests more than MAX_NESTING levels (iterative: JSON can nest ~1,000)."""
    level = [t]
    for _ in range(MAX_NESTING):
        level = [c.field(i).type for c in level for i in range(c.num_fields)]
        if not level:
            return False
    return True


def _validate(name: str, batch: pa.RecordBatch, where: str) -> pa.RecordBatch:
    """Full validation (UTF-8 of every string, offsets): a flipped byte in a file otherwise
    surfaces as a UnicodeDecodeError deep inside a stage. Costs about 0.08 s per 100 MB."""
    try:
        batch.validate(full=True)
    except pa.ArrowException as e:
        raise BadInputError(f"{name}: corrupt data {where} ({one_line(e)})")
    return batch


def _parse_provenance(name: str, schema: pa.Schema) -> dict | None:
    meta = schema.metadata or {}
    if PARQUET_KEY not in meta:
        return None
    try:
        prov = json.loads(meta[PARQUET_KEY])
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        prov = None
    if not isinstance(prov, dict):
        raise BadInputError(f"{name}: corrupt llmtool provenance in the schema metadata")
    return prov


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
        return _parse_provenance(self.name, self.schema)

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
    prov = table.provenance  # corrupt metadata fails here, before any work
    if source == "-":
        remember_stdin(prov)
    missing = [c for c in require if c not in table.schema.names]
    if missing:
        raise BadInputError(
            f"{name}: missing column(s) {', '.join(missing)} (has: {', '.join(table.schema.names)})"
        )
    if "text" in require:
        _check_text_type(name, table.schema.field("text").type)
    if columns:
        wanted = [c for c in columns if c in table.schema.names]
        table = Table(table.name, _select_schema(table.schema, wanted),
                      (b.select(wanted) for b in table.batches()), table.num_rows)
    return table


def text_column(batch):
    """The text column as Python strings; a binary column is decoded as UTF-8."""
    col = batch.column("text")
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        return [None if v is None else v.decode("utf-8", errors="replace") for v in col.to_pylist()]
    _check_text_type("table", col.type)
    return col.to_pylist()


def _check_text_type(name: str, t: pa.DataType) -> None:
    """Stages treat `text` as str (or bytes they decode); a number there would fail deep inside them."""
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t)):
        raise BadInputError(f"{name}: column 'text' has type {t}, expected strings")


def _select_schema(schema: pa.Schema, names: list[str]) -> pa.Schema:
    return pa.schema([schema.field(n) for n in names], metadata=schema.metadata)


def _open_parquet(source: str, fh, columns: list[str] | None) -> Table:
    import pyarrow.parquet as pq

    if source == "-":  # Parquet needs its footer: buffer a piped file in memory
        fh = pa.BufferReader(fh.read())
    name = "stdin" if source == "-" else source
    try:
        pf = pq.ParquetFile(fh)
        schema = pf.schema_arrow
    except Exception as e:
        raise BadInputError(f"{name}: not a readable Parquet file ({one_line(e)}); is it truncated?")

    def gen():
        for i in range(pf.num_row_groups):
            try:
                # One thread: a warm read of a 77 MB row group took 0.10 s this way and 0.22 s with
                # pyarrow's thread pool on 2 cores; stages parallelise across row groups anyway.
                group = pf.read_row_group(i, columns=columns, use_threads=False)
            except (OSError, pa.ArrowException) as e:
                raise BadInputError(f"{name}: corrupt Parquet data in row group {i} ({one_line(e)})")
            for b in group.to_batches(max_chunksize=BATCH_ROWS * 10):
                yield _validate(name, b, f"in row group {i}")

    return Table(name, schema, gen(), pf.metadata.num_rows)


def _open_ipc(name: str, fh) -> Table:
    """An Arrow IPC stream, or several written one after the other (`cat a.arrow b.arrow`).

    Each stream must end with its end marker. After one, more bytes mean another stream:
    it is read too if its columns are the same, and refused otherwise, so no rows after an
    end marker are ever dropped silently. The schema (and provenance) is the first one's.
    """
    import pyarrow.ipc as ipc

    def open_one(k: int):
        try:
            return ipc.open_stream(fh)
        except Exception as e:
            what = "not a readable Arrow stream" if k == 0 else f"data after stream {k}'s end marker is not an Arrow stream"
            raise BadInputError(f"{name}: {what} ({one_line(e)})")

    reader = open_one(0)
    schema = reader.schema

    def gen():
        nonlocal reader
        k, rows, total = 0, 0, 0
        while True:
            try:
                batch, meta = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                raise BadInputError(
                    f"{name}: stream ended without its end marker after {total + rows} rows "
                    "(the stage writing it failed or was interrupted)"
                )
            except (pa.ArrowException, OSError) as e:
                raise BadInputError(f"{name}: truncated or corrupt Arrow stream after {total + rows} rows "
                                    f"({one_line(e)})")
            if meta is not None and END_KEY in meta:
                try:
                    expected = int(meta[END_KEY])
                except ValueError:
                    raise BadInputError(f"{name}: corrupt end marker after {total + rows} rows")
                if expected != rows:
                    raise BadInputError(f"{name}: stream says {expected} rows but carried {rows}")
                _end_of_stream(reader, name, total + rows)
                if not _more_bytes(fh):
                    return
                k, total, rows = k + 1, total + rows, 0
                reader = open_one(k)
                if reader.schema.remove_metadata() != schema.remove_metadata():
                    raise BadInputError(
                        f"{name}: concatenated stream {k + 1} has other columns than the first "
                        f"({', '.join(reader.schema.names)} vs {', '.join(schema.names)}); "
                        "convert them to one schema first")
                continue
            rows += batch.num_rows
            if batch.num_rows:
                yield _validate(name, batch, f"after {total + rows - batch.num_rows} rows")

    return Table(name, schema, gen())


def _end_of_stream(reader, name: str, rows: int) -> None:
    """Consume the end-of-stream message that follows our end marker (the IPC writer's close)."""
    try:
        reader.read_next_batch()
    except StopIteration:
        return
    except (pa.ArrowException, OSError):
        pass
    raise BadInputError(f"{name}: data follows the end marker after {rows} rows inside one stream")


def _more_bytes(fh) -> bool:
    if hasattr(fh, "peek"):
        return bool(fh.peek(1)[:1])
    pos = fh.tell()
    more = bool(fh.read(1))
    fh.seek(pos)
    return more


def _open_text_like(name: str, fh) -> Table:
    """JSONL (first byte `{`) or plain text (the whole input is one document)."""
    try:
        data = fh.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip raises all three for damaged data
        raise BadInputError(f"{name}: truncated or corrupt gzip data ({one_line(e)})")
    if b"\x00" in data[:4096]:
        raise BadInputError(f"{name}: binary data of unknown format (not Parquet, an Arrow stream, JSONL or text)")
    text = data.decode("utf-8", errors="replace")
    if text.lstrip()[:1] == "{":
        rows, linenos = [], []
        # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085, \x1c..., which
        # JSON strings may contain raw (real dolma/CC files do)
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            rows.append(parse_json_line(line, f"{name}:{lineno}"))
            linenos.append(lineno)
        table = _rows_to_table(name, rows, linenos)
    else:
        table = pa.table({"text": [text]})
    return Table(name, table.schema, iter(table.to_batches(max_chunksize=BATCH_ROWS)), table.num_rows)


def _rows_to_table(name: str, rows: list[dict], linenos: list[int]) -> pa.Table:
    try:
        table = pa.Table.from_pylist(rows)
    except OverflowError:
        where = next((f"{name}:{n}: field {k!r}" for n, row in zip(linenos, rows, strict=True)
                      for k, v in row.items() if _has_big_int(v)), name)
        raise BadInputError(f"{where}: integer outside the 64-bit range (write it as a string)")
    except RecursionError:
        raise BadInputError(f"{name}: JSON nested too deeply")
    except pa.ArrowException as e:
        raise BadInputError(f"{name}: JSONL rows have inconsistent types ({one_line(e)})")
    for f in table.schema:
        if _too_deep(f.type):
            raise BadInputError(f"{name}: field {f.name!r} is nested more than {MAX_NESTING} levels deep")
    return table


def _has_big_int(v, depth: int = 0) -> bool:
    if isinstance(v, bool) or depth > MAX_NESTING * 16:
        return False
    if isinstance(v, int):
        return not -(2**63) <= v < 2**63
    if isinstance(v, dict):
        return any(_has_big_int(x, depth + 1) for x in v.values())
    if isinstance(v, list):
        return any(_has_big_int(x, depth + 1) for x in v)
    return False


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
