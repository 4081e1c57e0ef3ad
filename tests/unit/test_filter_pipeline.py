"""The pipeline: order, reasons, skips, --set thresholds, determinism."""

from __future__ import annotations

import pytest

from llmtool.data.filters.pipeline import METRICS, Pipeline, Settings, apply_settings, tunable_names

from .test_filter_rules import GOOD

HTML = f"<html><head><title>Town</title></head><body><nav>Home | About</nav><article><p>{GOOD}</p>" \
       "<p>Contact us at info@town-museum.org or visit 93.184.216.34 for the archive.</p></article></body></html>"


def test_html_row_goes_all_the_way():
    p = Pipeline(Settings())
    reason, text, lang, score, m = p.process(HTML, "https://town.example/history", "text/html")
    assert reason is None and lang == "en" and score > 0.65
    assert "Home | About" not in text and "abbey" in text
    assert "info@town-museum.org" not in text and "93.184.216.34" not in text


def test_reasons_name_the_step_and_rule():
    p = Pipeline(Settings())
    assert p.process(GOOD, "https://x.example/porn")[0] == "url:banned_word"
    assert p.process("   ")[0] == "extract:empty"
    assert p.process(None)[0] == "extract:empty"
    assert p.process("%PDF", content_type="application/pdf")[0] == "extract:not_html"
    assert p.process("<html><body></body></html>", content_type="text/html")[0] == "extract:no_content"
    assert p.process("Das ist ein deutscher Satz über das Wetter und die Stadt.")[0] == "lid:other_language"
    assert p.process("The cat sat on the mat by the door of the house.")[0].startswith("gopher_")


def test_skip_and_only():
    p = Pipeline(Settings(skip={"lid", "gopher_rep", "gopher_quality", "c4", "fineweb"}))
    reason, text, lang, _, _ = p.process("Das ist kurz.")
    assert reason is None and text == "Das ist kurz." and lang is None
    p = Pipeline(Settings(skip={"pii"}))
    assert "93.184.216.34" in p.process(HTML, None, "text/html")[1]


def test_set_thresholds():
    s = Settings()
    apply_settings(s, ["gopher_quality.min_doc_words=5", "c4.terminal_punct=on", "fineweb.line_punct_thr=off",
                       "gopher_rep.top_ngrams=2:0.5,3:0.5", "gopher_quality.stop_words=a,the"])
    assert s.gopher_quality.min_doc_words == 5 and s.c4.terminal_punct is True
    assert s.fineweb.line_punct_thr is None
    assert s.gopher_rep.top_ngrams == ((2, 0.5), (3, 0.5)) and s.gopher_quality.stop_words == ("a", "the")
    for bad in ("nope=1", "gopher_quality.nope=1", "gopher_quality.min_doc_words", "c4.terminal_punct=maybe",
                "gopher_quality.min_doc_words=abc"):
        with pytest.raises(ValueError, match="--set"):
            apply_settings(Settings(), [bad])
    assert "fineweb.new_line_ratio" in tunable_names()


def test_explain_metrics_are_known_names():
    p = Pipeline(Settings(), explain=True)
    *_, m = p.process(GOOD + "\nMail us at a.person@b.org today.")
    assert set(m) - {"language_score"} <= set(METRICS)
    assert m["n_words"] > 50 and m["pii_emails"] == 1


def test_same_result_in_any_order():
    p1, p2 = Pipeline(Settings()), Pipeline(Settings())
    rows = [(GOOD, None, None), (HTML, "https://a.example/", "text/html"), ("Kurz.", None, None)]
    assert p1.process_many(rows) == list(reversed(p2.process_many(list(reversed(rows)))))


GERMAN = ("<html><body><article><p>" + "Die Stadt liegt an einem breiten Fluss und hat eine lange Geschichte. "
          "Im Sommer kommen viele Besucher, um die alten Häuser und den Markt zu sehen. " * 4
          + "</p></article></body></html>")


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_prescreen_skips_extraction_of_pages_clearly_in_another_language(extractor):
    extracted = []

    def pipeline(prescreen: bool) -> Pipeline:
        p = Pipeline(Settings(extractor=extractor, lid_prescreen=prescreen))
        real = p.extractor._load()
        p.extractor._fn = lambda html: extracted.append(html) or real(html)
        return p

    p = pipeline(True)
    reason, text, lang, score, m = p.process(GERMAN, None, "text/html")
    assert (reason, lang) == ("lid:other_language", "de") and extracted == []
    assert p.process(HTML, None, "text/html")[0] is None and extracted == [HTML]
    # without the pre-screen the page is extracted, and dropped by full-text language ID
    assert pipeline(False).process(GERMAN, None, "text/html")[0] == "lid:other_language"
    assert extracted[-1] == GERMAN


@pytest.mark.parametrize("extractor", ["resiliparse"])
def test_prescreen_changes_no_result_on_real_pages(data, extractor):
    """On the 517 pages of the trafilatura WARC (mostly German, ~20% English) the pre-screen
    skips most extractions and every kept document, with its text, is the same."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(data / "web" / "trafilatura_eval_pages.part0.warc.gz", "rb") as fh:
        pages = [r.reader.read().decode("utf-8", errors="replace")
                 for r in ArchiveIterator(fh, record_types=WarcRecordType.response)]
    on = Pipeline(Settings(extractor=extractor, skip={"url"}))
    off = Pipeline(Settings(extractor=extractor, skip={"url"}, lid_prescreen=False))
    kept_on = [(i, r[1]) for i, r in enumerate(on.process_many([(h, None, "text/html") for h in pages])) if r[0] is None]
    kept_off = [(i, r[1]) for i, r in enumerate(off.process_many([(h, None, "text/html") for h in pages]))
                if r[0] is None]
    assert len(kept_on) > 50 and kept_on == kept_off


def test_rows_are_gathered_like_take():
    import random

    import pyarrow as pa

    from llmtool.data.filters.driver import _take

    batch = pa.record_batch({"i": list(range(200)), "s": [f"row {i}" for i in range(200)]})
    rng = random.Random(3)
    for size in (1, 2, 17, 100, 200):
        index = sorted(rng.sample(range(200), size))
        assert _take(batch, index).to_pydict() == batch.take(pa.array(index)).to_pydict()


def test_pool_workers_die_on_sigterm():
    """A pool worker must die of SIGTERM, not raise the command's KeyboardInterrupt inside
    the pool's code (which left the parent hanging, 2 runs in 25 of a failing filter under
    load); the signal set-up now lives in llmtool.io.pool for every stage."""
    import signal

    from llmtool.io.pool import worker_signals

    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        worker_signals()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
