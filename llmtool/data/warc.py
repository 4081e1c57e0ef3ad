"""Web archives → content records: WARC, WET and ARC, gzipped or not.

fastwarc reads well-formed WARC/WET fast; warcio reads legacy ARC; a line-based resync
parser recovers records from files whose Content-Length lies or whose lines end in LF
only (both seen in real WET files). Every record that cannot become a document is
counted by reason in `stats`, never dropped silently.

    >>> from collections import Counter
    >>> stats = Counter()
    >>> recs = list(iter_records("crawl.warc.gz", stats))      # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import hashlib
import re
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

CONTENT_TYPES = ("response", "conversion", "resource")
# Resync gives up on files larger than this (decompressed): they are read into memory.
RESYNC_MAX_BYTES = 1 << 30


@dataclass
class Record:
    """One content record, before its payload is decoded."""

    warc_type: str
    record_id: str | None
    url: str | None
    date: str | None
    payload: bytes
    http_status: int | None = None
    http_content_type: str | None = None
    warc_content_type: str | None = None
    identified_type: str | None = None
    extra: dict = field(default_factory=dict)


def open_maybe_gzip(path: str):
    f = open(path, "rb")
    if f.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)
    return f


def decode_content_encoding(payload: bytes, encoding: str, stats: Counter) -> bytes | None:
    """Undo HTTP Content-Encoding (crawlers often store the compressed body as served)."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip", "deflate"):
        # A decompressor object returns what it could decode even when the body is cut short.
        wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else (zlib.MAX_WBITS if payload[:1] == b"\x78" else -zlib.MAX_WBITS)
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(payload) + d.flush()
        except zlib.error:
            if payload[:2] != b"\x1f\x8b":  # labelled compressed but served plain: keep as is
                return payload
            stats["bad_content_encoding"] += 1
            return None
        if not d.eof:
            stats["truncated_body (partial kept)"] += 1
        return out
    if enc == "br":
        try:
            import brotli
        except ImportError:
            stats["content_encoding_br_unsupported"] += 1
            return None
        try:
            return brotli.decompress(payload)
        except Exception:
            stats["bad_content_encoding"] += 1
            return None
    return payload


def sniff_archive(path: str) -> str | None:
    """'warc', 'arc' or None (not a web archive), from the first decompressed bytes."""
    try:
        with open_maybe_gzip(path) as f:
            head = f.read(64)
    except (OSError, EOFError, zlib.error):
        return None
    if head.startswith(b"WARC/"):
        return "warc"
    if head.startswith(b"filedesc://"):
        return "arc"
    return None


def iter_records(path: str, stats: Counter, info: dict | None = None) -> Iterator[Record]:
    """Content records of one archive file; `info` receives warcinfo fields (e.g. isPartOf)."""
    info = info if info is not None else {}
    kind = sniff_archive(path)
    if kind == "arc":
        yield from _iter_warcio(path, stats, info)
    elif kind == "warc":
        yield from _iter_fastwarc(path, stats, info)
    else:
        stats["not_an_archive"] += 1


def _parse_fields(block: bytes) -> dict:
    out = {}
    for line in block.decode("utf-8", "replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _iter_fastwarc(path: str, stats: Counter, info: dict) -> Iterator[Record]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    # Every record type is read, so that request/metadata/revisit records are counted as
    # skipped instead of vanishing inside fastwarc's type filter. Counts go to `own` first:
    # when fastwarc reads nothing usable, the resync parser rereads the whole file and its
    # counts replace these (else a record would be counted twice).
    own: Counter = Counter()
    yielded = 0
    seen = 0
    suspicious = False
    try:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, parse_http=True, record_types=WarcRecordType.any_type):
                seen += 1
                wtype = rec.headers.get("WARC-Type") or ""
                if wtype == "warcinfo":
                    body = rec.reader.read()
                    if b"\nWARC/1." in body and b"WARC-Type:" in body:
                        suspicious = True  # the next records were swallowed: lengths lie
                        break
                    info.update(_parse_fields(body))
                    continue
                if wtype not in CONTENT_TYPES:
                    if "\n" in wtype:  # LF-only header lines: nothing parsed right
                        suspicious = True
                        break
                    own[f"record_type:{wtype or 'missing'}"] += 1
                    continue
                payload = rec.reader.read()
                if len(payload) < rec.content_length:
                    own["truncated_record"] += 1
                    continue
                http = rec.http_headers if wtype == "response" else None
                headers = rec.headers
                if http is not None and http.get("Content-Encoding"):
                    payload = decode_content_encoding(payload, http.get("Content-Encoding"), own)
                    if payload is None:
                        continue
                yielded += 1
                stats.update(own)
                own.clear()
                yield Record(
                    warc_type=wtype,
                    record_id=headers.get("WARC-Record-ID"),
                    url=headers.get("WARC-Target-URI"),
                    date=headers.get("WARC-Date"),
                    payload=payload,
                    http_status=http.status_code if http is not None else None,
                    http_content_type=http.get("Content-Type") if http is not None else None,
                    warc_content_type=headers.get("Content-Type"),
                    identified_type=headers.get("WARC-Identified-Payload-Type"),
                    extra={k: v for k in ("WARC-Identified-Content-Language",)
                           if (v := headers.get(k))},
                )
    except OSError as e:
        # fastwarc stops at the first header it cannot parse: keep what was read.
        if yielded == 0 and "Invalid WARC header" in str(e):
            suspicious = True
        else:
            own["malformed_tail"] += 1
    # Nothing usable from a file that starts with `WARC/`: LF-only lines fastwarc cannot
    # parse, lying lengths, or not a WARC at all; the resync parser tells which and counts.
    if (suspicious or seen == 0) and yielded == 0:
        yield from _iter_resync(path, stats, info)
    else:
        stats.update(own)


