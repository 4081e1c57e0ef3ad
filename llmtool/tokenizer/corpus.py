"""Texts out of document tables, for training: one pass, optional caps.

    >>> docs = iter_texts(["docs.parquet"], doc_cap=10_000)      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

INPUT_PATTERNS = ("*.parquet", "*.arrow", "*.jsonl", "*.jsonl.gz", "*.txt", "*.txt.gz")


def iter_texts(sources: list[str], doc_cap: int | None = None, max_chars: int | None = None,
               sample: list | None = None, sample_chars: int = 0) -> Iterator[str]:
    """The `text` of every row of every source, in order (null and empty texts skipped).

    `doc_cap` keeps the first N characters of each document; `max_chars` stops after N
    characters in all (cutting the last document). The first `sample_chars` characters
    are also appended to `sample` (to measure compression afterwards without a second pass).
    """
    from llmtool.io.tables import expand_inputs, open_table, text_column

    seen = 0
    kept = 0
    for src in expand_inputs(sources, INPUT_PATTERNS):
        table = open_table(src, columns=["text"])
        for batch in table.batches():
            for t in text_column(batch):
                if not t:
                    continue
                if doc_cap is not None:
                    t = t[:doc_cap]
                if max_chars is not None:
                    t = t[: max_chars - seen]
                    if not t:
                        return
                seen += len(t)
                if sample is not None and kept < sample_chars:
                    sample.append(t[: sample_chars - kept])
                    kept += len(sample[-1])
                yield t
                if max_chars is not None and seen >= max_chars:
                    return
