"""Gopher's repetition and quality rules (Rae et al. 2021, table A1), as FineWeb runs them.

The rules and default thresholds follow datatrove's GopherRepetitionFilter and
GopherQualityFilter, so that llmtool keeps and drops the same documents. A threshold set
to None switches its rule off.

    >>> from llmtool.data.filters.gopher import GopherQuality
    >>> from llmtool.data.filters.words import Doc
    >>> GopherQuality().apply(Doc("too short"), {})[1]
    'short_doc'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from llmtool.data.filters.charsets import PUNCTUATION_SET
from llmtool.data.filters.words import Doc

_PARAGRAPHS = re.compile(r"\n{2,}")
_PUNCTUATION_CHARS = "".join(sorted(PUNCTUATION_SET))
_LINES = re.compile(r"\n+")


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in the repeats): first occurrences are free."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent word n-gram (its length times its count).

    The reference definition; `NgramIndex.top_chars` computes the same with numpy."""
    grams = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]  # ties: the first seen, as datatrove
    return len(gram) * count


def duplicate_ngram_chars(words: list[str], n: int, start: int = 0, seen: set | None = None) -> int:
    """Characters in n-grams that repeat an earlier one, skipping over each repeat found.

    The n-gram key concatenates its words without a separator, as datatrove does. `start`
    and `seen` resume the scan part-way (every n-gram before `start` already in `seen`).
    """
    seen = set() if seen is None else seen
    total = 0
    i = start
    last = len(words) - n + 1
    while i < last:
        gram = "".join(words[i:i + n])
        if gram in seen:
            total += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return total


class NgramIndex:
    """Word n-gram statistics of one document with numpy: each word gets an integer id and
    each n-gram a 64-bit hash of its ids, so counting and "seen before" tests are vectorised.

    Results equal the reference functions above (a 64-bit collision, or two n-grams whose
    words concatenate to the same string with different boundaries, would be needed to
    differ); the sequential skip-over-repeats scan of the duplicate rule only runs from the
    first repeated n-gram on, and not at all when even counting every repeat stays under
    the threshold.
    """

    def __init__(self, words: list[str]):
        import numpy as np

        self.np = np
        self.words = words
        ids = {w: i for i, w in enumerate(dict.fromkeys(words))}  # numbered by first occurrence
        self.ids = np.fromiter(map(ids.__getitem__, words), dtype=np.uint64, count=len(words))
        self.lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.cum = np.concatenate(([0], np.cumsum(self.lens)))
        self._cache: dict = {}

    def _hashes(self, n: int):
        """The n-gram hashes, each built from the (n-1)-gram ones: one pass per length."""
        np = self.np
        if n in self._cache:
            return self._cache[n]
        m = len(self.words) - n + 1
        if n == 1:
            h = self.ids + np.uint64(1)
        else:
            with np.errstate(over="ignore"):
                h = self._hashes(n - 1)[:m] * np.uint64(0x9E3779B97F4A7C15) + self.ids[n - 1:n - 1 + m] + np.uint64(1)
        self._cache[n] = h
        return h

    def _gram_chars(self, n: int):
        """Characters of each n-gram's words (without separators)."""
        return self.cum[n:] - self.cum[:-n]

    def _groups(self, n: int):
        """(positions of the n-grams sorted by hash, where each run of one n-gram starts, run lengths)."""
        np = self.np
        h = self._hashes(n)
        order = np.argsort(h)  # an unstable sort: 4x faster than a stable one, and nothing needs one
        sh = h[order]
        starts = np.flatnonzero(np.concatenate(([True], sh[1:] != sh[:-1])))
        counts = np.diff(np.append(starts, len(h)))
        return order, starts, counts

    def top_chars(self, n: int) -> int:
        np = self.np
        if len(self.words) < n:
            return 0
        order, starts, counts = self._groups(n)
        best = counts.max()
        # ties: the n-gram seen first, as Counter.most_common does
        firsts = np.minimum.reduceat(order, starts)
        pos = firsts[counts == best].min()
        return int((self._gram_chars(n)[pos] + n - 1) * best)

    def duplicate_chars(self, n: int, limit: float | None = None) -> int:
        """Exact duplicate_ngram_chars; with `limit`, may return any value above it early."""
        np = self.np
        m = len(self.words) - n + 1
        if m <= 0:
            return 0
        order, starts, counts = self._groups(n)
        if len(starts) == m:  # no n-gram occurs twice
            return 0
        # Every occurrence of an n-gram has the same length: all repeats together cover
        # (count - 1) x length characters per n-gram. The scan can only count fewer.
        upper = int((self._gram_chars(n)[order[starts]] * (counts - 1)).sum())
        if limit is not None and upper <= limit:
            return upper
        repeat = np.ones(m, dtype=bool)
        repeat[np.minimum.reduceat(order, starts)] = False  # first occurrences
        first = int(np.argmax(repeat))
        words = self.words
        seen = {"".join(words[i:i + n]) for i in range(first)}
        return duplicate_ngram_chars(words, n, first, seen)


