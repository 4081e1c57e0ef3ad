"""fetch on malformed inputs (issue 10): archives built in the test, source lists, redirects, DNS."""

from __future__ import annotations

import gzip
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmtool.data import http
from llmtool.data.fetch import documents_of
from llmtool.data.sources import expand_sources
from llmtool.errors import BadInputError

PAGE = b"<html><body><p>Hello from a test page.</p></body></html>"


def warc_record(wtype: str, body: bytes, content_type: str, n: int = 0) -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {wtype}\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{n:012d}>\r\n"
            f"WARC-Date: 2024-05-18T01:58:10Z\r\nWARC-Target-URI: http://example.com/{n}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body + b"\r\n\r\n"


def http_response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + body


def read(path) -> tuple[list[dict], Counter]:
    stats: Counter = Counter()
    return list(documents_of(str(path), stats)), stats


# ---------------------------------------------------------------- archives


def test_text_starting_with_warc_is_counted_not_silent(tmp_path):
    f = tmp_path / "notes.warc"
    f.write_bytes(b"WARC/ is how the format starts; this file is only notes about it.\n")
    docs, stats = read(f)
    assert docs == []
    assert stats["not_a_warc (no records)"] == 1


def test_content_less_records_are_counted_by_type(tmp_path):
    f = tmp_path / "mixed.warc.gz"
    records = [
        warc_record("request", b"GET /0 HTTP/1.1\r\nHost: example.com\r\n\r\n",
                    "application/http; msgtype=request", 0),
        warc_record("response", http_response(PAGE), "application/http; msgtype=response", 1),
        warc_record("metadata", b'{"Envelope": {}}', "application/json", 2),  # a WAT record
        warc_record("revisit", b"HTTP/1.1 304 Not Modified\r\n\r\n", "application/http; msgtype=response", 3),
    ]
    f.write_bytes(b"".join(gzip.compress(r) for r in records))
    docs, stats = read(f)
    assert len(docs) == 1 and "Hello from a test page" in docs[0]["text"]
    assert stats["record_type:request"] == 1
    assert stats["record_type:metadata"] == 1
    assert stats["record_type:revisit"] == 1


def test_wat_file_with_only_metadata_records_says_why_it_is_empty(tmp_path):
    f = tmp_path / "x.warc.wat.gz"
    f.write_bytes(gzip.compress(warc_record("metadata", b'{"Envelope": {}}', "application/json")))
    docs, stats = read(f)
    assert docs == [] and stats["record_type:metadata"] == 1


def test_unparseable_record_is_counted_once(tmp_path):
    # fastwarc reads one record then stops; the resync parser rereads the file: one count, not two
    f = tmp_path / "bad.warc"
    f.write_bytes(b"WARC/1.0\r\nnot a header line\r\n\r\nbody")
    docs, stats = read(f)
    assert docs == [] and stats["record_type:missing"] == 1


def arc_gz(records: list[tuple[str, bytes]]) -> bytes:
    """An ARC file, one gzip member per record (as archive.org writes them)."""
    desc = b"1 0 Test\nURL IP-address Archive-date Content-type Archive-length\n"
    parts = [b"filedesc://test.arc 0.0.0.0 20140216050221 text/plain %d\n" % len(desc) + desc + b"\n"]
    for url, body in records:
        payload = http_response(body)
        head = b"%s 93.184.216.119 20140216050221 text/html %d\n" % (url.encode(), len(payload))
        parts.append(head + payload + b"\n")
    return b"".join(gzip.compress(p) for p in parts)


def test_arc_ids_are_deterministic_and_distinct(tmp_path):
    f = tmp_path / "x.arc.gz"
    f.write_bytes(arc_gz([("http://example.com/", PAGE), ("http://example.com/", PAGE),
                          ("http://example.com/b", PAGE)]))
    first, _ = read(f)
    again, _ = read(f)
    ids = [d["id"] for d in first]
    assert len(ids) == 3 and len(set(ids)) == 3  # equal records still get their own ids
    assert ids == [d["id"] for d in again]
    assert all(i.startswith("<urn:uuid:") for i in ids)


# ---------------------------------------------------------------- source lists


