"""fetch over HTTP against a local server on 127.0.0.1: success, 404, drops, resume, timeouts."""

import gzip
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

PAGES = 232  # in the demo crawl the server serves (the `sample_warc` fixture)


class Server:
    """Serves `files` with Range support; /drop/ paths cut the first response in half."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if self.path.startswith("/slow/"):
                    time.sleep(3)
                name = self.path.split("/")[-1]
                body = server.files.get(name)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                part = body[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(part)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if self.path.startswith("/drop/") and self.path not in server.dropped:
                    server.dropped.add(self.path)
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server(sample_warc):
    s = Server({"x.warc.gz": sample_warc.read_bytes(),
                "train.parquet": _parquet_bytes()})
    yield s
    s.close()


def _parquet_bytes() -> bytes:
    import io

    import pyarrow as pa

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["a doc", "another doc"], "id": ["1", "2"]}), buf)
    return buf.getvalue()


def _env(tmp_path):
    return {"LLMTOOL_CACHE": str(tmp_path / "cache")}


def test_download_success_and_cache_reuse(cli, server, tmp_path):
    out = tmp_path / "o.parquet"
    r = cli("fetch", f"{server.url}/x.warc.gz", "-o", out, "--json", env=_env(tmp_path))
    assert r.rc == 0, r.err
    assert json.loads(r.out)["documents"] == PAGES
    n = len(server.requests)
    r = cli("fetch", f"{server.url}/x.warc.gz", "-o", out, "--force", env=_env(tmp_path))
    assert r.rc == 0 and len(server.requests) == n  # served from the cache


def test_404_is_a_clear_error(cli, server, tmp_path):
    r = cli("fetch", f"{server.url}/missing.warc.gz", "-o", tmp_path / "o.parquet", env=_env(tmp_path))
    assert r.rc == 3 and "HTTP 404" in r.err and "Traceback" not in r.err
    assert not (tmp_path / "o.parquet").exists()


def test_dropped_connection_is_resumed_and_checksum_matches(cli, server, tmp_path):
    digest = hashlib.sha256(server.files["x.warc.gz"]).hexdigest()
    r = cli("fetch", f"{server.url}/drop/x.warc.gz", "--sha256", digest, "-o", tmp_path / "o.parquet",
            "--json", env=_env(tmp_path))
    assert r.rc == 0, r.err
    assert json.loads(r.out)["documents"] == PAGES
    ranges = [rng for path, rng in server.requests if path.startswith("/drop/")]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


def test_wrong_checksum_is_refused(cli, server, tmp_path):
    r = cli("fetch", f"{server.url}/x.warc.gz", "--sha256", "0" * 64, "-o", tmp_path / "o.parquet",
            env=_env(tmp_path))
    assert r.rc == 3 and "sha256 mismatch" in r.err
    assert not list((tmp_path / "cache").rglob("*x.warc.gz*"))


def test_slow_server_times_out(cli, server, tmp_path):
    t0 = time.time()
    r = cli("fetch", f"{server.url}/slow/x.warc.gz", "--timeout", "0.5", "--retries", "1",
            "-o", tmp_path / "o.parquet", env=_env(tmp_path))
    assert r.rc == 1 and "download failed after 1 retries" in r.err
    assert time.time() - t0 < 30


def test_hf_paths_map_to_the_hub_resolve_url(cli, server, tmp_path):
    server.files["data.parquet"] = _parquet_bytes()
    env = {**_env(tmp_path), "HF_ENDPOINT": server.url}
    r = cli("fetch", "hf://datasets/someone/corpus/data/data.parquet", "-o", tmp_path / "o.parquet",
            "--json", env=env)
    assert r.rc == 0, r.err
    assert json.loads(r.out)["documents"] == 2
    assert server.requests[-1][0] == "/datasets/someone/corpus/resolve/main/data/data.parquet"


def test_common_crawl_paths_list_with_base_url(cli, server, tmp_path):
    paths = tmp_path / "warc.paths.gz"
    paths.write_bytes(gzip.compress(b"crawl-data/x.warc.gz\nmissing.warc.gz\n"))
    r = cli("fetch", paths, "--base-url", server.url, "-o", tmp_path / "o.parquet", "--json",
            env=_env(tmp_path))
    assert r.rc == 0, r.err
    summary = json.loads(r.out)
    assert summary["documents"] == PAGES and summary["failed_sources"] == 1
    assert "HTTP 404" in r.err  # the failed source is reported, not lost silently


def test_all_sources_failing_leaves_the_older_output_untouched(cli, server, tmp_path):
    # found by the fuzzer: fetch said "all sources failed" after replacing the existing output
    out = tmp_path / "o.parquet"
    assert cli("fetch", f"{server.url}/train.parquet", "-o", out, env=_env(tmp_path)).rc == 0
    before = out.read_bytes()
    r = cli("fetch", f"{server.url}/gone1.parquet", f"{server.url}/gone2.parquet", "-o", out,
            env=_env(tmp_path))
    assert r.rc == 3 and "Traceback" not in r.err, r.err
    assert r.err.strip().splitlines()[-1].startswith("llmtool fetch: error: all 2 sources failed")
    assert out.read_bytes() == before
