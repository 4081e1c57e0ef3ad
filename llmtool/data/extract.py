"""HTML to main-content text, under a per-document CPU-time budget.

Two extractors:
- `trafilatura` (default): FineWeb's settings, i.e. `favor_precision=True`,
  `include_comments=False`, `deduplicate=True`.
- `resiliparse`: Resiliparse's main-content mode, roughly 10x faster, a little less precise.

The budget counts the CPU time this process spends (ITIMER_PROF), not wall-clock time, so
a page is not lost because the machine is busy with other work: a page that exceeds it
is reported as `timeout`, never silently dropped.

    >>> from llmtool.data.extract import Extractor, is_html
    >>> is_html(None, "<!DOCTYPE html><html><body><p>Hi</p></body></html>")
    True
    >>> Extractor("resiliparse").extract("<html><body><article><p>Hello there, world.</p></article></body></html>")
    ('Hello there, world.', None)
"""

from __future__ import annotations

import re
import signal
import threading

EXTRACTORS = ("trafilatura", "resiliparse")

# Without a content type, a row is HTML when it starts with markup and has a document-level
# tag early on; plain text that merely quotes a <div> or <p> stays text.
_HTML_SNIFF = re.compile(r"<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_TEXT_TYPES = ("text/plain", "text/markdown", "text/x-markdown")


def is_html(content_type: str | None, text: str) -> bool:
    """HTML by its declared type, or by a tag near the start when the type is unknown."""
    if content_type:
        ct = content_type.split(";", 1)[0].strip().lower()
        return "html" in ct  # text/html, application/xhtml+xml
    head = text[:4096]
    return head.lstrip()[:1] == "<" and _HTML_SNIFF.search(head) is not None


def payload_kind(content_type: str | None, text: str) -> str:
    """'html', 'text' (use as is) or 'other' (a payload with no text to extract, e.g. a PDF)."""
    if is_html(content_type, text):
        return "html"
    if not content_type:
        return "text"
    ct = content_type.split(";", 1)[0].strip().lower()
    return "text" if ct in _TEXT_TYPES or ct == "" else "other"


class ExtractTimeout(BaseException):
    """Raised by the CPU-time alarm. A BaseException, so that the extractors' own
    `except Exception` blocks cannot swallow it."""


def _on_alarm(signum, frame):
    raise ExtractTimeout


class Extractor:
    """extract(html) -> (text or None, None) on success, (None, 'timeout'|'error'|'no_content')."""

    def __init__(self, name: str = "trafilatura", cpu_budget: float | None = 10.0):
        if name not in EXTRACTORS:
            raise ValueError(f"unknown extractor {name!r}")
        self.name = name
        self.cpu_budget = cpu_budget if cpu_budget and cpu_budget > 0 else None
        self._fn = None

    def _load(self):
        if self.name == "trafilatura":
            import logging

            from trafilatura import extract
            from trafilatura.deduplication import LRU_TEST

            # trafilatura logs a warning for every page it finds nothing in; llmtool counts those
            logging.getLogger("trafilatura").setLevel(logging.ERROR)

            def run(html: str) -> str | None:
                # `deduplicate` remembers text across pages in a process-wide cache, which would
                # make a page's text depend on the pages its worker saw before: start each page
                # afresh, so that repeats are removed within a page and output is deterministic.
                LRU_TEST.clear()
                return extract(html, favor_precision=True, include_comments=False, deduplicate=True)
        else:
            from resiliparse.extract.html2text import extract_plain_text

            def run(html: str) -> str | None:
                return extract_plain_text(html, main_content=True, list_bullets=True, alt_texts=False,
                                          links=False, form_fields=False, noscript=False,
                                          preserve_formatting=True)
        return run

    def extract(self, html: str) -> tuple[str | None, str | None]:
        if self._fn is None:
            self._fn = self._load()
        # signal handlers can only be set from the main thread (a pool worker's tasks run there)
        use_timer = (self.cpu_budget is not None and hasattr(signal, "ITIMER_PROF")
                     and threading.current_thread() is threading.main_thread())
        if use_timer:
            old = signal.signal(signal.SIGPROF, _on_alarm)
            signal.setitimer(signal.ITIMER_PROF, self.cpu_budget)
        try:
            try:
                text = self._fn(html)
            finally:
                if use_timer:
                    signal.setitimer(signal.ITIMER_PROF, 0)
        except ExtractTimeout:  # also when the alarm lands in the finally above
            return None, "timeout"
        except Exception:  # a page that breaks the parser is counted, not fatal
            return None, "error"
        finally:
            if use_timer:
                signal.signal(signal.SIGPROF, old)
        if not text or not text.strip():
            return None, "no_content"
        return text.strip(), None


# Elements whose content is never visible text, then comments, then any other tag. An element
# cut off by the end of the window is removed to the end (\Z).
_NOT_TEXT = re.compile(r"<(script|style|noscript|svg|template|textarea)\b.*?(?:</\1\s*>|\Z)"
                       r"|<!--.*?(?:-->|\Z)|<[^>]*>", re.IGNORECASE | re.DOTALL)
_BODY = re.compile(r"<body[\s>]", re.IGNORECASE)
_SCRIPT_TAG = re.compile(r"<(/?)(?:script|style)\b", re.IGNORECASE)


def sample_text(html: str, window: int = 16384) -> str:
    """Visible text from a window in the middle of a page's body, by regular expressions.

    About 0.15 ms a page, a tenth of a parse: enough to tell the language of most pages
    (llmtool filter's language pre-screen). The middle of the body is where the main
    content usually is; the first screenful is often navigation, in the site's language
    rather than the article's.

        >>> sample_text("<html><body><nav>Menü</nav><p>Hello &amp; welcome</p><script>x<1</script></body></html>")
        'Menü Hello & welcome'
    """
    import html as html_lib

    m = _BODY.search(html)
    start = m.start() if m else 0
    lo = max(start, start + (len(html) - start) // 2 - window // 2)
    win = html[lo:lo + window]
    if lo > start:
        # The window may begin inside a script or style element (start at its end tag, when
        # the first such tag is an end tag) or inside a tag (start after it).
        m = _SCRIPT_TAG.search(win)
        cut = m.start() if m and m.group(1) else 0
        if not cut:
            gt, lt = win.find(">"), win.find("<")
            if gt >= 0 and (lt < 0 or gt < lt):
                cut = gt + 1
        win = win[cut:]
    return html_lib.unescape(" ".join(_NOT_TEXT.sub(" ", win).split()))


def rough_text(html: str) -> str:
    """All of a page's visible text by resiliparse, ~10x cheaper than trafilatura: enough to
    tell the language of a page (llmtool filter's language pre-screen)."""
    from resiliparse.extract.html2text import extract_plain_text

    try:
        return extract_plain_text(html, main_content=False)
    except Exception:  # the precise extractor will have its own go at a page this breaks
        return ""

