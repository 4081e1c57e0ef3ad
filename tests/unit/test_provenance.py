"""Provenance keys and lineage."""

import os

from llmtool.io.provenance import input_record, lineage, make


def test_key_depends_on_stage_params_and_inputs_not_time(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("x")
    rec = input_record(str(f))
    a = make("s", 1, {"p": 1}, [rec])
    assert make("s", 1, {"p": 1}, [rec])["key"] == a["key"]
    assert make("s", 1, {"p": 2}, [rec])["key"] != a["key"]
    assert make("s", 2, {"p": 1}, [rec])["key"] != a["key"]
    os.utime(f, ns=(1, 1))  # a touched input is a new input, as for make
    assert make("s", 1, {"p": 1}, [input_record(str(f))])["key"] != a["key"]


def test_stdin_input_is_never_cacheable():
    assert make("s", 1, {}, [input_record("-")])["key"] is None


def test_lineage_lists_shared_ancestors_once():
    root = make("fetch", 1, {}, [])
    mid = make("tokenize", 1, {}, [{"path": "a", "key": root["key"], "provenance": root}])
    top = make("pretrain", 1, {}, [{"path": "train", "key": "k1", "provenance": mid},
                                   {"path": "val", "key": "k2", "provenance": mid}])
    assert [p["stage"] for p in lineage(top)] == ["pretrain", "tokenize", "fetch"]
