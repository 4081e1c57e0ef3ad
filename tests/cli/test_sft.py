"""`llmtool sft` and `llmtool convert` end to end, on the bundled post-training data."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, run_cli

POST = ROOT / "examples" / "data" / "post"
IDENTITY = POST / "sft_identity" / "fastchat_dummy_conversation.json"
FAST = ["--threads", "1", "--log-every", "0"]


@pytest.fixture(scope="module")
def identity(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "identity.parquet"
    r = run_cli("convert", "identity", IDENTITY, "-o", out, "-q")
    assert r.rc == 0, r.err
    return out


def _losses(folder):
    return [json.loads(line)["loss"] for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_convert_every_bundled_source(tmp_path):
    cases = {"identity": (IDENTITY, 500), "oasst": (POST / "oasst" / "en_100_tree.jsonl", 100),
             "self-instruct": (POST / "instructions" / "self_instruct_seed_tasks.jsonl", 175),
             "gsm8k": (POST / "gsm8k" / "train_first500.jsonl.gz", 500)}
    for fmt, (src, rows) in cases.items():
        out = tmp_path / f"{fmt}.parquet"
        r = run_cli("convert", fmt, src, "-o", out)
        assert r.rc == 0, r.err
        t = pq.read_table(out)
        assert t.num_rows == rows, fmt
        for row in t.slice(0, 50).to_pylist():
            roles = [m["role"] for m in row["messages"]]
            assert roles[0] == "user" and roles[-1] == "assistant", (fmt, roles)
    ident = pq.read_table(tmp_path / "identity.parquet").column("messages").to_pylist()
    text = " ".join(m["content"] for c in ident for m in c if m["role"] == "assistant")
    assert "Vicuna" not in text and "LMSYS" not in text and "llmtool" in text
    gsm = pq.read_table(tmp_path / "gsm8k.parquet").to_pylist()
    assert gsm[0]["answer"] == "72" and "<<48/2=24>>" in gsm[0]["messages"][1]["content"]
    # oasst: the best-ranked path, so every assistant reply is a rank-0 one in the tree
    tree = json.loads((POST / "oasst" / "en_100_tree.jsonl").read_text().splitlines()[0])
    first = pq.read_table(tmp_path / "oasst.parquet").slice(0, 1).to_pylist()[0]["messages"]
    best = min((r for r in tree["prompt"]["replies"] if r.get("rank") is not None), key=lambda r: r["rank"])
    assert first[0]["content"] == tree["prompt"]["text"] and first[1]["content"] == best["text"]
    r = run_cli("convert", "identity", IDENTITY, "-o", tmp_path / "identity.parquet")
    assert r.rc == 0 and "up to date" in r.err


def test_convert_bad_input(tmp_path):
    r = run_cli("convert", "nosuch", IDENTITY)
    assert r.rc == 2 and "unknown format" in r.err and "Traceback" not in r.err
    r = run_cli("convert", "gsm8k", tmp_path / "missing.jsonl", "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and "no such file" in r.err
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no final line"}])
    r = run_cli("convert", "gsm8k", bad, "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and "####" in r.err and not (tmp_path / "o.parquet").exists()
    (tmp_path / "trunc.json").write_text('[{"conversations": []')
    r = run_cli("convert", "identity", tmp_path / "trunc.json", "-o", tmp_path / "o.parquet")
    assert r.rc == 3 and "invalid JSON" in r.err


def test_sft_learns_the_answers_and_writes_a_chat_model(tiny_base, identity, tmp_path):
    out = tmp_path / "chat"
    train = ["sft", tiny_base, identity, "--max-steps", "30", "--lr-frac", "2", "--threads", "1", "--log-every", "5"]
    r = run_cli(*train, "-o", out)
    assert r.rc == 0, r.err
    losses = _losses(out)
    assert losses[-1] < 0.5 * losses[0], losses
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_kind"] == "chat" and cfg["chat_template"] == "llmtool-im-v1"
    assert json.loads((out / "tokenizer.json").read_text())["chat_template"] == "llmtool-im-v1"
    # sample treats a chat model's prompt as a user message and stops at <|im_end|>
    r = run_cli("sample", out, "Who are you?", "-t", "0", "-n", "40")
    assert r.rc == 0, r.err
    assert "Who are you?" not in r.text and "<|im_end|>" not in r.text and r.text.strip()
    # info follows the lineage back to the base model's training data
    r = run_cli("info", out, "--json")
    assert r.rc == 0, r.err
    assert "sft" in r.text and "pretrain" in r.text
    # the same command again: up to date
    r = run_cli(*train, "-o", out)
    assert r.rc == 0 and "up to date" in r.err


@pytest.mark.parametrize("layout", ["messages", "sharegpt", "prompt_response", "parquet"])
def test_every_input_layout_trains(tiny_base, tmp_path, layout):
    convs = [("Who are you?", "I am llmtool."), ("What is 2+2?", "4."), ("Say hi", "Hi!")] * 4
    if layout == "messages":
        rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                              {"role": "assistant", "content": a}]} for q, a in convs]
    elif layout == "sharegpt":
        rows = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in convs]
    else:
        rows = [{"prompt": q, "response": a} for q, a in convs]
    if layout == "parquet":
        data = tmp_path / "c.parquet"
        pq.write_table(pa.Table.from_pylist(rows), data)
    else:
        data = _write_jsonl(tmp_path / "c.jsonl", rows)
    r = run_cli("sft", tiny_base, data, "--max-steps", "2", *FAST, "-o", tmp_path / "chat", "--json")
    assert r.rc == 0, r.err
    summary = json.loads(r.text.strip().splitlines()[-1])
    assert summary["conversations"] == 12 and summary["steps"] == 2


def test_show_mask_prints_the_supervised_tokens(tiny_base, identity, tmp_path):
    r = run_cli("sft", tiny_base, identity, "--show-mask", "2", "-o", tmp_path / "chat")
    assert r.rc == 0, r.err
    assert r.text.count("example ") == 2 and "supervised" in r.text and "<|im_start|>assistant<|im_sep|>" in r.text
    assert "500 conversations" in r.text
    assert not (tmp_path / "chat").exists()


def test_dry_run_prints_the_plan(tiny_base, identity, tmp_path):
    r = run_cli("sft", tiny_base, identity, "--epochs", "2", "--dry-run", "-o", tmp_path / "chat")
    assert r.rc == 0, r.err
    assert "conversations: 500" in r.text and "per epoch" in r.text and "budget" in r.text
    assert not (tmp_path / "chat").exists()


def test_bad_conversations_name_their_row_or_are_counted(tiny_base, tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = [good, good, {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
                                      {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"messages": [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}]}, good]
    data = _write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "chat"
    r = run_cli("sft", tiny_base, data, "--max-steps", "1", *FAST, "-o", out)
    assert r.rc == 3 and "row 2" in r.err and "two user messages in a row" in r.err and "--skip-bad" in r.err
    assert len(r.err.strip().splitlines()) == 1 and not out.exists()
    r = run_cli("sft", tiny_base, data, "--max-steps", "1", "--skip-bad", *FAST, "-o", out, "--json")
    assert r.rc == 0, r.err
    s = json.loads(r.text.strip().splitlines()[-1])
    assert s["conversations"] == 3 and s["skipped"] == 3


def test_usage_errors_are_one_line(tiny_base, identity, tmp_path):
    cases = [
        (["sft"], 2, "Usage"),
        (["sft", tiny_base], 2, "missing DATA"),
        (["sft", tiny_base, identity, "--train-on", "users"], 2, "--train-on"),
        (["sft", tiny_base, identity, "--lr-frac", "-1"], 2, "--lr-frac"),
        (["sft", tiny_base, identity, "--epochs", "x"], 2, "--epochs"),
        (["sft", tiny_base, identity, "--nosuch"], 2, "--nosuch"),
        (["sft", tiny_base, identity, "--context", "100000"], 2, "context"),
        (["sft", tmp_path, identity], 3, "not a checkpoint"),
        (["sft", tiny_base, tmp_path / "missing.jsonl"], 3, "no such file"),
        (["sft", tiny_base, identity, "-o", "-"], 2, "folder"),
    ]
    for args, rc, text in cases:
        r = run_cli(*args)
        assert r.rc == rc and text in r.err and "Traceback" not in r.err, (args, r.rc, r.err)
    (tmp_path / "notes.parquet").mkdir()
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "docs.parquet")
    r = run_cli("sft", tiny_base, tmp_path / "docs.parquet")
    assert r.rc == 3 and "no conversation columns" in r.err


def test_sigint_then_resume_continues_exactly(tiny_base, identity, tmp_path):
    common = ["sft", tiny_base, identity, "--max-steps", "8", "--threads", "1", "--log-every", "1"]
    ref = tmp_path / "ref"
    assert run_cli(*common, "-o", ref, "-q").rc == 0
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "llmtool", *map(str, common), "-o", str(out)],
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in p.stderr:
        if "step 3/8" in line:
            p.send_signal(signal.SIGINT)
            break
    err = p.stderr.read()
    assert p.wait(timeout=120) == 130, err
    r = run_cli("sft", out, "--resume", "--threads", "1")  # the data and settings come from the checkpoint
    assert r.rc == 0, r.err
    assert _losses(out) == pytest.approx(_losses(ref), rel=1e-6)


def test_torchrun_two_ranks_match_one_process(tiny_base, identity, tmp_path):
    """2 gloo ranks × 4 windows == 1 process × 8 windows: the loss is normalised over the
    supervised tokens of the whole step, not per rank or micro-batch."""
    common = ["sft", tiny_base, identity, "--max-steps", "3", "--device", "cpu", "--log-every", "1",
              "--total-batch", str(8 * 128)]
    one = tmp_path / "one"
    r = run_cli(*common, "--micro-batch", "8", "--threads", "1", "-o", one)
    assert r.rc == 0, r.err
    two = tmp_path / "two"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "llmtool", *map(str, common), "--micro-batch", "4", "-o", str(two)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
