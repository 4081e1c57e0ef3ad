"""FineWeb's own rules (Penedo et al. 2024): line punctuation, short lines, duplicated
line characters, and list-like documents (many line breaks per word).

    >>> from llmtool.data.filters.fineweb import FineWebQuality
    >>> from llmtool.data.filters.words import Doc
    >>> FineWebQuality().apply(Doc("Menu\\nHome\\nAbout us\\nContact"), {})[1]
    'line_punct_ratio'
"""

from __future__ import annotations

from dataclasses import dataclass

from llmtool.data.filters.charsets import TERMINAL_PUNCTUATION_TUPLE
from llmtool.data.filters.gopher import duplicates
from llmtool.data.filters.words import Doc


@dataclass
class FineWebQuality:
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_dup_ratio: float = 0.01
    new_line_ratio: float = 0.3

    name = "fineweb"

    def apply(self, doc: Doc, m: dict) -> tuple[Doc, str | None]:
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return doc, "empty"
        ratio = m["line_punct_ratio"] = sum(1 for s in lines if s.endswith(TERMINAL_PUNCTUATION_TUPLE)) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return doc, "line_punct_ratio"
        ratio = m["short_line_ratio"] = sum(1 for s in lines if len(s) <= self.short_line_length) / len(lines)
        if ratio > self.short_line_thr:
            return doc, "short_line_ratio"
        ratio = m["char_dup_ratio"] = duplicates(lines)[1] / len(text.replace("\n", ""))
        if ratio > self.char_dup_ratio:
            return doc, "char_dup_ratio"
        n_words = len(doc.words)
        ratio = m["new_line_ratio"] = text.count("\n") / n_words if n_words else float("inf")
        if ratio > self.new_line_ratio:
            return doc, "list_ratio"
        return doc, None
