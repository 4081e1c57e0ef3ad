"""`llmtool pretrain` hardening (issue 10): resume takes the run's settings from the checkpoint,
corrupt token files and train states are refused with one line, a newcomer's CPU run gets a
size and budget that finish. Small inputs built here: a byte-level tokenizer and a part of
Pride and Prejudice (bundled in examples/data/books)."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from llmtool.io.tokfile import TokenFileWriter

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--depth", "1", "--width", "48", "--heads", "2", "--context", "32", "--micro-batch", "4",
        "--log-every", "1", "--seed", "3"]


def write_bytes_corpus(folder: Path, n_bytes: int = 60_000) -> Path:
    """tok.json (bytes + <|endoftext|>) and train.bin: one document per paragraph."""
    from llmtool.tokenizer.bpe import GPT4
    from llmtool.tokenizer.file import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer("bytes", GPT4, {bytes([i]): i for i in range(256)}, {"<|endoftext|>": 256})
    tok.save(folder / "tok.json")
    text = gzip.decompress((ROOT / "examples/data/books/pride_and_prejudice.txt.gz").read_bytes())[:n_bytes]
    with TokenFileWriter(folder / "train.bin", vocab_size=tok.vocab_size, bos_id=256, eot_id=256,
                         fingerprint=tok.fingerprint, meta={"tokenizer": {"path": str(folder / "tok.json")}}) as w:
        for para in text.replace(b"\r\n", b"\n").split(b"\n\n"):
            w.add_document(np.concatenate([[256], np.frombuffer(para, dtype=np.uint8)]))
    return folder / "train.bin"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_bytes_corpus(tmp_path_factory.mktemp("bytes"))


@pytest.fixture(scope="module")
def base(corpus, tmp_path_factory) -> Path:
    """A finished 4-step run with a held-out split: the checkpoint the resume tests continue."""
    from tests.conftest import run_cli

    out = tmp_path_factory.mktemp("runs") / "base"
    r = run_cli("pretrain", corpus, "--max-steps", "4", "--val-split", "0.1", "--eval-tokens", "2k", *TINY, "-o", out)
    assert r.rc == 0, r.err
    return out


def _one_line(err: str) -> bool:
    return err.strip().count("\n") == 0 and "Traceback" not in err


def _steps(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def test_resume_without_flags_keeps_the_runs_settings(base, tmp_path, cli):
    """Issue 10.4: `pretrain base/ --resume` used to become a 35,840-step run without validation."""
    import shutil

    out = tmp_path / "base"
    shutil.copytree(base, out)
    r = cli("pretrain", out, "--resume")  # a finished run, nothing changed: nothing to do
    assert r.rc == 0 and "up to date" in r.err, r.err
    r = cli("pretrain", out, "--resume", "--max-steps", "6")
    assert r.rc == 0, r.err
    assert "--max-steps 6 (the checkpoint had 4)" in r.err and "step 6/6" in r.err
    assert "bits/byte" in r.err  # the --val-split validation is still there
    rows = _steps(out)
    assert [m["step"] for m in rows if "loss" in m] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["step"] == 6 and "val_bpb" in rows[-1]
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["settings"]["val_split"] == 0.1 and state["settings"]["context"] == 32
    assert state["settings"]["max_steps"] == 6 and state["train_config"]["micro_batch"] == 4
    # a setting that would change the run is refused, naming both values
    r = cli("pretrain", out, "--resume", "--max-steps", "8", "--seed", "4")
    assert r.rc == 2 and _one_line(r.err) and "--seed 4" in r.err and "3" in r.err
    r = cli("pretrain", out, "--resume", "--max-steps", "8", "--depth", "2")
    assert r.rc == 2 and "--depth 2" in r.err
    # a budget shorter than what is done already
    r = cli("pretrain", out, "--resume", "--max-steps", "3")
    assert r.rc == 2 and "step 6" in r.err and _one_line(r.err)


@pytest.mark.parametrize("damage", ["list", "no step", "garbage"])
def test_a_damaged_train_state_is_one_line_exit_3(base, tmp_path, cli, damage):
    import shutil

    out = tmp_path / "base"
    shutil.copytree(base, out)
    state = torch.load(out / "train_state.pt", weights_only=True)
    if damage == "list":
        torch.save([1, 2, 3], out / "train_state.pt")
    elif damage == "no step":
        del state["step"]
        torch.save(state, out / "train_state.pt")
    else:
        (out / "train_state.pt").write_bytes(b"not a torch file")
    r = cli("pretrain", out, "--resume", "--max-steps", "6")
    assert r.rc == 3 and _one_line(r.err) and "train_state.pt" in r.err, r.err


def _flip_bit(path: Path, offset_from_tokens: int) -> None:
    data = bytearray(path.read_bytes())
    header_size = struct.unpack_from("<Q", data, 8)[0]
    data[header_size + offset_from_tokens] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_corrupt_token_file_is_refused_before_training(corpus, tmp_path, cli):
    """Issue 10.7: bit-flipped token files trained; ids beyond the vocabulary crashed."""
    bad = tmp_path / "flipped.bin"
    bad.write_bytes(corpus.read_bytes())
    _flip_bit(bad, 1001)
    out = tmp_path / "o"
    r = cli("pretrain", bad, "--max-steps", "2", *TINY, "-o", out)
    assert r.rc == 3 and "checksum" in r.err and _one_line(r.err), r.err
    assert not out.exists()
    # an id at or above the vocabulary, with a checksum that matches: the header is rewritten
    # with a smaller vocabulary (a file written by a broken tool)
    big = tmp_path / "big.bin"
    data = bytearray(corpus.read_bytes())
    struct.pack_into("<Q", data, 24, 200)  # vocab size field: the text's bytes go up to 255
    big.write_bytes(bytes(data))
    r = cli("pretrain", big, "--max-steps", "2", *TINY, "--tokenizer", corpus.parent / "tok.json", "-o", out)
    assert r.rc == 3 and "outside the vocab" in r.err and _one_line(r.err), r.err
    assert not out.exists()


def test_a_newcomers_cpu_run_gets_a_size_and_budget_that_finish(corpus, tmp_path, cli):
    r = cli("pretrain", corpus, "--device", "cpu", "--dry-run", "-o", tmp_path / "o")
    assert r.rc == 0, r.err
    assert "architecture: 4 layers, width 256" in r.text and "context 256" in r.text
    assert "time: ~" in r.text and "stops after 30 minutes" in r.text
    r = cli("pretrain", corpus, "--device", "cpu", "--dry-run", "--json", "-o", tmp_path / "o")
    plan = json.loads(r.out)
    assert plan["max_time"] == 1800 and plan["tokens"] >= 20 * plan["params"]


def test_help_shows_every_option_with_help(cli):
    r = cli("pretrain", "--help")
    assert r.rc == 0
    flags = ["--output", "--val", "--val-split", "--tokenizer", "--depth", "--width", "--heads", "--kv-heads",
             "--context", "--softcap", "--micro-batch", "--total-batch", "--max-steps", "--max-tokens",
             "--max-time", "--windows", "--seed", "--optimizer", "--lr", "--embedding-lr", "--head-lr",
             "--weight-decay", "--grad-clip", "--warmup", "--warmdown", "--final-lr", "--device", "--dtype",
             "--compile", "--threads", "--log-every", "--eval-every", "--eval-tokens", "--sample-every",
             "--prompt", "--ckpt-every", "--resume", "--dry-run", "--force", "--json", "--quiet", "--verbose"]
    for f in flags:
        assert f in r.text, f
    assert "Optimizer steps to train" in r.text  # --max-steps has help now
