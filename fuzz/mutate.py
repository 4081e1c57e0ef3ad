"""Mutators: each takes the artifact's bytes (or parsed form) and a seeded `random.Random`,
and returns a damaged copy plus a short description of what it did.

Everything random comes from the `rng` argument, so the same seed gives the same mutations.
Sizes stay bounded (a few MB at most): the point is malformed input, not a disk-filling one;
"absurd sizes" are absurd numbers written into headers and JSON, which must be rejected
before anything allocates them.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import struct
from collections.abc import Callable
from typing import Any

ByteMutator = Callable[[bytes, random.Random], tuple[bytes, str]]

# ----------------------------------------------------------------------------- bytes

INTERESTING_INTS = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1,
                    2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1]
GARBAGE = [b"\0" * 64, b"\xff" * 64, b"\r\n" * 32, b"\n\n\n", b"\xc3\x28\xa0\xa1\xe2\x28\xa1",
           b"\xef\xbb\xbf", b"WARC/1.0\r\n", b"Content-Length: 99999999999\r\n", b"PAR1",
           b"\x1f\x8b\x08\x00", b'{"text": 1}\n', b"<" * 512, b"A" * 70000, "\u202e\u0000é🙂".encode()]


def _pos(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    # Half the time cut near the end (a download that stopped), else anywhere.
    cut = max(0, len(data) - rng.randint(1, 64)) if rng.random() < 0.5 else _pos(data, rng)
    return data[:cut], f"truncate to {cut} of {len(data)} bytes"


def flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return b"\xff", "flip on empty: one byte"
    buf = bytearray(data)
    n = rng.choice([1, 1, 2, 4, 16])
    for _ in range(n):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    return bytes(buf), f"flip {n} byte(s)"


def insert_garbage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = _pos(data, rng)
    junk = rng.choice(GARBAGE) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 4096))
    return data[:at] + junk + data[at:], f"insert {len(junk)} garbage bytes at {at}"


def delete_chunk(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = _pos(data, rng)
    n = rng.randint(1, max(1, min(len(data) - at, rng.choice([1, 8, 100, 4096]))))
    return data[:at] + data[at + n:], f"delete {n} bytes at {at}"


def duplicate_chunk(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    a = _pos(data, rng)
    b = min(len(data), a + rng.randint(1, 65536))
    at = _pos(data, rng)
    times = rng.choice([1, 1, 2, 10])
    return data[:at] + data[a:b] * times + data[at:], f"duplicate [{a}:{b}] x{times} at {at}"


def overwrite_int(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Write an interesting 4- or 8-byte integer somewhere (lengths, counts, offsets)."""
    width = rng.choice([4, 8])
    if len(data) < width:
        return data, "overwrite-int: too short"
    at = rng.randrange(0, len(data) - width + 1)
    if rng.random() < 0.5:
        at = min(at - at % width, len(data) - width)  # aligned fields are the likely ones
    value = rng.choice(INTERESTING_INTS) % (1 << (8 * width))
    return data[:at] + value.to_bytes(width, "little") + data[at + width:], f"u{8 * width} {value} at {at}"


