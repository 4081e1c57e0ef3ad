"""Build the demo's web crawl: the bundled novels' chapters as pages in a WARC file.

Each chapter becomes an HTML page with navigation, a cookie banner and a footer (so text
extraction has boilerplate to remove). The crawl also holds exact copies and near-copies
of some pages (for dedup), a few thin "junk" pages (for the quality filters), and a page
in German (for language ID). Deterministic: the same file every run.

    python examples/make_sample_warc.py examples/data/books demo_out/crawl.warc.gz
"""

from __future__ import annotations

import gzip
import html
import random
import re
import sys
import uuid
from pathlib import Path

NAV = ('<nav><ul><li><a href="/">Home</a></li><li><a href="/books">Books</a></li>'
       '<li><a href="/about">About us</a></li><li><a href="/login">Log in</a></li></ul></nav>')
BANNER = '<div class="cookie">We use cookies to improve your experience. <button>Accept</button></div>'
FOOTER = ('<footer><p>© 2024 Sample Classics Library. All rights reserved.</p>'
          '<p><a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact</a></p></footer>')
GERMAN = ("Es war einmal ein kleines Dorf am Rande eines großen Waldes. Die Menschen dort lebten "
          "vom Holz und von der Jagd, und jeden Herbst feierten sie ein Fest, bei dem das ganze Dorf "
          "zusammenkam. Die Kinder spielten auf dem Platz, während die Alten Geschichten erzählten. ")
JUNK = ["Buy now! Best prices! Click here!", "Loading...", "404 page not found", "Home | About | Contact"]


def chapters(text: str) -> list[tuple[str, str]]:
    parts = re.split(r"\n(?=(?:CHAPTER|Chapter) [0-9IVXLC]+)", text)
    out = []
    for part in parts:
        title, _, body = part.strip().partition("\n")
        if len(body) > 2000:
            out.append((title.strip(), body.strip()))
    return out


def page(title: str, body: str) -> str:
    paras = "".join(f"<p>{html.escape(' '.join(p.split()))}</p>" for p in body.split("\n\n") if p.strip())
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head><body>{BANNER}{NAV}<main><article><h1>{html.escape(title)}</h1>{paras}"
            f"</article></main>{FOOTER}</body></html>")


def perturb(body: str, rng: random.Random, share: float) -> str:
    words = body.split(" ")
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(["the", "a", "sea", "whale", "letter", "ball"])
    return " ".join(words)


def record(url: str, body: bytes, date: str) -> bytes:
    http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\n"
            f"WARC-Date: {date}\r\nWARC-Target-URI: {url}\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n")
    return gzip.compress(head.encode() + http + b"\r\n\r\n", mtime=0)


def main(books_dir: str, out: str) -> None:
    rng = random.Random(0)
    pages: list[tuple[str, str]] = []
    for book in sorted(Path(books_dir).glob("*.txt.gz")):
        name = book.name.split(".")[0]
        for i, (title, body) in enumerate(chapters(gzip.decompress(book.read_bytes()).decode())):
            pages.append((f"https://classics.example.org/{name}/{i + 1}", page(title, body)))
            if i % 10 == 3:  # a mirror site copying the page verbatim
                pages.append((f"https://mirror.example.net/{name}/{i + 1}", page(title, body)))
            if i % 10 == 7:  # a scraper that changed a few words
                pages.append((f"https://scraped.example.com/{name}-{i + 1}.html",
                              page(title, perturb(body, rng, 0.03))))
    for j, junk in enumerate(JUNK):
        pages.append((f"https://spam.example.com/{j}", page("Offers", junk)))
    pages.append(("https://dorf.example.de/geschichte", page("Geschichte", GERMAN * 12)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        for k, (url, doc) in enumerate(pages):
            f.write(record(url, doc.encode(), f"2024-06-{1 + k % 28:02d}T12:00:00Z"))
    print(f"{out}: {len(pages)} pages", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