_BOUNDARY = re.compile(rb"(?:^|\r?\n)(WARC/1\.[01]|WARC/0\.1[78])\r?\n")


def _iter_resync(path: str, stats: Counter, info: dict) -> Iterator[Record]:
    """Split on `WARC/1.x` lines and ignore Content-Length: slow, but recovers broken files."""
    try:
        with open_maybe_gzip(path) as f:
            data = f.read(RESYNC_MAX_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        stats["truncated_gzip"] += 1
        return
    if len(data) > RESYNC_MAX_BYTES:
        stats["malformed_archive_too_large"] += 1
        return
    starts = [m.end() for m in _BOUNDARY.finditer(data)]
    ends = [m.start() for m in _BOUNDARY.finditer(data)][1:] + [len(data)]
    if not starts:  # begins with "WARC/" but holds no `WARC/1.x` record line
        stats["not_a_warc (no records)"] += 1
        return
    for start, end in zip(starts, ends):
        chunk = data[start:end]
        sep = re.search(rb"\r?\n\r?\n", chunk)
        if not sep:
            stats["malformed_record"] += 1
            continue
        headers = _parse_fields(chunk[: sep.start()])
        body = chunk[sep.end():].rstrip(b"\r\n")
        wtype = headers.get("WARC-Type", "")
        if wtype == "warcinfo":
            info.update(_parse_fields(body))
            continue
        if wtype not in CONTENT_TYPES:
            stats[f"record_type:{wtype or 'missing'}"] += 1
            continue
        declared = headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != len(body):
            stats["recovered_bad_content_length"] += 1
        http_status = http_type = None
        if wtype == "response" and body.startswith(b"HTTP/"):
            hsep = re.search(rb"\r?\n\r?\n", body)
            if hsep:
                status_line, *hlines = body[: hsep.start()].decode("latin-1").splitlines()
                parts = status_line.split()
                http_status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                http_type = _parse_fields("\n".join(hlines).encode()).get("Content-Type")
                body = body[hsep.end():]
        yield Record(wtype, headers.get("WARC-Record-ID"), headers.get("WARC-Target-URI"),
                     headers.get("WARC-Date"), body, http_status, http_type,
                     headers.get("Content-Type"), headers.get("WARC-Identified-Payload-Type"))


def _arc_record_id(n: int, url: str | None, date: str | None, payload: bytes) -> str:
    """A WARC-style record id for an ARC record, derived from the record itself.

    ARC has no record ids and warcio's conversion invents random ones, which would make
    reruns (and -w 1 vs -w 2) differ; the position in the file keeps equal records apart.
    """
    digest = hashlib.sha1(payload).hexdigest()
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{n} {url} {date} {digest}')}>"


def _iter_warcio(path: str, stats: Counter, info: dict) -> Iterator[Record]:
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    n = 0
    try:
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh, arc2warc=True):
                n += 1
                wtype = rec.rec_type
                if wtype == "warcinfo":
                    info.update(_parse_fields(rec.content_stream().read()))
                    continue
                if wtype not in CONTENT_TYPES:
                    stats[f"record_type:{wtype}"] += 1
                    continue
                h = rec.rec_headers
                http = rec.http_headers
                status = None
                if http is not None and http.get_statuscode():
                    status = int(http.get_statuscode()) if http.get_statuscode().isdigit() else None
                url, date = h.get_header("WARC-Target-URI"), h.get_header("WARC-Date")
                payload = rec.content_stream().read()
                yield Record(
                    warc_type=wtype,
                    record_id=_arc_record_id(n, url, date, payload),
                    url=url,
                    date=date,
                    payload=payload,
                    http_status=status,
                    http_content_type=http.get_header("Content-Type") if http is not None else None,
                    warc_content_type=h.get_header("Content-Type"),
                    identified_type=h.get_header("WARC-Identified-Payload-Type"),
                )
    except (ArchiveLoadFailed, OSError, EOFError, zlib.error, ValueError):
        stats["malformed_tail"] += 1