def empty(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return b"", "empty file"


BYTE_MUTATORS: list[ByteMutator] = [truncate, flip, flip, insert_garbage, delete_chunk, duplicate_chunk,
                                    overwrite_int, empty]


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three stacked byte mutations (an empty file only ever alone)."""
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        m = rng.choice(BYTE_MUTATORS)
        if m is empty and notes:
            continue
        data, note = m(data, rng)
        notes.append(note)
    return data, "; ".join(notes)


def gz_aware(data: bytes, rng: random.Random, inner: Callable[[bytes, random.Random], tuple[bytes, str]]
             ) -> tuple[bytes, str]:
    """For gzip data: half the time damage the compressed bytes, else the content, recompressed."""
    if data[:2] != b"\x1f\x8b" or rng.random() < 0.4:
        return inner(data, rng) if data[:2] != b"\x1f\x8b" else mutate_bytes(data, rng)
    plain = gzip.decompress(data)
    out, note = inner(plain, rng)
    return gzip.compress(out, compresslevel=1, mtime=0), f"gz content: {note}"


# ----------------------------------------------------------------------------- JSON trees

class Raw(str):
    """JSON text inserted as is: values json.dumps cannot write (a 5000-digit int, deep nesting)."""


HUGE_INT = Raw("9" * 5000)
DEEP = Raw("[" * 100_000 + "]" * 100_000)
DEEP_DICT = Raw('{"a":' * 50_000 + "1" + "}" * 50_000)

INTERESTING_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, 2**64 + 1, -(2**63), 10**18, 1e308, -1e308, 0.5,
    float("nan"), float("inf"), "", "x", "\0", "\ud800", "é" * 50, "🙂", "\u202e", "-1", "1e999",
    [], {}, [1, 2], {"a": 1}, [None], "a" * 200_000, HUGE_INT, DEEP, DEEP_DICT,
]


def _paths(obj: Any, rng: random.Random) -> list:
    """A random path into the tree: from the root, stop with p=0.35 or step into a child."""
    path: list = []
    while isinstance(obj, (dict, list)) and obj and rng.random() > 0.35:
        key = rng.choice(list(obj)) if isinstance(obj, dict) else rng.randrange(len(obj))
        path.append(key)
        obj = obj[key]
    return path


def _get(obj: Any, path: list) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def _wrong_type(v: Any, rng: random.Random) -> Any:
    choices = [None, 0, -1, "x", [], {}, True, 1.5, [v], {"value": v}]
    if isinstance(v, dict):
        choices.append(list(v.values()))  # a list where a dict belongs
    if isinstance(v, list):
        choices.append({str(i): x for i, x in enumerate(v)})
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        choices.append(str(v))
    if isinstance(v, str) and v.isdigit():
        choices.append(int(v))
    return rng.choice(choices)


def mutate_tree(obj: Any, rng: random.Random) -> tuple[Any, str]:
    """One JSON-aware mutation: wrong type, missing or extra key, absurd or weird value."""
    import copy

    obj = copy.deepcopy(obj)
    path = _paths(obj, rng)
    op = rng.choice(["wrong_type", "wrong_type", "interesting", "interesting", "interesting",
                     "delete", "add_key", "absurd_number", "shrink_list"])
    target = _get(obj, path)
    if op == "delete" and path:
        parent = _get(obj, path[:-1])
        del parent[path[-1]]
        return obj, f"delete {_show(path)}"
    if op == "add_key" and isinstance(target, dict):
        target[rng.choice(["extra", "__proto__", "", "é"])] = rng.choice(INTERESTING_VALUES)
        return obj, f"add key in {_show(path)}"
    if op == "shrink_list" and isinstance(target, list) and target:
        del target[rng.randrange(len(target)):]
        return obj, f"shorten list {_show(path)}"
    if op == "absurd_number":
        value = rng.choice([-1, 0, 2**31, 2**63, 2**64 + 7, 10**30, -(10**30), 1e308, HUGE_INT])
    elif op == "wrong_type":
        value = _wrong_type(target, rng)
    else:
        value = rng.choice(INTERESTING_VALUES)
    if not path:
        return value, f"root = {_short(value)}"
    _get(obj, path[:-1])[path[-1]] = value
    return obj, f"{_show(path)} = {_short(value)}"


def _show(path: list) -> str:
    return "/" + "/".join(map(str, path))


def _short(v: Any) -> str:
    if isinstance(v, bytes):
        v = v.decode("latin-1")
    s = repr(v) if not isinstance(v, Raw) else f"<raw {len(v)} chars>"
    return s if len(s) <= 40 else s[:37] + "..."


def dumps(obj: Any) -> bytes:
    """json.dumps that writes Raw values verbatim (placeholders replaced after dumping)."""
    raws: list[Raw] = []

    def mark(o):
        if isinstance(o, Raw):
            raws.append(o)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(o, dict):
            return {k: mark(v) for k, v in o.items()}
        if isinstance(o, list):
            return [mark(v) for v in o]
        return o

    text = json.dumps(mark(obj))
    for i, r in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00"), r)
    return text.encode("utf-8", "surrogatepass")


def mutate_json_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A JSON document: mostly tree mutations; sometimes plain byte damage."""
    try:
        obj = json.loads(data)
    except ValueError:
        obj = None
    if obj is None or rng.random() < 0.25:
        return mutate_bytes(data, rng)
    out, note = mutate_tree(obj, rng)
    return dumps(out), note


def mutate_jsonl(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """JSON Lines: damage one record's JSON, replace a line by junk, or byte damage."""
    lines = data.split(b"\n")
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    if not idx or rng.random() < 0.25:
        return mutate_bytes(data, rng)
    i = rng.choice(idx)
    op = rng.random()
    if op < 0.6:
        new, note = mutate_json_bytes(lines[i], rng)
        lines[i] = new.replace(b"\n", b" ")
    elif op < 0.8:
        lines[i] = rng.choice([b"[1, 2]", b"42", b'"text"', b"null", b"{", b'{"text": "a"} {"text": "b"}',
                               b"\xff\xfe", b"\x00" * 10, b'{"id": 1}', b'{"text": "' + b"x" * 300_000 + b'"}'])
        note = "junk line"
    else:
        lines.insert(i, lines[i] * rng.choice([2, 50]))
        note = "repeated record on one line"
    return b"\n".join(lines), f"line {i}: {note}"


# ----------------------------------------------------------------------------- text lines

INTERESTING_LINES = [b"", b"#", b"   ", b"nonexistent.warc.gz", b"..", b".", b"in", b"*.warc.gz", b"\xff\xfe\x00",
                     b"http://127.0.0.1:9/none.warc.gz", b"https://", b"hf://datasets/x", b"@missing.txt",
                     b"a" * 5000, b"/dev/null", b"file:///etc/hostname", b"\0", b"\t\r"]


def mutate_lines(data: bytes, rng: random.Random, extra: list[bytes] = ()) -> tuple[bytes, str]:
    """Line lists (@list, *.paths): swap in interesting lines, duplicate or drop lines."""
    if rng.random() < 0.25:
        return mutate_bytes(data, rng)
    lines = data.split(b"\n")
    pool = INTERESTING_LINES + list(extra)
    op = rng.choice(["replace", "insert", "duplicate", "drop"])
    i = rng.randrange(len(lines))
    if op == "replace":
        lines[i] = rng.choice(pool)
    elif op == "insert":
        lines.insert(i, rng.choice(pool))
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif len(lines) > 1:
        del lines[i]
    return b"\n".join(lines), f"{op} line {i}"


# ----------------------------------------------------------------------------- web archives

_HEADER = re.compile(rb"(?m)^(Content-Length|WARC-Date|WARC-Type|Content-Type|WARC-Target-URI|WARC-Record-ID|"
                     rb"WARC-Identified-Payload-Type|Transfer-Encoding|Content-Encoding|WARC/1\.0|HTTP/1\.1)"
                     rb"([^\r\n]*)")
HEADER_VALUES = [b": 0", b": -1", b": 99999999999999999999", b": 18446744073709551616", b": abc", b":", b"",
                 b": text/html; charset=x-unknown", b": text/html; charset=utf-16", b": application/octet-stream",
                 b": chunked", b": gzip", b": br", b": zstd", b": response", b": conversion", b": revisit",
                 b": 1999-99-99T99:99:99Z", b": \xff\xfe", b": <urn:uuid:>", b": " + b"x" * 100_000,
                 b" 200 OK", b" 999 Nope", b"\r\nX-Junk: 1" * 3]


def mutate_archive(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """WARC/WET/ARC content: change a header's value (lengths, types, dates, encodings), else bytes."""
    matches = list(_HEADER.finditer(data[:2_000_000]))
    if not matches or rng.random() < 0.35:
        return mutate_bytes(data, rng)
    m = rng.choice(matches)
    value = rng.choice(HEADER_VALUES)
    return data[:m.start(2)] + value + data[m.end(2):], f"{m.group(1).decode()} -> {_short(value)} at {m.start()}"


# ----------------------------------------------------------------------------- binary formats

def mutate_safetensors(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """safetensors: u64 header length + JSON header + raw data. Mutate the JSON, keep the data."""
    if len(data) < 8 or rng.random() < 0.3:
        return mutate_bytes(data, rng)
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return mutate_bytes(data, rng)
    header, note = mutate_tree(header, rng)
    text = dumps(header)
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:], f"safetensors header: {note}"


def mutate_tokfile(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """llmtool token files (layout in llmtool/io/tokfile.py): header fields, metadata JSON,
    out-of-vocab tokens or a bad document index with a *valid* checksum, or plain bytes."""
    from llmtool.io import tokfile

    fixed = tokfile._FIXED
    if len(data) < fixed.size or data[:8] != tokfile.MAGIC or rng.random() < 0.2:
        return mutate_bytes(data, rng)
    f = list(fixed.unpack(data[:fixed.size]))
    names = ["magic", "header_size", "version", "token_bytes", "vocab_size", "n_tokens", "n_docs",
             "bos_id", "eot_id", "fingerprint", "checksum", "meta_len"]
    hsize, tbytes, ntok = f[1], f[3], f[5]
    op = rng.choice(["field", "field", "meta", "oov", "index"])
    if op == "field":
        i = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 11])
        signed = names[i] in ("bos_id", "eot_id")
        bits = 32 if names[i] in ("version", "token_bytes") else 64
        v = rng.choice([0, 1, 2, 3, 4, 8, 255, 256, 4095, 4097, 2**31, 2**32 - 1, 2**40, 2**63 - 1,
                        f[i] + 1, max(f[i] - 1, 0), f[i] * 2 + 1])
        if signed:
            v = rng.choice([-2, -(2**63), 2**62, f[4], f[4] + 5, v % 2**62])
        f[i] = v % (1 << bits) if not signed else v
        return fixed.pack(*f) + data[fixed.size:], f"header {names[i]} = {v}"
    if op == "meta":
        meta = json.loads(data[fixed.size:fixed.size + f[11]] or b"{}")
        meta, note = mutate_tree(meta, rng)
        raw = dumps(meta)
        if fixed.size + len(raw) > hsize:
            raw = raw[:hsize - fixed.size]  # keep the layout; the JSON may end up cut (also a case)
        f[11] = len(raw)
        head = (fixed.pack(*f) + raw).ljust(hsize, b"\0")
        return head + data[hsize:], f"metadata: {note}"
    import numpy as np
    import xxhash

    dtype = np.uint16 if tbytes == 2 else np.uint32
    toks = np.frombuffer(data, dtype=dtype, count=ntok, offset=hsize).copy() if ntok else np.zeros(0, dtype)
    rest = data[hsize + ntok * tbytes:]
    if op == "oov" and ntok:
        k = rng.randrange(ntok)
        toks[k] = rng.choice([f[4], f[4] + 1, np.iinfo(dtype).max])
        note = f"token {k} = {toks[k]} (vocab {f[4]}), checksum fixed"
    else:
        n_docs = f[6]
        idx = np.frombuffer(rest, dtype=np.uint64, count=n_docs).copy() if n_docs else np.zeros(0, np.uint64)
        if not n_docs:
            return mutate_bytes(data, rng)
        k = rng.randrange(n_docs)
        idx[k] = rng.choice([ntok, ntok + 1, 2**63, 2**64 - 1, int(idx[-1]) + 7])
        if rng.random() < 0.5 and n_docs > 1:
            idx = idx[::-1].copy()  # starts out of order
        rest = idx.tobytes() + rest[n_docs * 8:]
        note = f"document index damaged at {k}"
    f[10] = xxhash.xxh3_64_intdigest(toks.tobytes())
    return fixed.pack(*f) + data[fixed.size:hsize] + toks.tobytes() + rest, note


def mutate_html(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """HTML/text pages: odd markup (deep nesting, bad charsets, huge attributes), else bytes."""
    if rng.random() < 0.5:
        return mutate_bytes(data, rng)
    snippet = rng.choice([b"<div>" * 50_000, b"<meta charset=\"x-bogus\">", b"<meta charset=\"utf-16\">",
                          b"<!--" + b"-" * 10_000, b"<a href=\"" + b"x" * 200_000 + b"\">", b"<script>" * 1000,
                          b"<?xml version=\"1.0\" encoding=\"ebcdic\"?>", b"&#xffffffff;&#0;&#xd800;" * 100,
                          b"\x00" * 1000, b"<![CDATA[" * 100])
    at = _pos(data, rng)
    return data[:at] + snippet + data[at:], f"insert markup {_short(snippet)} at {at}"


# ----------------------------------------------------------------------------- tables

def _strings_unchecked(values: list[bytes]):
    """A string array holding bytes that may not be UTF-8 (Arrow does not check on build)."""
    import numpy as np
    import pyarrow as pa

    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                           pa.py_buffer(b"".join(values))])


def mutate_table(table, rng: random.Random):
    """A table-aware mutation: wrong column types, missing columns, odd strings, odd sizes,
    damaged provenance metadata. Returns (pyarrow.Table, note)."""
    import pyarrow as pa

    from llmtool.io.provenance import PARQUET_KEY

    n = table.num_rows
    names = table.column_names
    texts = table.column("text").to_pylist() if "text" in names else ["x"] * n

    def set_col(name, arr):
        i = table.schema.get_field_index(name)
        return table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)

    op = rng.choice(["text_type", "drop_text", "no_rows", "nulls", "invalid_utf8", "huge_row", "many_rows",
                     "weird_strings", "other_column", "dup_column", "provenance", "provenance"])
    if op == "text_type":
        kind = rng.choice(["int", "null", "binary", "list", "struct", "large", "dict", "float"])
        arr = {
            "int": lambda: pa.array(range(n), pa.int64()),
            "null": lambda: pa.nulls(n),
            "binary": lambda: pa.array([t.encode() if t else None for t in texts], pa.binary()),
            "list": lambda: pa.array([[t] for t in texts], pa.list_(pa.string())),
            "struct": lambda: pa.array([{"t": t} for t in texts]),
            "large": lambda: pa.array(texts, pa.large_string()),
            "dict": lambda: pa.array(texts, pa.string()).dictionary_encode(),
            "float": lambda: pa.array([1.5] * n),
        }[kind]()
        return set_col("text", arr), f"text column as {kind}"
    if op == "drop_text" and "text" in names:
        return table.drop_columns(["text"]), "no text column"
    if op == "no_rows":
        return table.slice(0, 0), "zero rows"
    if op == "nulls" and n:
        col = rng.choice(names)
        arr = pa.array([None if rng.random() < 0.5 else v for v in table.column(col).to_pylist()],
                       table.schema.field(col).type)
        return set_col(col, arr), f"nulls in {col}"
    if op == "invalid_utf8" and n:
        raw = [(t or "").encode() for t in texts]
        k = rng.randrange(n)
        raw[k] = raw[k][:rng.randrange(len(raw[k]) + 1)] + b"\xff\xfe\xc3" + raw[k][:10]
        return set_col("text", _strings_unchecked(raw)), f"invalid UTF-8 in text row {k}"
    if op == "huge_row" and n:
        k = rng.randrange(n)
        big = rng.choice(["a" * 100_000, "word " * 400_000, "\n" * 200_000, "é🙂" * 100_000, "1" * 100_000])
        return set_col("text", pa.array(texts[:k] + [big] + texts[k + 1:], pa.string())), f"huge text row {k}"
    if op == "many_rows" and n:
        k = rng.choice([2_000, 20_000])
        rows = table.take([i % n for i in range(k)])
        return rows, f"{k} rows (copies)"
    if op == "weird_strings" and n:
        k = rng.randrange(n)
        odd = rng.choice(["", " ", "\0" * 100, "\u202e\u200b", "🙂" * 50, "\r\n" * 100, "<|endoftext|>" * 20,
                          "a\0b", "\x1b[31m", "ﬁ" * 100])
        return set_col("text", pa.array(texts[:k] + [odd] + texts[k + 1:], pa.string())), f"text row {k} = {odd[:20]!r}"
    if op == "other_column" and len(names) > 1:
        col = rng.choice([c for c in names if c != "text"])
        arr = rng.choice([pa.array(range(n)), pa.nulls(n), pa.array(["{not json"] * n), pa.array([[1]] * n)])
        return set_col(col, arr), f"column {col} as {arr.type}"
    if op == "dup_column":
        i = rng.randrange(len(names))
        dup = rng.choice(["text", names[i], "reason", "language", "prompt"])
        arr = table.column(i) if rng.random() < 0.5 else pa.array(range(n))
        return table.append_column(dup, arr), f"extra column {dup!r}"
    # provenance: the JSON that stages read back from the schema metadata
    meta = dict(table.schema.metadata or {})
    raw = meta.get(PARQUET_KEY)
    if raw and rng.random() < 0.8:
        try:
            mutated, note = mutate_tree(json.loads(raw), rng)
            meta[PARQUET_KEY] = dumps(mutated)
        except ValueError:
            meta[PARQUET_KEY], note = mutate_bytes(raw, rng)
    else:
        meta[PARQUET_KEY] = rng.choice([b"", b"{", b"[]", b"null", b"\xff", b'{"stage": 1}'])
        note = "replaced"
    return table.replace_schema_metadata(meta), f"provenance metadata: {note}"


def write_parquet(table, rng: random.Random) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=rng.choice([None, 1, 3]) or None)
    return sink.getvalue().to_pybytes()


def write_arrow_stream(table, rng: random.Random) -> bytes:
    """An Arrow IPC stream as TableWriter writes one for `-`, end marker included (sometimes
    wrong or missing: the reader must notice)."""
    import pyarrow as pa

    from llmtool.io.tables import END_KEY

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=rng.choice([1, 4, 1000])):
            w.write_batch(b)
        end = rng.choice([str(table.num_rows).encode()] * 4 + [None, b"-1", b"abc", b"99999999999999999999"])
        if end is not None:
            empty_batch = pa.RecordBatch.from_pylist([], schema=table.schema.remove_metadata())
            w.write_batch(empty_batch, custom_metadata={END_KEY: end})
    return sink.getvalue().to_pybytes()
