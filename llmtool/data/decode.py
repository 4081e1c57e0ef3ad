"""Bytes → text for web payloads: declared charset, then UTF-8, then detection.

    >>> decode_payload("café".encode("latin-1"), "text/html; charset=iso-8859-1")
    'café'
"""

from __future__ import annotations

import codecs
import re

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-:.]+)", re.I)


# Browsers decode these labels with a superset codec (WHATWG Encoding Standard): pages
# labelled latin-1 routinely carry cp1252 punctuation (0x80-0x9f), gb2312 pages use GBK.
_WHATWG_SUPERSET = {
    "latin_1": "cp1252", "iso8859-1": "cp1252", "ascii": "cp1252",
    "iso8859-9": "cp1254", "iso8859-11": "cp874", "tis-620": "cp874",
    "gb2312": "gb18030", "gbk": "gb18030",
    "euc_kr": "cp949", "shift_jis": "cp932", "big5": "big5hkscs",
}


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        canonical = codecs.lookup(name.strip().lower()).name
    except LookupError:
        return None
    return _WHATWG_SUPERSET.get(canonical, canonical)


def declared_charset(content_type: str | None, payload: bytes) -> str | None:
    """The charset the HTTP header or the page's own <meta> declares, if it is a known codec."""
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        if m and (c := _codec(m.group(1))):
            return c
    m = _META_CHARSET.search(payload[:4096])
    if m:
        return _codec(m.group(1).decode("ascii", "ignore"))
    return None


def decode_payload(payload: bytes, content_type: str | None = None) -> str:
    """Decode a page. UTF-8 wins when it decodes cleanly: declared charsets are often wrong
    (pages saying iso-8859-1 while serving UTF-8), but valid UTF-8 by accident is rare."""
    if payload.startswith(codecs.BOM_UTF8):
        return payload[3:].decode("utf-8", errors="replace")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # A few stray invalid bytes in an otherwise UTF-8 page (a common CMS bug): still UTF-8.
    # (valid multi-byte characters far outnumber the invalid bytes; a cp1252 page has none).
    lenient = payload.decode("utf-8", errors="replace")
    invalid = lenient.count("\ufffd")
    multibyte = sum(1 for ch in lenient if ord(ch) > 0x7F) - invalid
    if multibyte >= 20 * invalid:
        return lenient
    declared = declared_charset(content_type, payload)
    if declared and declared != "utf-8":
        try:
            return payload.decode(declared)
        except (UnicodeDecodeError, LookupError):
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:200_000]).best()
    if best is not None:
        try:
            return payload.decode(best.encoding, errors="replace")
        except LookupError:
            pass
    return payload.decode("utf-8", errors="replace")


def looks_binary(payload: bytes) -> bool:
    """NUL bytes near the start mean an image, a PDF or another non-text payload."""
    return b"\x00" in payload[:2048]


def sniff_mime(payload: bytes) -> str | None:
    head = payload[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "text/html"
    if head.startswith(b"%pdf"):
        return "application/pdf"
    return None
