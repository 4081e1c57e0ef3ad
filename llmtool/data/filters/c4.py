"""C4's line and document rules (Raffel et al. 2020), with FineWeb's settings.

FineWeb keeps lines without terminal punctuation (`terminal_punct=False`); the other rules
are C4's: drop lines with fewer than 3 words, a word over 1000 characters, "javascript", or
a cookie/terms-of-use phrase; drop the document for "lorem ipsum" or a curly bracket, or
when fewer than 5 sentences remain. The kept lines become the document's text, as in
datatrove, so later filters and the output see the cleaned text.

    >>> from llmtool.data.filters.c4 import C4Quality
    >>> from llmtool.data.filters.words import Doc
    >>> C4Quality().apply(Doc("var x = {a: 1};"), {})[1]
    'curly_bracket'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmtool.data.filters.words import Doc, count_sentences, tokenize

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                  "use of cookies", "use cookies")


@dataclass
class C4Quality:
    terminal_punct: bool = False
    remove_citations: bool = True
    min_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    lorem_ipsum: bool = True
    javascript: bool = True
    curly_bracket: bool = True
    policy: bool = True

    name = "c4"

    def apply(self, doc: Doc, m: dict) -> tuple[Doc, str | None]:
        kept: list[str] = []
        kept_words: list[list[str] | None] = []
        sentences = 0
        for i, raw in enumerate(doc.lines):
            line = raw.strip()
            words = line.split()
            if self.max_word_length != -1 and any(len(w) > self.max_word_length for w in words):
                continue
            tokens: list[str] | None = None
            if self.remove_citations and "[" in line:
                cleaned = CITATION.sub("", line)
                if cleaned != line:
                    line, tokens = cleaned, tokenize(cleaned)
            if self.terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                continue
            if len(words) < self.min_words_per_line:
                continue
            lower = line.lower()
            if self.lorem_ipsum and "lorem ipsum" in lower:
                return doc, "lorem_ipsum"
            if self.javascript and "javascript" in lower:
                continue
            if self.curly_bracket and "{" in line:
                return doc, "curly_bracket"
            if self.policy and any(p in lower for p in POLICY_PHRASES):
                continue
            if tokens is None:
                tokens = doc.line_words(i)
            if self.min_sentences != -1:
                sentences += count_sentences(tokens)
            kept.append(line)
            kept_words.append(tokens)
        m["c4_sentences"] = sentences
        m["c4_lines_kept_frac"] = len(kept) / len(doc.lines) if doc.lines else 0.0
        if sentences < self.min_sentences:
            return doc, "too_few_sentences"
        return Doc.from_lines(kept, kept_words), None
