"""The parser's own errors (not only the ones llmtool raises): one line on stderr, exit 2.

typer >= 0.28 raises its bundled copy of click's exception classes; an earlier cli.main caught
only the installed click's, so every mistyped flag was a 25-line traceback with exit 1.
"""

import pytest

from llmtool.cli import app


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)


def _assert_one_line_usage_error(r, *needles):
    assert r.rc == 2, r.err
    assert "Traceback" not in r.err
    assert r.err.strip().count("\n") == 0, r.err
    assert r.err.startswith("llmtool"), r.err
    for needle in needles:
        assert needle in r.err, r.err


def test_every_stage_is_checked():
    assert {"fetch", "filter", "dedup", "bpe-train", "tokenize", "pretrain", "sample", "info"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_unknown_option_for_every_stage(cli, command):
    r = cli(command, "x", "--no-such-option")
    _assert_one_line_usage_error(r, f"llmtool {command}: error:", "--no-such-option", f"llmtool {command} --help")


@pytest.mark.parametrize("args, needle", [
    (["nosuch"], "nosuch"),
    (["fetch", "--limit", "abc", "x"], "--limit"),
    (["bpe-train", "x", "-V", "abc"], "--vocab-size"),
    (["sample", "base/", "--top-p", "2"], "--top-p"),
    (["pretrain", "x", "--depth", "0"], "--depth"),
    (["filter", "x", "--workers", "0"], "--workers"),
    (["dedup", "x", "--workers", "0"], "--workers"),
    (["tokenize", "x", "--val-fraction", "1.5"], "--val-fraction"),
])
def test_bad_values_are_one_line_exit_2(cli, args, needle):
    _assert_one_line_usage_error(cli(*args), needle)


@pytest.mark.parametrize("args", [[], ["fetch"], ["info"]])
def test_no_arguments_shows_help_exit_2(cli, args):
    r = cli(*args)
    assert r.rc == 2 and "Traceback" not in r.err
    assert "Usage" in r.err


def test_help_and_version_still_exit_0(cli):
    assert cli("--version").rc == 0
    r = cli("fetch", "--help")
    assert r.rc == 0 and "Usage" in r.text
