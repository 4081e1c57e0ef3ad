"""Payload decoding: declared charsets with browser supersets, detection, stray bytes."""

from llmtool.data.decode import declared_charset, decode_payload, sniff_mime


def test_utf8_wins_and_bom_is_dropped():
    assert decode_payload("naïve café".encode()) == "naïve café"
    assert decode_payload(b"\xef\xbb\xbf<html>") == "<html>"


def test_latin1_label_decodes_cp1252_punctuation_like_browsers():
    page = "<p>Ich bin Du – und Du schaust zu “so”</p>".encode("cp1252")
    assert decode_payload(page, "text/html; charset=ISO-8859-1") == page.decode("cp1252")


def test_meta_charset_and_detection():
    text = "<html><head><meta charset='euc-jp'></head><body>" + "日本語のページです。" * 20 + "</body></html>"
    payload = text.encode("euc-jp")
    assert declared_charset(None, payload) == "euc_jp"
    assert decode_payload(payload) == text
    undeclared = ("<html><body>" + "これはテストの文章です。" * 30 + "</body></html>").encode("shift_jis")
    assert "テスト" in decode_payload(undeclared)


def test_stray_invalid_bytes_in_a_utf8_page_stay_utf8():
    page = ("Grüße aus Köln. " * 50).encode() + b"\xff" + ("Schöne Grüße. " * 50).encode()
    out = decode_payload(page)
    assert "Grüße" in out and out.count("\ufffd") == 1


def test_cp1252_page_with_few_accents_is_not_read_as_utf8():
    page = ("An English page about a café and a naïve résumé. " * 40).encode("cp1252")
    out = decode_payload(page, "text/html; charset=windows-1252")
    assert "café" in out and "\ufffd" not in out


def test_sniff_mime():
    assert sniff_mime(b"  \n<!DOCTYPE html><html>") == "text/html"
    assert sniff_mime(b"%PDF-1.4") == "application/pdf"
    assert sniff_mime(b"plain words") is None
