"""`llmtool pretrain` end to end on the bundled books: train, validate, up to date, resume, DDP, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

TINY = ["--depth", "1", "--width", "48", "--heads", "2", "--context", "32", "--micro-batch", "4",
        "--total-batch", "256", "--log-every", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, books):
    """A 512-token BPE trained on Moby-Dick; the book tokenized; Pride and Prejudice held out."""
    d = tmp_path_factory.mktemp("corpus")
    r = run_cli("bpe-train", books / "moby_dick.txt", "-V", "512", "-o", d / "tok.json", "-q")
    assert r.rc == 0, r.err
    r = run_cli("tokenize", books / "moby_dick.txt", "-t", d / "tok.json", "-o", d / "train.bin", "-q")
    assert r.rc == 0, r.err
    r = run_cli("tokenize", books / "pride_and_prejudice.txt", "-t", d / "tok.json", "-o", d / "val.bin", "-q")
    assert r.rc == 0, r.err
    return d


def _losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_pretrain_validate_info_and_up_to_date(corpus, tmp_path, cli):
    out = tmp_path / "base"
    args = ["pretrain", corpus / "train.bin", "--val", corpus / "val.bin", "--eval-tokens", "4k",
            "--max-steps", "8", *TINY, "-o", out]
    r = cli(*args)
    assert r.rc == 0, r.err
    assert "step 8/8" in r.err and "bits/byte" in r.err and r.out == b""
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "train_state.pt", "metrics.jsonl", "provenance.json"])
    losses = _losses(out)
    assert len(losses) == 8 and losses[-1] < losses[0]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0 < metrics[-1]["val_bpb"] < 8
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["stage"] == "pretrain" and prov["key"] and prov.get("complete", True)
    info = cli("info", out)
    assert info.rc == 0 and "1 layers, width 48" in info.text and "pretrain v1" in info.text
    again = cli(*args)
    assert again.rc == 0 and "up to date" in again.err
    # another setting: refuses to throw the trained model away without --force
    other = cli("pretrain", corpus / "train.bin", "--max-steps", "9", *TINY, "-o", out)
    assert other.rc == 2 and "--force" in other.err


def test_dry_run_prints_the_plan(corpus, tmp_path, cli):
    r = cli("pretrain", corpus / "train.bin", "--depth", "4", "--context", "128", "--max-tokens", "1M",
            "--dry-run", "-o", tmp_path / "x")
    assert r.rc == 0, r.err
    assert "parameters" in r.text and "FLOPs" in r.text and "GiB" in r.text and "steps" in r.text
    assert not (tmp_path / "x").exists()


def test_sigint_checkpoints_and_resume_continues_exactly(corpus, tmp_path):
    ref = tmp_path / "ref"
    common = ["pretrain", corpus / "train.bin", "--max-steps", "10", *TINY]
    r = run_cli(*common, "-o", ref)
    assert r.rc == 0, r.err
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "llmtool", *map(str, common), "-o", str(out)],
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in p.stderr:
        if "step 3/10" in line:
            p.send_signal(signal.SIGINT)
            break
    err = p.stderr.read()
    assert p.wait(timeout=120) == 130, err
    assert "stopping after this step" in err and "continue with --resume" in err
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["complete"] is False and 3 <= prov["step"] < 10
    r = run_cli(*common, "-o", out)
    assert r.rc == 2 and "--resume" in r.err
    r = run_cli("pretrain", out, "--resume")  # the settings come from the checkpoint, not the flags
    assert r.rc == 0, r.err
    assert _losses(out) == _losses(ref)  # the interrupted run ends exactly where the other did


def test_ddp_two_ranks_match_one_process(corpus, tmp_path):
    """torchrun with 2 gloo ranks × 1 micro-batch == 1 process × 2 micro-batches (same global batch)."""
    common = ["pretrain", corpus / "train.bin", "--max-steps", "4", "--device", "cpu", *TINY,
              "--micro-batch", "2", "--total-batch", "128"]
    one = tmp_path / "one"
    r = run_cli(*common, "-o", one)
    assert r.rc == 0, r.err
    two = tmp_path / "two"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "llmtool", *map(str, common), "-o", str(two)],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 rank(s)" in p.stderr
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
    from safetensors.torch import load_file

    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-4, k


def test_bad_inputs_have_clear_errors(corpus, tmp_path, cli, books):
    out = tmp_path / "o"
    # token file made with another tokenizer than the one asked for
    other = tmp_path / "other.json"
    assert cli("bpe-train", books / "pride_and_prejudice.txt", "-V", "300", "-o", other, "-q").rc == 0
    r = cli("pretrain", corpus / "train.bin", "--tokenizer", other, "--max-steps", "1", *TINY, "-o", out)
    assert r.rc == 3 and "different tokenizer" in r.err and "Traceback" not in r.err
    # a context longer than the data
    small = tmp_path / "small.txt"
    small.write_text("To be, or not to be.")
    assert cli("tokenize", small, "-t", corpus / "tok.json", "-o", tmp_path / "small.bin", "-q").rc == 0
    r = cli("pretrain", tmp_path / "small.bin", "--max-steps", "1", *TINY, "-o", out)
    assert r.rc == 3 and "context" in r.err
    r = cli("pretrain", corpus / "train.bin", "--device", "cuda", "--max-steps", "1", *TINY, "-o", out)
    if r.rc != 0:  # on a machine without CUDA
        assert r.rc == 4 and "CUDA" in r.err and "Traceback" not in r.err
    r = cli("pretrain", tmp_path / "missing.bin", "-o", out)
    assert r.rc == 3 and "missing.bin" in r.err
    r = cli("pretrain", corpus / "train.bin", "--max-time", "soon", *TINY, "-o", out)
    assert r.rc == 2 and "--max-time" in r.err
    assert not out.exists()
