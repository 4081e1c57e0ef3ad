"""Seed artifacts: small, valid examples of everything llmtool reads, made by llmtool itself.

The crawl is built from the bundled public-domain novels (examples/data/books) with the
demo's page builder, so no shared data is needed; real files from the shared data folder are
added when it is present. Building takes about 15 s on a laptop-class CPU.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The smallest model pretrain accepts; every torch command the fuzzer runs uses these.
TINY = ["--depth", "1", "--context", "16", "--micro-batch", "2", "--threads", "1", "--device", "cpu",
        "--eval-tokens", "64", "--log-every", "0"]

# Real files worth mutating (small ones), by kind, relative to the shared data folder.
REAL = {
    "warc": ["web/warc/warcio_example.warc.gz", "web/warc/warcio_example-iana.org-chunked.warc",
             "web/warc/warcio_example-trunc.warc", "web/warc/warcio_example-wrong-chunks.warc.gz",
             "web/warc/whirlwind_CC-MAIN-2024-22.warc.gz", "web/warc/whirlwind_CC-MAIN-2024-22.warc.wat.gz",
             "web/warc/resiliparse_warcfile_CC-MAIN-2020-34.warc.gz"],
    "arc": ["web/warc/warcio_example.arc.gz"],
    "wet": ["web/wet/ccnet_sample.warc.wet", "web/wet/whirlwind_CC-MAIN-2024-22.warc.wet.gz"],
    "jsonl": ["web/text/dolma_cc_en_head-0091.jsonl.gz"],
    "text": ["web/html/cs336_moby.html", "web/html/trafilatura_resources_webpage.html.gz",
             "web/text/cs336_low_quality_cc.txt"],
}


def shared_data() -> Path:
    env = os.environ.get("LLMTOOL_DATA") or os.environ.get("LLMTOOL_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _llmtool(args: list[str], cwd: Path, env: dict, stdout=None) -> None:
    p = subprocess.run([sys.executable, "-m", "llmtool", *args], cwd=cwd, env=env, stdout=stdout,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"fuzz: building seeds failed: llmtool {' '.join(args)}\n{p.stderr.decode()[-2000:]}")


def _pages():
    """The demo's page builder (examples/make_sample_warc.py) and a few pages made with it."""
    spec = importlib.util.spec_from_file_location("make_sample_warc", ROOT / "examples" / "make_sample_warc.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    pages = []
    for book in sorted((ROOT / "examples" / "data" / "books").glob("*.txt.gz")):
        for i, (title, body) in enumerate(demo.chapters(gzip.decompress(book.read_bytes()).decode())[:4]):
            pages.append((f"https://classics.example.org/{book.name.split('.')[0]}/{i + 1}",
                          demo.page(title, body[:3000])))
    pages.append(("https://mirror.example.net/copy", pages[0][1]))  # an exact duplicate for dedup
    pages.append(("https://spam.example.com/0", demo.page("Offers", demo.JUNK[0])))
    pages.append(("https://dorf.example.de/geschichte", demo.page("Geschichte", demo.GERMAN * 4)))
    return pages, demo


def _arc(pages: list[tuple[str, str]]) -> bytes:
    """ARC v1: a filedesc record, then `URL IP DATE TYPE LENGTH` lines each followed by the HTTP reply."""
    def rec(header: str, body: bytes) -> bytes:
        return f"{header} {len(body)}\n".encode() + body + b"\n"

    desc = b"1 0 llmtool-fuzz\nURL IP-address Archive-date Content-type Archive-length\n"
    out = [rec("filedesc://crawl.arc 0.0.0.0 20240601120000 text/plain", desc)]
    for url, doc in pages:
        body = doc.encode()
        http = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        out.append(rec(f"{url} 192.0.2.1 20240601120000 text/html", http))
    return b"\n".join(out)


def _wet(pages: list[tuple[str, str]]) -> bytes:
    import re

    out = []
    for url, doc in pages:
        text = re.sub(r"<[^>]+>", "\n", doc)
        body = "\n".join(ln for ln in text.splitlines() if ln.strip()).encode()
        out.append((f"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {url}\r\n"
                    f"WARC-Date: 2024-06-01T12:00:00Z\r\nWARC-Record-ID: <urn:uuid:{len(out):08d}-0000-0000-0000-000000000000>\r\n"
                    f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body + b"\r\n\r\n")
    return b"".join(out)


def build(dest: Path, env: dict, use_real: bool = True) -> dict[str, list[Path]]:
    """Make the seed artifacts in `dest`; returns {kind: [seed paths]}."""
    dest.mkdir(parents=True, exist_ok=True)
    pages, demo = _pages()
    records = [demo.record(url, doc.encode(), "2024-06-01T12:00:00Z") for url, doc in pages]
    (dest / "crawl.warc.gz").write_bytes(b"".join(records))
    (dest / "crawl.warc").write_bytes(gzip.decompress(b"".join(records)))
    (dest / "crawl.arc").write_bytes(_arc(pages))
    (dest / "crawl.arc.gz").write_bytes(gzip.compress(_arc(pages), mtime=0))
    (dest / "crawl.warc.wet").write_bytes(_wet(pages))
    (dest / "crawl.warc.wet.gz").write_bytes(gzip.compress(_wet(pages), mtime=0))
    (dest / "page.html").write_text(pages[1][1])
    (dest / "doc.txt").write_text(pages[2][1].replace("<p>", "\n\n").split("<main>")[-1][:3000])
    (dest / "list.txt").write_text("crawl.warc.gz\n# a comment\ncrawl.arc\npage.html\n")
    (dest / "warc.paths.gz").write_bytes(gzip.compress(b"crawl.warc.gz\ncrawl.warc.wet.gz\n", mtime=0))

    w = ["-w", "1"]
    _llmtool(["fetch", "crawl.warc.gz", "-o", "pages.parquet", *w], dest, env)
    with open(dest / "pages.arrow", "wb") as f:
        _llmtool(["fetch", "crawl.warc.gz", "-o", "-", *w], dest, env, stdout=f)
    _llmtool(["filter", "pages.parquet", "-o", "clean.parquet", *w], dest, env)
    _write_jsonl(dest / "clean.parquet", dest / "docs.jsonl")
    (dest / "docs.jsonl.gz").write_bytes(gzip.compress((dest / "docs.jsonl").read_bytes(), mtime=0))
    _llmtool(["bpe-train", "clean.parquet", "--vocab-size", "300", "-o", "tok.json", *w], dest, env)
    _llmtool(["tokenize", "clean.parquet", "-t", "tok.json", "--val-docs", "1", "-o", "data.bin", *w], dest, env)
    # No --val: a resumed run would look for the seed folder's validation file by its path,
    # and a saved finding must replay without the seed folder.
    _llmtool(["pretrain", "data.bin", *TINY, "--max-steps", "2", "-o", "base"], dest, env)

    seeds = {
        "warc": [dest / "crawl.warc.gz", dest / "crawl.warc"],
        "arc": [dest / "crawl.arc", dest / "crawl.arc.gz"],
        "wet": [dest / "crawl.warc.wet", dest / "crawl.warc.wet.gz"],
        "jsonl": [dest / "docs.jsonl", dest / "docs.jsonl.gz"],
        "parquet": [dest / "pages.parquet", dest / "clean.parquet"],
        "arrow": [dest / "pages.arrow"],
        "tokfile": [dest / "data.bin", dest / "data.val.bin"],
        "tokenizer": [dest / "tok.json"],
        "checkpoint": [dest / "base"],
        "list": [dest / "list.txt"],
        "paths": [dest / "warc.paths.gz"],
        "text": [dest / "page.html", dest / "doc.txt"],
    }
    data = shared_data()
    if use_real and data.is_dir():
        for kind, names in REAL.items():
            seeds[kind] += [data / n for n in names if (data / n).is_file()]
    return seeds


def _write_jsonl(parquet: Path, out: Path) -> None:
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet, columns=["id", "url", "text"]).to_pylist()
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
