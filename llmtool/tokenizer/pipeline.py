"""Document tables -> token files: encode in parallel, write in input order.

    >>> from llmtool.tokenizer import load_tokenizer
    >>> from llmtool.tokenizer.pipeline import tokenize_to_file
    >>> tokenize_to_file(["docs.parquet"], load_tokenizer("gpt2"), "data.bin")  # doctest: +SKIP

Layout of the tokens: every document is preceded by the separator token (the tokenizer's
BOS, by default <|endoftext|>), as llm.c and nanochat do, so a document never starts in
the middle of a training window without a boundary marker; the document index points at
each separator. Literal special-token text inside a document is encoded as plain text.

Parallelism: tiktoken's Rust core releases the GIL, so a thread pool encodes batches of
documents while the main thread reads the next row group and writes finished batches in
input order; the output is byte-identical for any worker count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xxhash

from llmtool.errors import BadInputError

_BATCH_DOCS = 256
_BATCH_CHARS = 4 << 20


def _encode_one(enc, text: str) -> np.ndarray:
    try:
        return enc.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
    except UnicodeEncodeError:  # lone surrogates: tiktoken's ordinary path repairs them
        return np.asarray(enc.encode_ordinary(text), dtype=np.uint32)


def encode_batch(enc, texts: list[str], sep: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, doc_starts) for a list of documents, each preceded by `sep` when given."""
    parts = []
    starts = np.empty(len(texts), dtype=np.uint64)
    at = 0
    sep_arr = np.array([sep], dtype=np.uint32) if sep is not None else None
    for i, t in enumerate(texts):
        starts[i] = at
        if sep_arr is not None:
            parts.append(sep_arr)
            at += 1
        ids = _encode_one(enc, t)
        parts.append(ids)
        at += len(ids)
    tokens = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    return tokens, starts


def is_val(text: str, fraction: float) -> bool:
    """Deterministic held-out choice by content: the same document always lands on the same side."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8", errors="surrogatepass")) < fraction * 2.0**64


def _batches(sources: list[str], stats: dict, val_docs: int, val_fraction: float) -> Iterator[tuple[list, list]]:
    """(train_texts, val_texts) batches, in input order.

    With a fraction too small for the corpus (0.01 of 73 documents) the hash may pick no
    document at all, and an empty validation file only fails later in pretrain. So the
    last batch is held back until the input ends: if nothing was picked, its last document
    moves to the validation side (`stats["val_fallback"]`), as long as one stays for training.
    """
    held = None
    for pair in _raw_batches(sources, stats, val_docs, val_fraction):
        if held is not None:
            yield held
        held = pair
    if held is None:
        return
    train, val = held
    if val_fraction and stats["val_seen"] == 0 and stats["rows"] - stats["empty"] >= 2:
        val.append(train.pop())
        stats["val_seen"] += 1
        stats["val_fallback"] = 1
    yield train, val


def _raw_batches(sources: list[str], stats: dict, val_docs: int, val_fraction: float) -> Iterator[tuple[list, list]]:
    from llmtool.io.tables import expand_inputs, open_table, text_column
    from llmtool.tokenizer.corpus import INPUT_PATTERNS

    train, val, size = [], [], 0
    for src in expand_inputs(sources, INPUT_PATTERNS):
        table = open_table(src, columns=["text"])
        for batch in table.batches():
            for t in text_column(batch):
                stats["rows"] += 1
                if not t:
                    stats["empty"] += 1
                    continue
                stats["chars"] += len(t)
                if stats["val_seen"] < val_docs or (val_fraction and is_val(t, val_fraction)):
                    stats["val_seen"] += 1
                    val.append(t)
                else:
                    train.append(t)
                size += len(t)
                if len(train) + len(val) >= _BATCH_DOCS or size >= _BATCH_CHARS:
                    yield train, val
                    train, val, size = [], [], 0
    if train or val:
        yield train, val


def val_path_for(path: str) -> str:
    """data.bin -> data.val.bin (beside it)."""
    base, ext = os.path.splitext(path)
    return f"{base}.val{ext or '.bin'}"


def tokenize_to_file(sources: list[str], tok, path: str, sep: int | None, meta: dict, workers: int = 1,
                     val_path: str | None = None, val_docs: int = 0, val_fraction: float = 0.0,
                     progress=None) -> dict:
    """Tokenize every document of the sources into `path` (and held-out ones into `val_path`)."""
    from contextlib import ExitStack

    from llmtool.io.tokfile import TokenFileWriter

    enc = tok.encoding
    stats = {"rows": 0, "empty": 0, "chars": 0, "val_seen": 0, "docs": 0, "tokens": 0, "val_docs": 0,
             "val_tokens": 0, "val_fallback": 0}
    common = dict(vocab_size=tok.vocab_size, bos_id=-1 if sep is None else sep,
                  eot_id=-1 if tok.eot_id is None else tok.eot_id, fingerprint=tok.fingerprint)
    with ExitStack() as stack:
        w = stack.enter_context(TokenFileWriter(path, meta=meta, **common))
        wv = stack.enter_context(TokenFileWriter(val_path, meta={**meta, "split": "val"}, **common)) if val_path else None
        pool = stack.enter_context(ThreadPoolExecutor(max(1, workers)))

        def job(pair):
            tr, va = pair
            return encode_batch(enc, tr, sep), (encode_batch(enc, va, sep) if va else None), pair

        # keep a bounded window of batches in flight; results are taken in submission order
        pending = []
        src = _batches(sources, stats, val_docs, val_fraction)
        window = max(2, 2 * workers)

        def drain_one():
            (tt, ts), v, (tr, va) = pending.pop(0).result()
            w.add_tokens(tt, ts)
            stats["docs"] += len(tr)
            stats["tokens"] += len(tt)
            if v is not None:
                if wv is None:  # cannot happen: val texts exist only with a val path
                    raise BadInputError("internal: held-out documents without a validation file")
                wv.add_tokens(*v)
                stats["val_docs"] += len(va)
                stats["val_tokens"] += len(v[0])
            if progress:
                progress(len(tr) + len(va))

        for pair in src:
            pending.append(pool.submit(job, pair))
            while len(pending) >= window:
                drain_one()
        while pending:
            drain_one()
    return stats
