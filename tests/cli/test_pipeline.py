"""The whole chain, through pipes and files, on the bundled sample crawl — as a user runs it."""

import json
import subprocess
import sys

import pyarrow.parquet as pq

from tests.conftest import ROOT


def sh(cmd: str, cwd) -> subprocess.CompletedProcess:
    llm = f"{sys.executable} -m llmtool"
    return subprocess.run(cmd.replace("llmtool", llm), shell=True, cwd=cwd, capture_output=True,
                          text=True, timeout=600, executable="/bin/bash")


def test_fetch_to_sample_through_pipes_and_files(tmp_path):
    subprocess.run([sys.executable, ROOT / "examples/make_sample_warc.py", ROOT / "examples/data/books",
                    tmp_path / "crawl.warc.gz"], check=True, capture_output=True)
    chain = ("set -o pipefail; llmtool fetch crawl.warc.gz | llmtool filter - --rejected rejected.parquet"
             " | llmtool dedup - -o clean.parquet")
    r = sh(chain + " --json", tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["docs_out"] < summary["docs_in"]  # the mirrored and scraped copies went
    clean = pq.read_table(tmp_path / "clean.parquet")
    rejected = pq.read_table(tmp_path / "rejected.parquet")
    assert 100 < clean.num_rows < 232 and rejected.num_rows >= 5
    assert set(clean.column("language").to_pylist()) == {"en"}
    assert not any("We use cookies" in t for t in clean.column("text").to_pylist())
    assert not any("spam.example.com" in u for u in clean.column("url").to_pylist())

    steps = [
        "llmtool bpe-train clean.parquet --vocab-size 512 -o tok.json",
        "llmtool tokenize clean.parquet --tokenizer tok.json --val-fraction 0.05 -o data.bin",
        "llmtool pretrain data.bin --val data.val.bin --depth 1 --context 64 --max-steps 4 -o base",
        "llmtool sample base 'Call me' --max-tokens 8 --temperature 0 --seed 0",
    ]
    for step in steps:
        r = sh(step, tmp_path)
        assert r.returncode == 0, f"{step}\n{r.stderr}"
    assert r.stdout.startswith("Call me") and len(r.stdout) > len("Call me")
    # the checkpoint remembers the whole chain, back to the crawl
    info = sh("llmtool info base --json", tmp_path)
    assert info.returncode == 0, info.stderr
    text = info.stdout
    for stage in ("pretrain", "tokenize", "dedup", "filter", "fetch"):
        assert f'"stage": "{stage}"' in text, stage
    # rerunning a cached step does no work
    r = sh(steps[1], tmp_path)
    assert r.returncode == 0 and "up to date" in r.stderr
    # the piped stages rerun (a pipe cannot be checked before it is read), but they rebuild
    # clean.parquet with the same key, so everything after them stays up to date
    r = sh(chain, tmp_path)
    assert r.returncode == 0, r.stderr
    for step in steps[:3]:
        r = sh(step, tmp_path)
        assert r.returncode == 0 and "up to date" in r.stderr, step
