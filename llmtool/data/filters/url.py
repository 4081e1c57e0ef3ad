"""URL filter: block lists in UT1 format (the lists FineWeb used) and banned words in URLs.

Block lists come as files or folders, gzip or tar.gz (e.g. datatrove's
url_filterblacklistsv0_3_0.tar.gz or an unpacked UT1 `blacklists/` folder): files named
`domains` hold one domain per line, files named `urls` one URL per line (`#` comments).
A domain entry blocks its subdomains too (UT1's meaning). The word rules follow FineWeb:
any hard-banned word, or 2 soft-banned words, among the URL's alphanumeric runs, or a
banned sub-word anywhere in the URL with its punctuation removed.

    >>> from llmtool.data.filters.url import UrlFilter
    >>> f = UrlFilter(domains={"bad.example"})
    >>> f.check("https://www.bad.example/page"), f.check("https://good.example/a")
    ('domain', None)
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
from importlib.resources import files
from pathlib import Path

from llmtool.errors import BadInputError

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _read_list(name: str) -> set[str]:
    """A shipped word list, normalised as FineWeb does (lower-case, alphanumerics only)."""
    text = (files("llmtool.data.filters") / "lists" / name).read_text()
    return {_NON_ALNUM.sub("", w.lower()) for w in text.splitlines() if w.strip() and not w.startswith("#")}


def _lines(data: bytes) -> list[str]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    out = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _kind(name: str) -> str | None:
    base = os.path.basename(name).lower()
    for suffix in (".gz", ".txt"):
        base = base.removesuffix(suffix)
    return base if base in ("domains", "urls") else None


def load_blocklists(paths: list[str]) -> tuple[set[str], set[str]]:
    """(domains, urls) from UT1-style files, folders and tar(.gz) archives."""
    domains: set[str] = set()
    urls: set[str] = set()

    def add(kind: str | None, lines: list[str], origin: str) -> None:
        if kind == "urls":
            urls.update(normalise_url(u) for u in lines)
        elif kind == "domains":
            domains.update(d.lower().lstrip(".") for d in lines)
        else:  # a lone file with another name: URLs have a slash, domains do not
            for x in lines:
                (urls.add(normalise_url(x)) if "/" in x else domains.add(x.lower().lstrip(".")))

    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = [f for f in sorted(path.rglob("*")) if f.is_file() and _kind(f.name)]
            if not found:
                raise BadInputError(f"{p}: folder holds no UT1 'domains' or 'urls' files")
            for f in found:
                add(_kind(f.name), _lines(f.read_bytes()), str(f))
        elif path.is_file():
            if tarfile.is_tarfile(path):
                with tarfile.open(path) as tar:
                    for member in tar:
                        kind = _kind(member.name)
                        if member.isfile() and kind:
                            add(kind, _lines(tar.extractfile(member).read()), f"{p}:{member.name}")
            else:
                try:
                    add(_kind(path.name), _lines(path.read_bytes()), p)
                except (OSError, EOFError) as e:
                    raise BadInputError(f"{p}: unreadable block list ({e})")
        else:
            raise BadInputError(f"{p}: no such block list file or folder")
    return domains, urls


def normalise_url(url: str) -> str:
    """host/path without scheme, `www.`, port, fragment or trailing slash, lower-case host."""
    u = url.strip()
    if "://" in u:
        u = u.split("://", 1)[1]
    u = u.split("#", 1)[0]
    host, sep, rest = u.partition("/")
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].lower().removeprefix("www.")
    return (host + sep + rest).rstrip("/")


def host_of(url: str) -> str:
    return normalise_url(url).split("/", 1)[0].split("?", 1)[0]


class UrlFilter:
    name = "url"

    def __init__(self, domains: set[str] | None = None, urls: set[str] | None = None,
                 words: bool = True, soft_word_threshold: int = 2):
        self.domains = domains or set()
        self.urls = urls or set()
        self.soft_word_threshold = soft_word_threshold
        self.words = words
        if words:
            self.banned = _read_list("banned_words.txt")
            self.soft = _read_list("soft_banned_words.txt")
            subwords = sorted(_read_list("banned_subwords.txt"), key=len, reverse=True)
            self._subwords = re.compile("|".join(map(re.escape, subwords)))

    def check(self, url: str) -> str | None:
        """None to keep, else the rule that blocks the URL."""
        if self.domains:
            host = host_of(url)
            parts = host.split(".")
            # the host and each parent domain: a.b.example.com, b.example.com, example.com, com
            if any(".".join(parts[i:]) in self.domains for i in range(len(parts))):
                return "domain"
        if self.urls and normalise_url(url) in self.urls:
            return "url"
        if self.words:
            lower = url.lower()
            tokens = set(_NON_ALNUM.split(lower))
            if not self.banned.isdisjoint(tokens):
                return "banned_word"
            if len(self.soft.intersection(tokens)) >= self.soft_word_threshold:
                return "soft_banned_words"
            if self._subwords.search(_NON_ALNUM.sub("", lower)):
                return "banned_subword"
        return None
