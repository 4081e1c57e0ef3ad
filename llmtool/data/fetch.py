"""Raw sources → a document table (`id, url, date, dump, content_type, text, source, metadata`).

Sources are local files, folders and globs (WARC/WET/ARC, Parquet, JSONL, HTML, text),
http(s) URLs, `hf://datasets/...` paths, lists of sources (`@list.txt`) and Common Crawl
`*.paths.gz` files. HTML stays HTML: extraction belongs to `filter`.

    >>> from collections import Counter
    >>> stats = Counter()
    >>> rows = list(documents_of("page.html", stats))          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import xxhash

from llmtool.data.decode import decode_payload, looks_binary, sniff_mime
from llmtool.data.warc import iter_records, sniff_archive
from llmtool.errors import BadInputError

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("url", pa.string()),
    ("date", pa.string()),
    ("dump", pa.string()),
    ("content_type", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),
    ("metadata", pa.string()),
])
_FIELDS = SCHEMA.names

TEXT_MIMES = {"application/xhtml+xml", "application/xml", "application/json", "application/rss+xml",
              "application/atom+xml", "application/javascript", "application/x-javascript"}
_DUMP = re.compile(r"CC-MAIN-\d{4}-\d{2}")
LOCAL_PATTERNS = ("*.warc", "*.warc.gz", "*.wet", "*.wet.gz", "*.arc", "*.arc.gz", "*.parquet",
                  "*.jsonl", "*.jsonl.gz", "*.html", "*.htm", "*.html.gz", "*.txt", "*.txt.gz")


def normalise_date(raw: str | None) -> str | None:
    """ISO-8601 UTC (`2024-05-18T01:58:10Z`), or None for a missing or invalid date."""
    if not raw:
        return None
    s = raw.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", s):
        s = s[:-2] + ":" + s[-2:]
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if d.tzinfo is not None:
        d = d.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _mime(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = content_type.split(";", 1)[0].strip().lower()
    return m or None


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime in TEXT_MIMES or mime.endswith("+xml")


def _doc_id(*parts) -> str:
    return xxhash.xxh3_128_hexdigest("\x00".join(map(str, parts)).encode())


# ---------------------------------------------------------------- per source kind


def _archive_documents(path: str, source: str, stats: Counter) -> Iterator[dict]:
    info: dict = {}
    dump_from_name = (m.group(0) if (m := _DUMP.search(os.path.basename(path))) else None)
    for n, rec in enumerate(iter_records(path, stats, info)):
        if not rec.payload.strip():
            stats["empty_payload"] += 1
            continue
        if rec.warc_type == "response":
            mime = _mime(rec.http_content_type) or _mime(rec.identified_type) or sniff_mime(rec.payload)
        else:
            mime = _mime(rec.warc_content_type) or sniff_mime(rec.payload)
        if mime is None:
            if looks_binary(rec.payload):
                stats["binary_payload"] += 1
                continue
            mime = "text/plain"
        elif not _is_text_mime(mime) or looks_binary(rec.payload):
            stats["non_text_payload"] += 1
            continue
        date = normalise_date(rec.date)
        if rec.date and date is None:
            stats["invalid_date (kept, date null)"] += 1
        url = rec.url.strip() if rec.url else None
        if url and url.startswith("<") and url.endswith(">"):  # WARC 1.1 drafts wrap URIs
            url = url[1:-1]
        meta = {"warc_type": rec.warc_type}
        if rec.http_status is not None:
            meta["http_status"] = rec.http_status
        meta.update(rec.extra)
        dump = info.get("isPartOf") or dump_from_name
        yield {
            "id": rec.record_id or _doc_id(source, n),
            "url": url,
            "date": date,
            "dump": dump if dump and _DUMP.fullmatch(dump) else dump_from_name,
            "content_type": mime,
            "text": decode_payload(rec.payload, rec.http_content_type or rec.warc_content_type),
            "source": source,
            "metadata": json.dumps(meta),
        }


def _table_documents(path: str, source: str, stats: Counter) -> Iterator[dict]:
    """Parquet / JSONL rows: known columns map onto the schema, the rest go to `metadata`."""
    from llmtool.io.tables import open_table

    table = open_table(path, require=())
    if "text" not in table.schema.names and "content" not in table.schema.names:
        raise BadInputError(f"{source}: table has no 'text' (or 'content') column "
                            f"(has: {', '.join(table.schema.names)})")
    n = 0
    for batch in table.batches():
        for row in batch.to_pylist():
            text = row.pop("text", None)
            if text is None:
                text = row.pop("content", None)
            if not isinstance(text, str) or not text.strip():
                stats["empty_text"] += 1
                n += 1
                continue
            meta = row.pop("metadata", None)
            extra = dict(meta) if isinstance(meta, dict) else ({"metadata": meta} if meta else {})
            out = {"text": text, "source": source}
            for k in ("id", "url", "date", "dump", "content_type"):
                v = row.pop(k, None)
                if v is None and k in extra and k != "id":
                    v = extra.pop(k)
                out[k] = None if v is None else str(v)
            if out["date"] is None and row.get("created"):
                out["date"] = str(row.pop("created"))
            out["id"] = out["id"] or _doc_id(source, n)
            out["content_type"] = out["content_type"] or "text/plain"
            extra.update({k: v for k, v in row.items() if v is not None})
            out["metadata"] = json.dumps(extra, default=str) if extra else None
            n += 1
            yield out


def _read_all(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise BadInputError(f"{path}: truncated or corrupt gzip file")
    return data


def _file_document(path: str, source: str, stats: Counter, mime: str) -> Iterator[dict]:
    payload = _read_all(path)
    if not payload.strip():
        stats["empty_payload"] += 1
        return
    mtime = dt.datetime.fromtimestamp(os.path.getmtime(path), dt.timezone.utc)
    yield {
        "id": _doc_id(os.path.abspath(path)),
        "url": Path(os.path.abspath(path)).as_uri(),
        "date": mtime.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dump": None,
        "content_type": mime,
        "text": decode_payload(payload, None),
        "source": source,
        "metadata": None,
    }


def kind_of(path: str) -> str:
    """'archive', 'table', 'html' or 'text', by content first and name second."""
    if sniff_archive(path):
        return "archive"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                head = g.read(4096)
    except (OSError, EOFError, zlib.error):
        raise BadInputError(f"{path}: unreadable (truncated or corrupt gzip?)")
    if head[:4] == b"PAR1" or head[:4] == b"\xff\xff\xff\xff" or head.lstrip()[:1] == b"{":
        return "table"
    if sniff_mime(head) == "text/html" or re.search(r"\.html?(\.gz)?$", path):
        return "html"
    if looks_binary(head):
        raise BadInputError(f"{path}: binary file of unknown format (not WARC/ARC/Parquet/JSONL/HTML/text)")
    return "text"


def documents_of(path: str, stats: Counter, source: str | None = None) -> Iterator[dict]:
    """Every document in one local file, with the reasons for skipped records in `stats`."""
    source = source or path
    kind = kind_of(path)
    stats[f"files:{kind}"] += 1
    if kind == "archive":
        yield from _archive_documents(path, source, stats)
    elif kind == "table":
        yield from _table_documents(path, source, stats)
    else:
        yield from _file_document(path, source, stats, "text/html" if kind == "html" else "text/plain")
