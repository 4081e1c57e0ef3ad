"""Stream tables through the filter pipeline: shards, a process pool, in-order output.

The unit of work is a chunk of rows; the worker pool (llmtool.io.pool) returns chunks in
submission order, so the output is the same for any worker count. A row's shard is its
position in the input (row i belongs to shard i mod N), which needs no row count up front
and works on pipes.

    >>> # see llmtool.stages.filter for the command line
"""

from __future__ import annotations

from collections import Counter

from llmtool.data.filters.pipeline import METRICS, Pipeline
from llmtool.io.pool import WorkerPool
from llmtool.io.tables import text_column

CHUNK_ROWS = 32

_worker_pipeline: Pipeline | None = None


def _init_worker(pipeline: Pipeline) -> None:
    global _worker_pipeline
    _worker_pipeline = pipeline


def _work(rows: list[tuple]) -> list[tuple]:
    return _worker_pipeline.process_many(rows)


def warm(pipeline: Pipeline) -> None:
    """Import the extractor and load the LID model once, before worker processes fork."""
    if pipeline.extractor is not None:
        pipeline.extractor._fn = pipeline.extractor._load()
    if pipeline.lid is not None:
        _ = pipeline.lid.model


class Runner:
    """Runs a Pipeline over record batches, with `workers` processes (1 = in this process)."""

    def __init__(self, pipeline: Pipeline, workers: int = 1):
        self.pipeline = pipeline
        self.workers = max(1, workers)
        self.pool = None

    def __enter__(self) -> Runner:
        warm(self.pipeline)
        if self.workers > 1:  # fork: the workers share the loaded extractor and LID model
            self.pool = WorkerPool(_work, self.workers, init=_init_worker, initargs=(self.pipeline,)).start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.pool is not None:
            self.pool.__exit__(exc_type, exc, tb)

    def run(self, rows: list[tuple]) -> list[tuple]:
        if self.pool is None or len(rows) <= 1:
            return self.pipeline.process_many(rows)
        # small enough chunks that every worker gets several, large enough to amortise pickling
        size = max(1, min(CHUNK_ROWS, -(-len(rows) // (self.workers * 4))))
        chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
        out: list[tuple] = []
        for part in self.pool.map(chunks):
            out.extend(part)
        return out


def output_schema(schema, explain: bool, rejected: bool = False):
    """The input's columns (text and unknown ones untouched), then language, language_score,
    and with --explain the metrics; a rejected file also gets `reason` first."""
    import pyarrow as pa

    drop = {"language", "language_score", "reason", *METRICS}
    fields = [f for f in schema if f.name not in drop]
    if not rejected:  # kept rows carry extracted text: strings, even if the input held bytes
        fields = [pa.field("text", pa.large_string() if pa.types.is_large_string(f.type) else pa.string())
                  if f.name == "text" else f for f in fields]
    if rejected:
        fields.append(pa.field("reason", pa.string()))
    fields += [pa.field("language", pa.string()), pa.field("language_score", pa.float64())]
    if explain:
        fields += [pa.field(name, pa.float64()) for name in METRICS]
    return pa.schema(fields, metadata=schema.metadata)


def _take(batch, index: list[int]):
    """The rows at `index` (ascending) as one batch, glued from slices of consecutive rows:
    RecordBatch.take would import pyarrow.compute, 40 ms of a fast filter run."""
    import pyarrow as pa

    if not hasattr(pa, "concat_batches"):  # pyarrow < 19
        return batch.take(pa.array(index, type=pa.int64()))
    runs, start = [], 0
    for k in range(1, len(index) + 1):
        if k == len(index) or index[k] != index[k - 1] + 1:
            runs.append(batch.slice(index[start], k - start))
            start = k
    return pa.concat_batches(runs)


def _assemble(batch, index: list[int], results: list[tuple], schema, explain: bool, text_out: bool):
    import pyarrow as pa

    taken = _take(batch, index)
    columns = {}
    for f in schema:
        name = f.name
        if name == "text" and text_out:
            columns[name] = pa.array([r[1] for r in results], type=f.type)
        elif name == "reason":
            columns[name] = pa.array([r[0] for r in results], type=pa.string())
        elif name == "language":
            columns[name] = pa.array([r[2] for r in results], type=pa.string())
        elif name == "language_score":
            columns[name] = pa.array([r[3] for r in results], type=pa.float64())
        elif explain and name in METRICS:
            columns[name] = pa.array([r[4].get(name) for r in results], type=pa.float64())
        else:
            col = taken.column(name)
            columns[name] = col if col.type == f.type else col.cast(f.type)
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema.remove_metadata())


def _optional_column(batch, name: str) -> list:
    if name not in batch.schema.names:
        return [None] * batch.num_rows
    col = batch.column(name)
    import pyarrow as pa

    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return [None if v is None else str(v) for v in col.to_pylist()]
    return col.to_pylist()


SLICE_ROWS_PER_WORKER = 64


def _slices(batches, rows: int):
    """Batches cut to at most `rows` rows: raw HTML is large, and each slice is held as
    Python strings while it is filtered (64 rows a worker keep the pool busy)."""
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def filter_batches(batches, input_schema, runner: Runner, writer, rejected_writer, explain: bool,
                   shard: tuple[int, int] = (0, 1), start_row: int = 0,
                   progress=None) -> tuple[int, int, int, Counter]:
    """Filter record batches into the writers.

    Returns (next row number, rows of this shard, rows kept, drops by reason); pass the
    next row number as `start_row` for the next input so shards span all inputs.
    """
    index, count = shard
    row = start_row
    seen = kept = 0
    reasons: Counter = Counter()
    out_schema = output_schema(input_schema, explain).remove_metadata()
    rej_schema = output_schema(input_schema, explain, rejected=True).remove_metadata()
    for batch in _slices(batches, SLICE_ROWS_PER_WORKER * runner.workers):
        mine = [i for i in range(batch.num_rows) if (row + i) % count == index]
        row += batch.num_rows
        if not mine:
            if progress is not None:
                progress(batch.num_rows)
            continue
        texts, urls, types = (text_column(batch), _optional_column(batch, "url"),
                              _optional_column(batch, "content_type"))
        results = runner.run([(texts[i], urls[i], types[i]) for i in mine])
        seen += len(mine)
        keep_i, keep_r, drop_i, drop_r = [], [], [], []
        for i, r in zip(mine, results):
            if r[0] is None:
                keep_i.append(i)
                keep_r.append(r)
            else:
                drop_i.append(i)
                drop_r.append(r)
                reasons[r[0]] += 1
        kept += len(keep_i)
        if keep_i:
            writer.write(_assemble(batch, keep_i, keep_r, out_schema, explain, text_out=True))
        if drop_i and rejected_writer is not None:
            rejected_writer.write(_assemble(batch, drop_i, drop_r, rej_schema, explain, text_out=False))
        if progress is not None:
            progress(batch.num_rows)
    return row, seen, kept, reasons
