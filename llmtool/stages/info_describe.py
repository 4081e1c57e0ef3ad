"""`llmtool info`: what a path is, described by the package that owns its format.

    >>> describe("docs.parquet")["rows"]         # doctest: +SKIP
    >>> render(describe("base/"))                 # doctest: +SKIP

Sniffed by content first, name second: llmtool token files, llm.c token files, Parquet and
Arrow streams, web archives (WARC/ARC), tiktoken rank files, tokenizer .json files,
checkpoint folders, JSONL, plain text, and nanoGPT's bare uint16 token files (which have
no header: recognised only by a `.bin` name and binary content). Each describe function
returns plain data (numbers stay numbers, for `--json`); `render` prints it for people.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
import re
import sys
import zlib
from pathlib import Path

from llmtool.errors import BadInputError, UsageError

LLMC = {20240520: (1, 2), 20240801: (7, 4)}  # magic -> (version, bytes per token); see tokenizer/export.py
_TIKTOKEN_LINE = re.compile(rb"[A-Za-z0-9+/]+=* \d+")


def _head(path: str, n: int = 4096) -> tuple[bytes, bool]:
    """The first bytes of a file (decompressed if it is gzip) and whether it was gzip."""
    with open(path, "rb") as f:
        head = f.read(n)
    if head[:2] != b"\x1f\x8b":
        return head, False
    try:
        with gzip.open(path, "rb") as g:
            return g.read(n), True
    except (OSError, EOFError, zlib.error):
        raise BadInputError(f"{path}: truncated or corrupt gzip data")


def describe(path: str, decode: int | None = None) -> dict:
    if path == "-":
        from llmtool.io.describe import describe_table

        return describe_table(path)
    if not os.path.exists(path):
        raise BadInputError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if (Path(path) / "config.json").exists():
            from llmtool.model import checkpoint

            return checkpoint.describe(path)
        raise BadInputError(f"{path}: a folder that is not an llmtool checkpoint")
    from llmtool.io import tokfile

    try:
        raw, _ = _head(path, 8)
        head, gz = _head(path)
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})")
    if raw[:8] == tokfile.MAGIC:
        from llmtool.tokenizer import info as tok_info

        return tok_info.describe_tokfile(path, decode=decode)
    if decode:
        raise UsageError(f"--decode reads llmtool token files; {path} is not one")
    if len(raw) >= 4 and int.from_bytes(raw[:4], "little") in LLMC:
        return _describe_llmc(path)
    if raw[:4] in (b"PAR1", b"\xff\xff\xff\xff"):
        from llmtool.io.describe import describe_table

        return describe_table(path)
    if head.startswith((b"WARC/", b"filedesc://")):
        return _describe_archive(path, head, gz)
    if head[:1] == b"{" and path.endswith(".json"):
        from llmtool.tokenizer import info as tok_info

        return tok_info.describe_tokenizer(path)
    if path.endswith(".tiktoken") or _TIKTOKEN_LINE.fullmatch(head.split(b"\n", 1)[0].strip()):
        return _describe_tiktoken(path)
    binary = b"\x00" in head
    if binary and path.endswith(".bin") and not gz:
        return _describe_nanogpt(path)
    if binary:
        raise BadInputError(f"{path}: binary data of unknown format (not a table, token file, "
                            "tokenizer, web archive or text)")
    if head.lstrip()[:1] == b"{":
        from llmtool.io.describe import describe_table

        return describe_table(path)
    return _describe_text(path, gz)


# ---------------------------------------------------------------- formats without provenance


def _describe_llmc(path: str) -> dict:
    import numpy as np

    size = os.path.getsize(path)
    header = np.fromfile(path, dtype="<i4", count=256)
    if len(header) < 256:
        raise BadInputError(f"{path}: truncated llm.c token file (no complete 1024-byte header)")
    magic, version, n = (int(x) for x in header[:3])
    want_version, width = LLMC[magic]
    if version != want_version or n < 0:
        raise BadInputError(f"{path}: corrupt llm.c header (magic {magic}, version {version}, {n} tokens)")
    expected = 1024 + n * width
    if size != expected:
        raise BadInputError(f"{path}: truncated or corrupt llm.c token file ({size} bytes, the header "
                            f"promises {expected})")
    tokens = np.memmap(path, dtype=np.uint16 if width == 2 else np.uint32, mode="r", offset=1024, shape=(n,)) \
        if n else np.zeros(0, np.uint16)
    return {
        "kind": "token file (llm.c layout)",
        "path": path,
        "magic": magic,
        "format_version": version,
        "dtype": "uint16" if width == 2 else "uint32",
        "tokens": n,
        "max_token_id": int(tokens.max()) if n else None,
        "size_bytes": size,
        "note": "llm.c files carry no provenance: `llmtool info` on the token file it was converted from shows it",
        "provenance": None,
    }


def _describe_nanogpt(path: str) -> dict:
    import numpy as np

    size = os.path.getsize(path)
    if size % 2:
        raise BadInputError(f"{path}: binary data of unknown format (an odd size, so not nanoGPT's uint16 tokens)")
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    return {
        "kind": "token file (nanoGPT layout: bare uint16, no header; guessed from the .bin name)",
        "path": path,
        "dtype": "uint16",
        "tokens": size // 2,
        "max_token_id": int(tokens.max()),
        "size_bytes": size,
        "note": "nanoGPT files carry no provenance: `llmtool info` on the token file it was converted from shows it",
        "provenance": None,
    }


def _describe_archive(path: str, head: bytes, gz: bool) -> dict:
    first = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].decode("ascii", "replace")
    return {
        "kind": "web archive (WARC)" if head.startswith(b"WARC/") else "web archive (ARC)",
        "path": path,
        "version": first if head.startswith(b"WARC/") else "ARC",
        "compression": "gzip" if gz else "none",
        "size_bytes": os.path.getsize(path),
        "note": f"turn it into a document table with: llmtool fetch {path}",
        "provenance": None,
    }


def _describe_tiktoken(path: str) -> dict:
    ranks, bad, top = 0, 0, -1
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                token, rank = line.split()
                base64.b64decode(token, validate=True)
                top = max(top, int(rank))
                ranks += 1
            except (ValueError, binascii.Error):
                bad += 1
    if not ranks:
        raise BadInputError(f"{path}: not a tiktoken rank file (no 'base64 rank' lines)")
    info = {"kind": "tiktoken rank file", "path": path, "ranks": ranks, "max_rank": top,
            "size_bytes": os.path.getsize(path)}
    if bad:
        info["malformed_lines"] = bad
    info["note"] = "a rank file has no pattern or special tokens: load it with a tokenizer name or .json"
    info["provenance"] = None
    return info


def _describe_text(path: str, gz: bool) -> dict:
    """Plain text: every stage reads a text file as one document, so say so."""
    size, lines = 0, 0
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                lines += chunk.count(b"\n")
    except (OSError, EOFError, zlib.error):
        raise BadInputError(f"{path}: truncated or corrupt gzip data")
    info = {"kind": "text (the stages read it as one document)", "path": path, "bytes": size, "lines": lines,
            "compression": "gzip" if gz else "none"}
    if gz:
        info["size_bytes"] = os.path.getsize(path)
    info["provenance"] = None
    return info


# ---------------------------------------------------------------- printing


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def _fmt(key: str, v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) and key.endswith("bytes"):
        return f"{v} ({_fmt_bytes(v)})"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


def render(info: dict, out=None) -> None:
    """Print a description for people: `key: value` lines, lineage, then any decoded text."""
    out = out or sys.stdout
    from llmtool.io.provenance import inputs_of, lineage

    info = dict(info)
    prov = info.pop("provenance", None)
    text = info.pop("text", None)
    for k, v in info.items():
        if isinstance(v, dict):
            print(f"{k}:", file=out)
            for kk, vv in v.items():
                print(f"  {kk}: {_fmt(kk, vv)}", file=out)
        else:
            print(f"{k}: {_fmt(k, v)}", file=out)
    chain = lineage(prov)
    if chain:
        print("lineage (newest first):", file=out)
        for p in chain:
            given = p.get("params")
            params = (", ".join(f"{k}={v}" for k, v in given.items()) if isinstance(given, dict)
                      else str(given or ""))
            if len(params) > 300:  # the full record is in `llmtool info --json`
                params = params[:297] + "..."
            srcs = ", ".join(str(i.get("path", "?")) for i in inputs_of(p))
            print(f"  {p.get('stage')} v{p.get('stage_version')} [{p.get('created')}] "
                  f"{p.get('tool')} from {srcs or '-'}" + (f" ({params})" if params else ""), file=out)
    else:
        print("lineage: none recorded (not made by llmtool)", file=out)
    if text:
        print("text:", file=out)
        print(text, file=out)
