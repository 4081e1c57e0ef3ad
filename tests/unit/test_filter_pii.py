"""PII anonymisation: addresses replaced, look-alikes (versions, bad octets) left alone."""

from __future__ import annotations

import pytest

from llmtool.data.filters.pii import EMAIL_REPLACEMENTS, IP_REPLACEMENTS, anonymise, count


@pytest.mark.parametrize("text", [
    "Download version 2.4.10.1 now",
    "release 1.2.4.10.1 is out",
    "see v2.4.10.1",
    "Server: Apache/2.4.10.1 (Unix)",
    "built openssl-1.0.2.1 and 2.4.10.1-beta",
    "Update 2.4.10.1 fixes it",
    "999.1.1.1 is not an address",
    "1.1.1.999 is not one either",
    "private 10.0.0.1 and 192.168.1.20 and 127.0.0.1",
    "no at sign: john.doe(at)example.com",
    "a@b is no domain",
])
def test_look_alikes_are_untouched(text):
    assert anonymise(text) == text


def test_public_ip_replaced_with_word_boundaries():
    assert anonymise("http://8.8.8.8/x") == "http://" + anonymise("8.8.8.8") + "/x"
    out = anonymise("server 8.8.8.8, backup 1.1.1.1.")
    assert "8.8.8.8" not in out and "1.1.1.1" not in out
    assert out.endswith(".")  # the sentence's full stop survives
    assert all(x in IP_REPLACEMENTS for x in out.replace(",", "").rstrip(".").split()[1::2])


def test_email_replaced_whole():
    out = anonymise("Write to jane.doe+news@mail.example.co.uk or <bob@corp.com>.")
    assert "jane" not in out and "bob" not in out
    assert out.count("@") == 2
    for rep in ("email@example.com", "firstname.lastname@example.org"):
        out = out.replace(rep, "E")
    assert out == "Write to E or <E>."


def test_replacement_is_a_function_of_the_address():
    a = anonymise("x 8.8.4.4 y 8.8.4.4 z joe@site.org w joe@site.org")
    parts = a.split()
    assert parts[1] == parts[3] and parts[5] == parts[7]
    assert parts[5] in EMAIL_REPLACEMENTS


def test_switches_and_counts():
    text = "mail me@host.com from 9.9.9.9"
    assert anonymise(text, emails=False).startswith("mail me@host.com")
    assert "9.9.9.9" in anonymise(text, ips=False)
    assert count(text) == (1, 1)


def test_datatrove_gets_these_wrong(tmp_path):
    """The reason for our own regexes: datatrove rewrites the look-alikes."""
    fmt = pytest.importorskip("datatrove.pipeline.formatters")
    dt = fmt.PIIFormatter()
    assert dt.format("999.1.1.1") != "999.1.1.1"
    assert dt.format("release 1.2.4.10.1") != "release 1.2.4.10.1"
    assert anonymise("999.1.1.1") == "999.1.1.1"
