"""FineWeb's filter pipeline: every step in order, one reason per dropped document.

    url -> extract -> lid -> gopher_rep -> gopher_quality -> c4 -> fineweb -> pii

    >>> from llmtool.data.filters.pipeline import Pipeline, Settings
    >>> p = Pipeline(Settings(skip={"lid"}))
    >>> p.process("Buy now, buy now!", url="https://shop.example/")[0]
    'gopher_rep:top_2_gram'
    >>> p.process("<html>", content_type="application/pdf")[0]
    'extract:not_html'

A reason reads `step:rule` (e.g. `c4:too_few_sentences`). `process` is pure: the same row
always gives the same result, whatever process runs it, which is what lets `llmtool filter`
spread rows over workers and still write identical output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llmtool.data.extract import Extractor, payload_kind, rough_text, sample_text
from llmtool.data.filters.c4 import C4Quality
from llmtool.data.filters.fineweb import FineWebQuality
from llmtool.data.filters.gopher import GopherQuality, GopherRepetition
from llmtool.data.filters.lid import LanguageId
from llmtool.data.filters.pii import anonymise, count
from llmtool.data.filters.url import UrlFilter
from llmtool.data.filters.words import Doc

STEPS = ("url", "extract", "lid", "gopher_rep", "gopher_quality", "c4", "fineweb", "pii")
TEXT_FILTERS = ("gopher_rep", "gopher_quality", "c4", "fineweb")

# Per-document numbers that --explain adds as columns (null when the step did not run).
METRICS = (
    "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
    "top_2_gram_frac", "top_3_gram_frac", "top_4_gram_frac",
    "dup_5_gram_frac", "dup_6_gram_frac", "dup_7_gram_frac", "dup_8_gram_frac", "dup_9_gram_frac",
    "dup_10_gram_frac",
    "n_words", "avg_word_length", "hash_word_ratio", "ellipsis_word_ratio", "bullet_lines_ratio",
    "ellipsis_lines_ratio", "alpha_words_ratio", "stop_words",
    "c4_sentences", "c4_lines_kept_frac",
    "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "new_line_ratio",
    "pii_emails", "pii_ips",
)


@dataclass
class Settings:
    """Everything that decides the output (recorded in the provenance)."""

    skip: set[str] = field(default_factory=set)
    extractor: str = "trafilatura"
    extract_cpu_budget: float = 10.0
    # Skip extraction on pages whose sampled text is confidently in another language (a page
    # then costs ~0.3 ms instead of ~2 ms with resiliparse or ~25 ms with trafilatura), and
    # full-text language ID on long texts whose first 1000 characters are. docs/filter.md
    # has its agreement.
    lid_prescreen: bool = True
    languages: list[str] | None = field(default_factory=lambda: ["en"])
    lang_threshold: float = 0.65
    url_words: bool = True
    pii_emails: bool = True
    pii_ips: bool = True
    gopher_rep: GopherRepetition = field(default_factory=GopherRepetition)
    gopher_quality: GopherQuality = field(default_factory=GopherQuality)
    c4: C4Quality = field(default_factory=C4Quality)
    fineweb: FineWebQuality = field(default_factory=FineWebQuality)

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["skip"] = sorted(self.skip)
        return d


# ------------------------------------------------------------------ --set NAME=VALUE

TUNABLE = {"gopher_rep": GopherRepetition, "gopher_quality": GopherQuality, "c4": C4Quality,
           "fineweb": FineWebQuality}


def tunable_names() -> list[str]:
    return [f"{group}.{f.name}" for group, cls in TUNABLE.items() for f in dataclasses.fields(cls)
            if f.name != "stop_words"] + ["gopher_quality.stop_words"]


def _parse_value(name: str, current, raw: str):
    """A --set value in the type of the default it replaces; `off`/`none` disables a rule."""
    text = raw.strip()
    if text.lower() in ("off", "none", "null"):
        return None if not isinstance(current, bool) else False
    if isinstance(current, bool):
        if text.lower() in ("true", "on", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        raise ValueError(f"{name}: expected on/off, got {raw!r}")
    if name.endswith("stop_words"):
        return tuple(w for w in text.split(",") if w)
    if isinstance(current, tuple):  # n-gram rules: "2:0.2,3:0.18"
        pairs = []
        for part in text.split(","):
            n, _, frac = part.partition(":")
            pairs.append((int(n), float(frac)))
        return tuple(pairs)
    if isinstance(current, int) and "." not in text:
        return int(text)
    return float(text)


def apply_settings(settings: Settings, assignments: list[str]) -> None:
    """Apply `group.name=value` strings; ValueError with a clear message on a bad one."""
    for a in assignments:
        key, eq, raw = a.partition("=")
        group, dot, name = key.strip().partition(".")
        target = getattr(settings, group, None) if group in TUNABLE else None
        if not eq or not dot or target is None or name not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"--set {a!r}: expected NAME=VALUE with NAME one of: {', '.join(tunable_names())}")
        try:
            value = _parse_value(key, getattr(target, name), raw)
        except ValueError as e:
            raise ValueError(f"--set {a!r}: {e}")
        setattr(target, name, value)


# ------------------------------------------------------------------ the pipeline

Result = tuple  # (reason | None, text | None, language | None, score | None, metrics)


class Pipeline:
    def __init__(self, settings: Settings, domains: set[str] | None = None, urls: set[str] | None = None,
                 explain: bool = False):
        self.s = settings
        self.explain = explain
        run = lambda step: step not in settings.skip  # noqa: E731
        self.url = UrlFilter(domains, urls, words=settings.url_words) if run("url") else None
        self.extractor = Extractor(settings.extractor, settings.extract_cpu_budget) if run("extract") else None
        self.lid = LanguageId(settings.languages, settings.lang_threshold) if run("lid") else None
        self.filters = [getattr(settings, name) for name in TEXT_FILTERS if run(name)]
        settings.gopher_rep.exact_metrics = explain
        self.pii = run("pii")
        self.prescreen = self.lid is not None and settings.lid_prescreen and settings.languages is not None

    def process(self, text: str | None, url: str | None = None, content_type: str | None = None) -> Result:
        m: dict = {}
        if self.url is not None and url:
            why = self.url.check(url)
            if why:
                return f"url:{why}", None, None, None, m
        if text is None or not text.strip():
            return "extract:empty", None, None, None, m
        kind = payload_kind(content_type, text)
        if kind == "other":
            return "extract:not_html", None, None, None, m
        if kind == "html" and self.extractor is not None:
            if self.prescreen:
                # A regex sample of the page (~0.2 ms with its language ID) first; trafilatura
                # (~25 ms a page) is also worth a second look at resiliparse's rough text (~2 ms).
                other = self.lid.clearly_other(sample_text(text), prefix=1000)
                if other is None and self.s.extractor == "trafilatura":
                    other = self.lid.clearly_other(rough_text(text))
                if other is not None:
                    m["language_score"] = other[1]
                    return "lid:other_language", None, other[0], other[1], m
            text, why = self.extractor.extract(text)
            if why:
                return f"extract:{why}", None, None, None, m
        language = score = None
        if self.lid is not None:
            # The first 1000 characters are enough to see that a long text is in another
            # language; only the others pay for language ID over the whole text.
            other = self.lid.clearly_other(text, prefix=1000) if self.prescreen and len(text) > 3000 else None
            if other is not None:
                m["language_score"] = other[1]
                return "lid:other_language", None, other[0], other[1], m
            language, score, why = self.lid.apply(text, m)
            if why:
                return f"lid:{why}", None, language, score, m
        doc = Doc(text)
        for f in self.filters:
            doc, why = f.apply(doc, m)
            if why:
                return f"{f.name}:{why}", None, language, score, m
        out = doc.text
        if self.pii:
            if self.explain:
                m["pii_emails"], m["pii_ips"] = count(out)
            out = anonymise(out, self.s.pii_emails, self.s.pii_ips)
        return None, out, language, score, m

    def process_many(self, rows: list[tuple]) -> list[Result]:
        return [self.process(*row) for row in rows]
