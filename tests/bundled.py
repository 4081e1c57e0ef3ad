"""Test inputs built from the bundled public-domain books (examples/data/books), so that the fast
tier needs nothing outside the repository. Deterministic: the same inputs on every run.

    >>> paras = paragraphs("It was\\na dark night.\\n\\n\\nThe end.")
    >>> paras
    ['It was a dark night.', 'The end.']
"""

from __future__ import annotations

import random
from pathlib import Path

BOOKS = ("pride_and_prejudice.txt", "moby_dick.txt")

# Web-like junk mixed into the book documents, each for a filter that should drop it.
NAV = "\n".join(["Home", "About us", "Books", "Contact", "Log in", "Privacy", "Terms", "Cart", "Help"])
GERMAN = ("Es war einmal ein kleines Dorf am Rande eines großen Waldes. Die Menschen dort lebten vom Holz "
          "und von der Jagd, und jeden Herbst feierten sie ein Fest, bei dem das ganze Dorf zusammenkam. "
          "Die Kinder spielten auf dem Platz, während die Alten Geschichten erzählten.")


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs with Project Gutenberg's hard line wraps undone."""
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def book_paragraphs(books: Path) -> list[str]:
    out: list[str] = []
    for name in BOOKS:
        out += paragraphs((books / name).read_text(encoding="utf-8"))
    return out


def book_documents(books: Path, n: int = 200, seed: int = 0) -> list[dict]:
    """`n` documents shaped like a web text table (`id`, `text`, `source`, `metadata`): runs of 1 to
    12 consecutive paragraphs of the books (short ones fail Gopher's length rule), and every few
    documents a page of navigation links, a German page, a page of repeated lines or a
    "lorem ipsum" page."""
    rng = random.Random(seed)
    paras = book_paragraphs(books)
    pos = 100  # past the title pages
    docs = []
    for i in range(n):
        if i % 11 == 5:
            text = NAV
        elif i % 13 == 6:
            text = "\n".join([GERMAN] * 3)
        elif i % 17 == 7:
            text = "\n".join(["Buy one, get one free! Offer ends soon."] * 30)
        elif i % 19 == 8:
            text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
        else:
            k = rng.randint(1, 12)
            text = "\n".join(paras[pos:pos + k])
            pos += k
        docs.append({"id": f"book-{i:04d}", "text": text, "source": "books",
                     "metadata": {"paragraph": pos, "seed": seed}})
    return docs


def perturb(text: str, rng: random.Random, share: float) -> str:
    """`text` with `share` of its words replaced by others (a near-duplicate)."""
    words = text.split(" ")
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(["the", "a", "sea", "whale", "letter", "ball", "ship", "house"])
    return " ".join(words)


def near_dup_corpus(books: Path, originals: int = 120, seed: int = 0) -> list[dict]:
    """A near-duplicate corpus with known answers, built like the real one in the data folder
    (`dedup/near_dup_corpus`): original documents (runs of paragraphs, 150+ words), exact
    copies, and copies with a share p of their words replaced, p in 0.01, 0.03, 0.05, 0.1, 0.2,
    0.35, 0.5. Fields: `text, base_id, kind (orig|exact|near), p` (0.0 unless near), `id`; rows
    shuffled."""
    rng = random.Random(seed)
    paras = book_paragraphs(books)
    rows = []
    pos = 100
    for b in range(originals):
        start = pos
        while len(" ".join(paras[start:pos]).split()) < 150:
            if pos == len(paras):
                raise ValueError(f"the books hold fewer than {originals} documents of 150 words")
            pos += 1
        text = "\n".join(paras[start:pos])
        base = f"d{b:04d}"
        # the real corpus's column order: text, base_id, kind, p, id
        rows.append({"text": text, "base_id": base, "kind": "orig", "p": 0.0, "id": base})
        if b % 4 == 0:
            rows.append({"text": text, "base_id": base, "kind": "exact", "p": 0.0, "id": base + "-exact"})
        p = (0.01, 0.03, 0.05, 0.1, 0.2, 0.35, 0.5)[b % 7]
        if b % 2 == 0:
            rows.append({"text": perturb(text, rng, p), "base_id": base, "kind": "near", "p": p,
                         "id": f"{base}-p{p}"})
    rng.shuffle(rows)
    return rows