@dataclass
class GopherRepetition:
    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_ngrams: tuple = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_ngrams: tuple = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))

    name = "gopher_rep"
    exact_metrics = False  # --explain sets it: compute every metric exactly, not just decide

    def apply(self, doc: Doc, m: dict) -> tuple[Doc, str | None]:
        text = doc.text
        if not text:
            return doc, "empty"
        size = len(text)
        # paragraphs first, then lines; for each, the share of repeated units, then of their chars
        for unit, split in (("para", lambda: _PARAGRAPHS.split(text.strip())), ("line", lambda: _LINES.split(text))):
            parts = split()
            n, chars = duplicates(parts)
            for rule, value in ((f"dup_{unit}_frac", n / len(parts)), (f"dup_{unit}_char_frac", chars / size)):
                m[rule] = value
                limit = getattr(self, rule)
                if limit and value > limit:
                    return doc, rule
        words = doc.words
        if len(words) < 64:  # numpy's fixed costs outweigh the Python loops on short texts
            top = lambda n: top_ngram_chars(words, n)  # noqa: E731
            dup = lambda n, limit: duplicate_ngram_chars(words, n)  # noqa: E731
        else:
            index = NgramIndex(words)
            top, dup = index.top_chars, index.duplicate_chars
        for n, frac in self.top_ngrams:
            value = m[f"top_{n}_gram_frac"] = top(n) / size
            if frac is not None and value > frac:
                return doc, f"top_{n}_gram"
        for n, frac in self.dup_ngrams:
            # Without --explain only the decision matters, so a bound under the threshold will do.
            limit = frac * size if frac is not None and not self.exact_metrics else None
            value = m[f"dup_{n}_gram_frac"] = dup(n, limit) / size
            if frac is not None and value > frac:
                return doc, f"dup_{n}_gram"
        return doc, None


STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclass
class GopherQuality:
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple = field(default=STOP_WORDS)

    name = "gopher_quality"

    def apply(self, doc: Doc, m: dict) -> tuple[Doc, str | None]:
        text = doc.text
        words = doc.words
        n_words = len(words)
        counts = Counter(words)  # the per-word rules look at each distinct word once
        # "Words" that are only punctuation do not count towards length rules.
        real = [(len(w), c) for w, c in counts.items() if w.strip(_PUNCTUATION_CHARS)]  # strip: in C
        m["n_words"] = n = sum(c for _, c in real)
        if self.min_doc_words and n < self.min_doc_words:
            return doc, "short_doc"
        if self.max_doc_words and n > self.max_doc_words:
            return doc, "long_doc"
        avg = m["avg_word_length"] = sum(size * c for size, c in real) / n if n else float("nan")
        if self.min_avg_word_length and avg < self.min_avg_word_length:
            return doc, "below_avg_word_length"
        if self.max_avg_word_length and avg > self.max_avg_word_length:
            return doc, "above_avg_word_length"
        if n_words:  # every ratio below is per word; an empty document has none
            m["hash_word_ratio"] = text.count("#") / n_words
            if self.max_symbol_word_ratio and m["hash_word_ratio"] > self.max_symbol_word_ratio:
                return doc, "too_many_hashes"
            m["ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / n_words
            if self.max_symbol_word_ratio and m["ellipsis_word_ratio"] > self.max_symbol_word_ratio:
                return doc, "too_many_ellipsis"
        lines = text.splitlines()
        if lines:
            bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            m["bullet_lines_ratio"] = bullets / len(lines)
            if self.max_bullet_lines_ratio and m["bullet_lines_ratio"] > self.max_bullet_lines_ratio:
                return doc, "too_many_bullets"
            ellipsis = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
            m["ellipsis_lines_ratio"] = ellipsis / len(lines)
            if self.max_ellipsis_lines_ratio and m["ellipsis_lines_ratio"] > self.max_ellipsis_lines_ratio:
                return doc, "too_many_end_ellipsis"
        if n_words:
            alpha = sum(c for w, c in counts.items() if w.isalpha() or any(map(str.isalpha, w)))
            m["alpha_words_ratio"] = alpha / n_words
            if self.min_alpha_words_ratio and m["alpha_words_ratio"] < self.min_alpha_words_ratio:
                return doc, "below_alpha_ratio"
        m["stop_words"] = len(set(self.stop_words).intersection(counts))
        if self.min_stop_words and m["stop_words"] < self.min_stop_words:
            return doc, "few_stop_words"
        return doc, None
