"""Downloads for fetch: streamed to disk, retried with backoff, resumed, checksummed.

A download goes to `CACHE/NAME.part` and is renamed to `CACHE/NAME` only when complete
(and, with `sha256`, verified), so an interrupted run resumes where it stopped and a
finished file is reused without touching the network.

    >>> path = download("https://example.org/x.warc.gz", cache_dir)   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from llmtool import __version__
from llmtool.errors import BadInputError, LlmtoolError, UsageError

CHUNK = 1 << 20


def default_cache_dir() -> Path:
    env = os.environ.get("LLMTOOL_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmtool"
    return base / "downloads"


def hf_to_url(uri: str) -> str:
    """hf://datasets/OWNER/NAME/PATH -> the Hub's resolve URL (HF_ENDPOINT overrides the host)."""
    rest = uri[len("hf://"):]
    parts = rest.split("/")
    if len(parts) < 4 or parts[0] != "datasets":
        raise UsageError(f"{uri}: expected hf://datasets/OWNER/NAME/PATH")
    owner, name, path = parts[1], parts[2], "/".join(parts[3:])
    revision = "main"
    if "@" in name:
        name, revision = name.split("@", 1)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/datasets/{owner}/{name}/resolve/{revision}/{path}"


def cache_name(url: str) -> str:
    base = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "download"
    return f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{base}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


_URL_SAFE = "/%:@!$&'()*+,;=-._~?#[]"  # reserved and unreserved characters stay as they are


def request_url(url: str) -> str:
    """The URL as it goes on the wire: non-ASCII text percent-encoded (UTF-8) and the host in
    IDNA, as browsers do; control characters are a bad URL, not a network failure.

    >>> request_url("https://example.org/caf\u00e9 menu?q=\u00e9")
    'https://example.org/caf%C3%A9%20menu?q=%C3%A9'
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise BadInputError(f"{url!r}: a URL cannot contain control characters")
    if url.isascii() and " " not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port
    except (UnicodeError, ValueError):
        raise BadInputError(f"{url!r}: the host name or port is not valid")
    netloc = host + (f":{port}" if port else "")
    if parts.username:
        netloc = f"{urllib.parse.quote(parts.username)}:{urllib.parse.quote(parts.password or '')}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, urllib.parse.quote(parts.path, safe=_URL_SAFE),
                                    urllib.parse.quote(parts.query, safe=_URL_SAFE),
                                    urllib.parse.quote(parts.fragment, safe=_URL_SAFE)))


def download(url: str, cache_dir: Path, sha256: str | None = None, retries: int = 5,
             timeout: float = 30.0, backoff: float = 1.0, log=lambda msg: None) -> Path:
    """Fetch `url` into the cache (resuming a partial file) and return the local path."""
    url = request_url(url)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / cache_name(url)
    part = final.with_name(final.name + ".part")
    if final.exists():
        if sha256 and _sha256(final) != sha256.lower():
            final.unlink()
        else:
            return final
    attempt = 0
    while True:
        dns_failed = False
        try:
            _transfer(url, part, timeout)
            break
        except urllib.error.HTTPError as e:
            if e.code in (404, 410, 401, 403):
                raise BadInputError(f"{url}: HTTP {e.code} {e.reason}")
            if 300 <= e.code < 400:  # asking again gives the same loop or the same dead end
                raise BadInputError(f"{url}: HTTP {e.code}: a redirect loop, or a redirect without a target")
            if e.code == 416:  # our partial file is longer than the resource: start over
                part.unlink(missing_ok=True)
            err = f"HTTP {e.code} {e.reason}"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            err = str(reason) or type(e).__name__
            if isinstance(reason, socket.gaierror):
                # A host that does not exist is a wrong URL (exit 3); only "try again later"
                # (EAI_AGAIN: no answer from the resolver) is worth retrying.
                dns_failed = True
                err = f"cannot resolve host {urllib.parse.urlsplit(url).hostname!r}: {reason.strerror or reason}"
                if reason.errno != socket.EAI_AGAIN:
                    raise BadInputError(f"{url}: {err}")
        attempt += 1
        if attempt > retries:
            if dns_failed:
                raise BadInputError(f"{url}: {err} (after {retries} retries)")
            raise LlmtoolError(f"{url}: download failed after {retries} retries ({err}); "
                               f"rerun to resume from {part.stat().st_size if part.exists() else 0} bytes")
        delay = backoff * 2 ** (attempt - 1)
        log(f"{url}: {err}; retry {attempt}/{retries} in {delay:.1f}s")
        time.sleep(delay)
    if sha256:
        got = _sha256(part)
        if got != sha256.lower():
            part.unlink()
            raise BadInputError(f"{url}: sha256 mismatch (expected {sha256}, got {got}); the partial file was removed")
    os.replace(part, final)
    return final


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only.

    urllib raises a retryable-looking HTTPError for a redirect to file: or data: (so it was
    retried as a network failure) and follows ftp:. A download must never be pointed at
    a local file or another protocol by the server: refuse at once (bad input, exit 3).
    """

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target:
            scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target.strip())).scheme
            if scheme.lower() not in ("http", "https"):
                fp.close()
                raise BadInputError(f"{req.full_url}: the server redirects to {target[:200]!r}; "
                                    f"only redirects to http(s) URLs are followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _transfer(url: str, part: Path, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": f"llmtool/{__version__}"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    with _OPENER.open(req, timeout=timeout) as resp:
        status = resp.status
        if have and status != 206:
            have = 0  # the server ignored Range: rewrite from the start
        total = resp.headers.get("Content-Length")
        expected = have + int(total) if total and total.isdigit() else None
        with open(part, "ab" if have else "wb") as out:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
    size = part.stat().st_size
    if expected is not None and size < expected:
        raise ConnectionError(f"connection closed after {size} of {expected} bytes")