def test_list_that_lists_itself_is_refused(tmp_path):
    lst = tmp_path / "self.txt"
    lst.write_text("@self.txt\n")
    with pytest.raises(BadInputError, match="loop"):
        expand_sources([f"@{lst}"])


def test_lists_that_include_each_other_are_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("@sub/b.txt\n")
    (tmp_path / "sub" / "b.txt").write_text("@../a.txt\n")
    with pytest.raises(BadInputError, match=r"a.txt -> b.txt -> a.txt"):
        expand_sources([f"@{tmp_path / 'a.txt'}"])


def test_nested_list_entries_are_relative_to_their_list(tmp_path):
    (tmp_path / "sub").mkdir()
    page = tmp_path / "sub" / "page.html"
    page.write_bytes(PAGE)
    (tmp_path / "sub" / "inner.txt").write_text("page.html\n")
    (tmp_path / "outer.txt").write_text("@sub/inner.txt\n@sub/inner.txt\n")  # twice is not a loop
    assert expand_sources([f"@{tmp_path / 'outer.txt'}"]) == [str(page), str(page)]


def test_truncated_paths_gz_is_bad_input(tmp_path):
    full = gzip.compress(b"".join(b"crawl-data/x%d.warc.gz\n" % i for i in range(100)))
    f = tmp_path / "warc.paths.gz"
    f.write_bytes(full[: len(full) // 2])
    with pytest.raises(BadInputError, match="truncated or corrupt gzip"):
        expand_sources([str(f)])


# ---------------------------------------------------------------- redirects and DNS


class RedirectServer:
    """/to/SCHEME answers 302 to a URL of that scheme; /loop redirects to itself; /ok serves a page."""

    TARGETS = {"file": "file:///etc/passwd", "data": "data:text/plain,hello", "ftp": "ftp://127.0.0.1/x",
               "FILE": "FILE:///etc/hostname", "ok": "/ok"}

    def __init__(self):
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if self.path == "/ok":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(PAGE)))
                    self.end_headers()
                    self.wfile.write(PAGE)
                    return
                target = "/loop" if self.path == "/loop" else server.TARGETS[self.path.rsplit("/", 1)[-1]]
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def redirects():
    s = RedirectServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.mark.parametrize("scheme", ["file", "data", "ftp", "FILE"])
def test_redirect_off_http_is_refused_at_once(redirects, tmp_path, scheme):
    with pytest.raises(BadInputError, match="only redirects to http"):
        http.download(f"{redirects.url}/to/{scheme}", tmp_path, retries=3, backoff=0.01)
    assert redirects.requests == [f"/to/{scheme}"]  # not retried as a network failure


def test_redirect_to_http_is_still_followed(redirects, tmp_path):
    path = http.download(f"{redirects.url}/to/ok", tmp_path, retries=0)
    assert path.read_bytes() == PAGE


def test_redirect_loop_is_not_retried(redirects, tmp_path):
    with pytest.raises(BadInputError, match="redirect loop"):
        http.download(f"{redirects.url}/loop", tmp_path, retries=3, backoff=0.01)
    first = len(redirects.requests)
    assert first <= 11  # urllib's own limit for one attempt, and no second attempt


def _failing_resolver(code: int, calls: list):
    def getaddrinfo(*args, **kwargs):
        calls.append(args[0])
        raise socket.gaierror(code, "Name or service not known" if code == socket.EAI_NONAME
                              else "Temporary failure in name resolution")
    return getaddrinfo


def test_unknown_host_is_bad_input_without_retries(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(socket, "getaddrinfo", _failing_resolver(socket.EAI_NONAME, calls))
    with pytest.raises(BadInputError, match="cannot resolve host 'no-such-host.invalid'"):
        http.download("http://no-such-host.invalid/x.warc.gz", tmp_path, retries=3, backoff=0.01)
    assert calls == ["no-such-host.invalid"]


def test_resolver_not_answering_is_retried_then_bad_input(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(socket, "getaddrinfo", _failing_resolver(socket.EAI_AGAIN, calls))
    with pytest.raises(BadInputError, match="after 2 retries"):
        http.download("http://flaky.invalid/x.warc.gz", tmp_path, retries=2, backoff=0.01)
    assert len(calls) == 3
