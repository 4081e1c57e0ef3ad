"""`llmtool sample` on a tiny checkpoint made here (no real data): output naming, batched
table prompts, and malformed checkpoints as one-line exit-3 errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch

from llmtool.model import checkpoint
from llmtool.model.gpt import GPT, GPTConfig
from llmtool.tokenizer.file import Tokenizer


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=257, n_layer=1, n_embd=32, n_head=2, context=32))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    tok = Tokenizer("bytes", r"\S+|\s+", {bytes([i]): i for i in range(256)}, {"<|endoftext|>": 256})
    out = tmp_path_factory.mktemp("sample") / "ck"
    checkpoint.save(out, m, tok)
    return out


def test_table_output_is_named_after_the_prompts(ck, tmp_path, cli):
    prompts = tmp_path / "prompts.jsonl"
    rows = ["ab", "a much longer prompt than the others", "", "x"]
    prompts.write_text("".join(json.dumps({"prompt": p, "id": i}) + "\n" for i, p in enumerate(rows)))
    # stdout to a file, not a pipe: with a pipe the table would go to stdout
    with open(tmp_path / "stdout.txt", "wb") as so:
        p = subprocess.run([sys.executable, "-m", "llmtool", "sample", str(ck), "--input", str(prompts), "-n", "6",
                            "--num-samples", "2", "--seed", "3"], stdout=so, stderr=subprocess.PIPE, cwd=tmp_path,
                           timeout=120)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "prompts.sample.parquet"
    assert out.exists() and not (tmp_path / "ck.sample.parquet").exists()
    got = pq.read_table(out).to_pylist()
    assert [g["id"] for g in got] == [0, 0, 1, 1, 2, 2, 3, 3] and all(g["tokens"] <= 6 for g in got)
    # a prompt's samples depend on its place in the input and the seed, not on its neighbours
    (tmp_path / "one.jsonl").write_text(json.dumps({"prompt": "ab"}) + "\n")
    r = cli("sample", ck, "--input", tmp_path / "one.jsonl", "-o", tmp_path / "one.parquet", "-n", "6",
            "--num-samples", "2", "--seed", "3")
    assert r.rc == 0, r.err
    assert [g["completion"] for g in pq.read_table(tmp_path / "one.parquet").to_pylist()] == \
        [g["completion"] for g in got[:2]]


def test_text_prompts_greedy(ck, cli):
    a = cli("sample", ck, "ab", "cd", "-t", "0", "-n", "8", "--seed", "1")
    b = cli("sample", ck, "ab", "cd", "-t", "0", "-n", "8", "--seed", "2")
    assert a.rc == 0 and a.out == b.out and a.text.count("---\n") == 1


@pytest.mark.parametrize("changes, words", [
    ({"n_layer": 10**6}, "n_layer"), ({"context": 10**9}, "context"), ({"vocab_size": 10**12}, "vocab_size"),
    ({"n_head": 0}, "positive"), ({"n_layer": "2"}, "integer"), ({"n_layer": 3}, "do not match"),
])
def test_bad_checkpoint_config_is_one_line_exit_3(ck, tmp_path, cli, changes, words):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ck, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(changes)
    (bad / "config.json").write_text(json.dumps(cfg))
    r = cli("sample", bad, "hi", "-n", "2", timeout=60)
    assert r.rc == 3, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmtool sample: error:") and words in lines[0]
