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
