"""Provenance: how an artifact was made, and the cache key that says if it is up to date.

Every output records its stage, stage version, semantic parameters, the keys of its
inputs, the tool version and the time. The key is a hash of everything but the time, so
rerunning a stage with the same inputs and parameters finds its output up to date.

    >>> p = make("filter", 1, {"lang": "en"}, [])
    >>> len(p["key"])
    32
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import xxhash

from llmtool import __version__

PARQUET_KEY = b"llmtool.provenance"


def _hash(obj: Any) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(obj, sort_keys=True, default=str).encode())


def input_record(path: str, previous: dict | None = None) -> dict:
    """What an output remembers of one input: its path, key, and its own provenance.

    An llmtool artifact is known by its provenance key together with a hash of its content
    (without the provenance, which holds the time): a rebuilt but identical input keeps its
    downstream up to date, while a table edited with pyarrow, which keeps the metadata, or
    a shard split off one, is a new input. The record also keeps the file's size and mtime:
    `previous` (this input's record in the old output) lends its key when they still match,
    so an up-to-date check does not reread unchanged inputs. Any other file is known by its
    size and modification time, as make does; stdin by nothing (an output made from a pipe
    is never up to date).
    """
    if path == "-":
        return {"path": "-", "key": None}
    if "://" in path:
        return {"path": path, "key": _hash(["url", path])}
    try:
        st = os.stat(path)
    except OSError:
        return {"path": path, "key": None}
    prov = read_provenance(path)
    if prov and prov.get("key"):
        stamp = [st.st_size, st.st_mtime_ns]
        if (not os.path.isdir(path) and previous and previous.get("path") == path
                and previous.get("stat") == stamp and previous.get("key")):
            key = previous["key"]
        else:
            key = _hash(["artifact", prov["key"], content_digest(path)])
        return {"path": path, "key": key, "stat": stamp, "provenance": prov}
    lineage_of = {"provenance": prov} if prov else {}  # made from a pipe: no key, but a lineage
    if os.path.isdir(path):
        entries = sorted(
            (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in Path(path).rglob("*")
            if p.is_file()
        )
        return {"path": path, "key": _hash(["dir", entries]), **lineage_of}
    return {"path": path, "key": _hash(["file", os.path.realpath(path), st.st_size, st.st_mtime_ns]),
            **lineage_of}


def content_digest(path: str | os.PathLike) -> str:
    """A hash of what an artifact holds, leaving out its provenance record (which changes
    with every rebuild, if only by its time): Parquet data pages and Arrow stream batches
    with the schema minus metadata, token files' tokens and fixed header fields, JSON
    without its `provenance` key, a folder's file names, sizes and mtimes. Anything else:
    all its bytes. Reads the whole file (xxh3, ~0.3 s per GB from the page cache)."""
    path = Path(path)
    h = xxhash.xxh3_128()
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.name != "provenance.json":
                st = f.stat()
                h.update(json.dumps([str(f.relative_to(path)), st.st_size, st.st_mtime_ns]).encode())
        return h.hexdigest()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        start, end = 0, size
        try:
            if head[:4] == b"PAR1" and size >= 12:
                import pyarrow.parquet as pq

                fh.seek(size - 8)
                end = size - 8 - int.from_bytes(fh.read(4), "little")  # the footer holds the metadata
                pf = pq.ParquetFile(path)
                h.update(pf.schema_arrow.remove_metadata().serialize().to_pybytes())
                h.update(str([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]).encode())
            elif head[:4] == b"\xff\xff\xff\xff":
                import pyarrow.ipc as ipc

                start = 8 + int.from_bytes(head[4:8], "little")  # the first message is the schema
                with ipc.open_stream(path) as reader:
                    h.update(reader.schema.remove_metadata().serialize().to_pybytes())
            elif head[:8] == b"LLMTOK1\n":
                from llmtool.io import tokfile

                hd = tokfile.read_header(path)
                meta = {k: v for k, v in hd.meta.items() if k != "provenance"}
                h.update(json.dumps([hd.version, hd.token_bytes, hd.vocab_size, hd.n_tokens, hd.n_docs,
                                     hd.bos_id, hd.eot_id, hd.fingerprint, hd.checksum, meta],
                                    sort_keys=True, default=str).encode())
                start = hd.header_size
            elif head[:1] == b"{" and path.suffix == ".json":
                data = json.loads(path.read_bytes())
                if isinstance(data, dict):
                    data = {k: v for k, v in data.items() if k != "provenance"}
                h.update(json.dumps(data, sort_keys=True).encode())
                return h.hexdigest()
        except Exception:  # unreadable as its kind: fall back to every byte
            h.reset()
            start, end = 0, size
        if not 0 <= start <= end <= size:
            start, end = 0, size
        fh.seek(start)
        left = end - start
        while left > 0:
            chunk = fh.read(min(left, 1 << 24))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


_stdin_provenance: dict | None = None


def remember_stdin(prov: dict | None) -> None:
    """Called when a table is read from stdin, so outputs can record the upstream lineage."""
    global _stdin_provenance
    _stdin_provenance = prov


def with_stdin_lineage(prov: dict) -> dict:
    """Fill in the provenance of a `-` input from the stream read since `make` was called.

    The stream's key becomes the input's key, so an output made from a pipe gets the same
    key every time the same upstream chain runs: the stages after it find their inputs
    unchanged and stay up to date, although the piped stages themselves rerun.
    """
    if _stdin_provenance is None:
        return prov
    inputs = [({**i, "provenance": _stdin_provenance, "key": _stdin_provenance.get("key")}
               if i.get("path") == "-" and not i.get("provenance") else i)
              for i in prov.get("inputs", [])]
    key = _key(prov["stage"], prov["stage_version"], prov["params"], [i.get("key") for i in inputs])
    return strip_nested({**prov, "inputs": inputs, "key": key})


def _key(stage: str, stage_version: int, params: dict, input_keys: list) -> str | None:
    if any(k is None for k in input_keys):
        return None
    return _hash([stage, stage_version, params, input_keys])


def make(stage: str, stage_version: int, params: dict, inputs: list[dict]) -> dict:
    """A provenance record; `params` must hold only what changes the output."""
    key = _key(stage, stage_version, params, [i.get("key") for i in inputs])
    return {
        "stage": stage,
        "stage_version": stage_version,
        "params": params,
        "inputs": inputs,
        "tool": f"llmtool {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": key,
    }


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance of any llmtool artifact, or None for a foreign (or damaged) file."""
    return _as_record(_read_provenance(Path(path)))


def _read_provenance(path: Path):
    try:
        if path.is_dir():
            f = path / "provenance.json"
            return json.loads(f.read_text()) if f.exists() else None
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head[:4] == b"PAR1":
            import pyarrow.parquet as pq

            meta = pq.read_schema(path).metadata or {}
            return json.loads(meta[PARQUET_KEY]) if PARQUET_KEY in meta else None
        if head == b"\xff\xff\xff\xff" + head[4:8] and len(head) == 8:
            import pyarrow.ipc as ipc

            with ipc.open_stream(path) as reader:
                meta = reader.schema.metadata or {}
            return json.loads(meta[PARQUET_KEY]) if PARQUET_KEY in meta else None
        from llmtool.io import tokfile

        if head == tokfile.MAGIC:
            return tokfile.read_header(path).meta.get("provenance")
        if head[:1] == b"{" and path.suffix == ".json":
            data = json.loads(path.read_text())
            return data.get("provenance") if isinstance(data, dict) else None
    except Exception:
        return None
    return None


def _as_record(prov) -> dict | None:
    """A provenance record, or None for anything else a damaged file may hold."""
    return prov if isinstance(prov, dict) else None


def inputs_of(prov: dict) -> list[dict]:
    """A record's input records; a damaged record's odd values count as none."""
    inputs = prov.get("inputs")
    return [i for i in inputs if isinstance(i, dict)] if isinstance(inputs, list) else []


def lineage(prov: dict | None) -> list[dict]:
    """The chain of stages that made an artifact, newest first."""
    out, seen = [], set()
    stack = [prov] if isinstance(prov, dict) else []
    while stack:
        p = stack.pop(0)
        ident = json.dumps([p.get("stage"), p.get("created"), p.get("key"), p.get("params")],
                           sort_keys=True, default=str)
        if ident in seen:  # two inputs (train and val files) often share their ancestors
            continue
        seen.add(ident)
        out.append(p)
        stack.extend(i["provenance"] for i in inputs_of(p) if isinstance(i.get("provenance"), dict))
    return out


def strip_nested(prov: dict, depth: int = 8) -> dict:
    """Bound lineage depth so metadata stays small after long chains."""
    if depth <= 0:
        return {k: v for k, v in prov.items() if k != "inputs"}
    inputs = []
    for i in inputs_of(prov):
        i = dict(i)
        if isinstance(i.get("provenance"), dict):
            i["provenance"] = strip_nested(i["provenance"], depth - 1)
        else:
            i.pop("provenance", None)
        inputs.append(i)
    return {**prov, "inputs": inputs}
