"""Anonymise e-mail addresses and public IPv4 addresses, respecting word boundaries.

datatrove's regexes match inside longer tokens: they rewrite the `2.4.10.1` of
`1.2.4.10.1` or `v2.4.10.1`, and the `99.1.1.1` inside `999.1.1.1`. llmtool only takes
an address that stands alone (no letter, digit or dotted number glued to either side),
skips dotted numbers introduced as a version ("version 2.4.10.1", "Apache/2.4.10.1",
"2.4.10.1-beta"), and keeps private,
loopback and reserved addresses, which identify no one. Replacements are chosen by a hash
of the address, so the output does not depend on document order or worker count, and the
same address is always replaced the same way.

    >>> from llmtool.data.filters.pii import anonymise
    >>> anonymise("Mail bob@corp.com from 8.8.8.8 or 10.0.0.1, release 2.4.10.1.2")
    'Mail email@example.com from 126.96.36.199 or 10.0.0.1, release 2.4.10.1.2'
"""

from __future__ import annotations

import ipaddress
import re
import zlib

EMAIL_REPLACEMENTS = ("email@example.com", "firstname.lastname@example.org")
# The documentation ranges are not "global", so FineWeb used random unresponsive addresses.
IP_REPLACEMENTS = ("22.214.171.124", "126.96.36.199", "188.8.131.52", "184.108.40.206",
                   "220.127.116.11", "18.104.22.168")

_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~@-])"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?<![\w.])(?<!\d\.){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d|-[A-Za-z])")
# What comes just before a dotted number that makes it a version: "version 2.4.10.1",
# "v 2.4.10.1", "Apache/2.4.10.1", "openssl-1.0.2.1" (a name glued with / or -).
_VERSION_BEFORE = re.compile(r"(?:\bversion|\bver\.?|\bv|\brelease|\bbuild|\bfirmware|\bkernel|\bupdate)\s*$"
                             r"|[A-Za-z][/-]$", re.IGNORECASE)


def _pick(options: tuple[str, ...], key: str) -> str:
    return options[zlib.crc32(key.encode()) % len(options)]


def _email(m: re.Match) -> str:
    return _pick(EMAIL_REPLACEMENTS, m.group(0))


def _ip(m: re.Match) -> str:
    addr = m.group(0)
    if _VERSION_BEFORE.search(m.string, max(0, m.start() - 12), m.start()):
        return addr
    try:
        if not ipaddress.IPv4Address(addr).is_global:
            return addr
    except ValueError:
        return addr
    return _pick(IP_REPLACEMENTS, addr)


def anonymise(text: str, emails: bool = True, ips: bool = True) -> str:
    if emails and "@" in text:
        text = _EMAIL.sub(_email, text)
    if ips and "." in text:
        text = _IPV4.sub(_ip, text)
    return text


def count(text: str) -> tuple[int, int]:
    """(e-mails, IPv4 addresses) that `anonymise` would replace, for --explain."""
    e = sum(1 for _ in _EMAIL.finditer(text)) if "@" in text else 0
    i = sum(1 for m in _IPV4.finditer(text) if _ip(m) != m.group(0))
    return e, i
