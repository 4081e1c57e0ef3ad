"""The fuzzer's own parts (fuzz/): its verdicts follow the CLI contract, its mutations
are a function of the seed, and a failed run that touched its output is caught."""

from __future__ import annotations

import json
import random
import signal

from fuzz import harness, mutate
from fuzz.harness import FAIL, ODD, OK, REJECTED, classify

TRACEBACK = ('Traceback (most recent call last):\n  File "/x/llmtool/io/tables.py", line 3, in open_table\n'
             "KeyError: 'text'\n")


def test_a_traceback_is_a_failure():
    assert classify(1, TRACEBACK).status == FAIL
    assert classify(3, "llmtool filter: error: bad\n" + TRACEBACK).status == FAIL


def test_one_error_line_with_exit_3_is_a_clean_rejection():
    v = classify(3, "llmtool filter: url: no --url-blocklist given\nllmtool filter: error: x.parquet: truncated\n")
    assert v.status == REJECTED
    assert classify(0, "").status == OK


def test_a_timeout_a_signal_and_the_memory_cap_are_failures():
    assert classify(None, "", timed_out=True).reason == "timeout"
    assert classify(-signal.SIGSEGV, "").status == FAIL
    assert classify(1, "llmtool tokenize: error: out of memory (use a smaller batch)\n").reason == "memory cap"


def test_multi_line_or_stray_errors_are_failures():
    assert classify(3, "llmtool info: error: a\nllmtool info: error: b\n").status == FAIL
    assert classify(3, "llmtool info: error: first line\nsecond line of the message\n").status == FAIL
    assert classify(2, "").status == FAIL  # an error exit must say why
    assert classify(1, "llmtool info: error: something broke\n").status == ODD


def test_a_failed_run_must_leave_the_older_output_unchanged(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "o.parquet").write_bytes(b"old")
    before_in, before_out = harness.snapshot(tmp_path / "in"), harness.snapshot(tmp_path / "out")
    rejected = classify(3, "llmtool filter: error: bad input\n")
    assert harness.check_outputs(tmp_path, before_in, before_out, rejected).status == REJECTED
    (tmp_path / "out" / "o.parquet").write_bytes(b"half-written")
    assert harness.check_outputs(tmp_path, before_in, before_out, rejected).status == FAIL


def test_mutations_are_deterministic_for_a_seed():
    data = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: 5\r\n\r\nhello\r\n\r\n" * 20
    doc = json.dumps({"format": "x", "ranks": ["YQ==", "Yg=="], "special_tokens": {"<|a|>": 2}}).encode()
    lines = b'{"text": "a"}\n{"text": "b"}\n'
    for seed in range(30):
        for fn, arg in ((mutate.mutate_bytes, data), (mutate.mutate_archive, data),
                        (mutate.mutate_json_bytes, doc), (mutate.mutate_jsonl, lines)):
            assert fn(arg, random.Random(f"1:{seed}")) == fn(arg, random.Random(f"1:{seed}"))
    outs = {mutate.mutate_bytes(data, random.Random(f"1:{s}"))[0] for s in range(30)}
    assert len(outs) > 20  # and different seeds give different cases


def test_raw_json_values_are_written_verbatim():
    text = mutate.dumps({"n": mutate.HUGE_INT, "s": "é"})
    assert text.startswith(b'{"n": 9999') and len(text) > 5000
