"""Artifact kinds, how each is mutated, and the commands that read each.

`make_case(kind, round, seeds, case_dir, rng, base_url)` writes a case's `in/` folder and
returns the Case. Round r of a kind runs command r mod (number of commands); the first
round over every command uses the unmutated first seed (a baseline: it must pass).
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

from fuzz import mutate as m
from fuzz.harness import Case
from fuzz.seeds import TINY

# CPU seconds per command (normal runs take 1-5): beyond them a case counts as a hang.
DATA_TIMEOUT, TORCH_TIMEOUT = 20.0, 60.0

# Split patterns a tokenizer file may carry: broken, empty-matching, catastrophic, odd classes.
PATTERNS = ["", "(", ".", "(?!)", "\\p{Bogus}", "(a+)+$", "\\s*", "[^]", "(?i)", "x*", "\\X", "(?<=a)b", "\\"]


# ----------------------------------------------------------------------------- mutations

def _tokenizer(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A tokenizer file. Its "fingerprint" catches most edits of pattern, ranks and special
    tokens, so half the time it is dropped (it is optional) to reach the checks behind it."""
    import json

    try:
        d = json.loads(data)
    except ValueError:
        return m.mutate_bytes(data, rng)
    if not isinstance(d, dict) or rng.random() < 0.2:
        return m.mutate_json_bytes(data, rng)
    if rng.random() < 0.15:
        d["pattern"] = rng.choice(PATTERNS)
        note = f"pattern = {d['pattern']!r}"
    else:
        d, note = m.mutate_tree(d, rng)
    if isinstance(d, dict) and rng.random() < 0.5:
        d.pop("fingerprint", None)
        note += ", no fingerprint"
    return m.dumps(d), note


def _plain(obj):
    """Raw markers are a str subclass; torch's weights-only loader refuses unknown classes."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return str.__str__(obj) if isinstance(obj, m.Raw) else obj


def _train_state(path: Path, rng: random.Random) -> str:
    if rng.random() < 0.4:
        data, note = m.mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        return note
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    state, note = m.mutate_tree(state, rng)
    torch.save(_plain(state), path)
    return f"train state {note}"


CKPT_FILES: dict[str, Callable] = {
    "config.json": m.mutate_json_bytes,
    "model.safetensors": m.mutate_safetensors,
    "tokenizer.json": _tokenizer,
    "metrics.jsonl": m.mutate_jsonl,
    "provenance.json": m.mutate_json_bytes,
}


def _checkpoint(folder: Path, rng: random.Random) -> str:
    name = rng.choice([*CKPT_FILES, "config.json", "model.safetensors", "train_state.pt", "train_state.pt", "delete"])
    if name == "delete":
        victim = rng.choice(sorted(p.name for p in folder.iterdir()))
        (folder / victim).unlink()
        return f"removed {victim}"
    if name == "train_state.pt":
        return _train_state(folder / name, rng)
    data, note = CKPT_FILES[name](((folder / name).read_bytes()), rng)
    (folder / name).write_bytes(data)
    return f"{name}: {note}"


def _table(path: Path, rng: random.Random, writer) -> tuple[bytes, str]:
    if rng.random() < 0.35:
        return m.mutate_bytes(path.read_bytes(), rng)
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    data = path.read_bytes()
    table = pq.read_table(path) if data[:4] == b"PAR1" else ipc.open_stream(pa.py_buffer(data)).read_all()
    table, note = m.mutate_table(table, rng)
    return writer(table, rng), note


def mutate_file(kind: str, src: Path, dst: Path, rng: random.Random) -> str:
    """Copy seed `src` to `dst` with one mutation for its kind; returns what was done."""
    if src.is_dir():
        shutil.copytree(src, dst)
        return _checkpoint(dst, rng)
    data = src.read_bytes()
    if kind in ("warc", "arc", "wet"):
        data, note = m.gz_aware(data, rng, m.mutate_archive)
    elif kind == "jsonl":
        data, note = m.gz_aware(data, rng, m.mutate_jsonl)
    elif kind == "parquet":
        data, note = _table(src, rng, m.write_parquet)
    elif kind == "arrow":
        data, note = _table(src, rng, m.write_arrow_stream)
    elif kind == "tokfile":
        data, note = m.mutate_tokfile(data, rng)
    elif kind == "tokenizer":
        data, note = _tokenizer(data, rng)
    elif kind == "list":
        data, note = m.mutate_lines(data, rng, [b"@list.txt", b"@in/list.txt", b"crawl.warc.gz", b"in"])
    elif kind == "paths":
        data, note = m.gz_aware(data, rng, lambda d, r: m.mutate_lines(d, r, [b"crawl.warc", b"base/config.json"]))
    else:  # text, html
        data, note = m.gz_aware(data, rng, m.mutate_html)
    dst.write_bytes(data)
    return note


# ----------------------------------------------------------------------------- commands

PREV = {"parquet": ("clean.parquet", "out/o.parquet"), "bin": ("data.bin", "out/o.bin"),
        "tok": ("tok.json", "out/tok.json"), "ckpt": ("base", "out/ckpt")}


def _workers(rng: random.Random) -> list[str]:
    return ["-w", rng.choice("1112")]


def _writes(stage: str, x: str, out: str, extra: list[str], rng: random.Random) -> tuple[list[str], str, float]:
    return [stage, x, *extra, "-o", PREV[out][1], "--force", *_workers(rng)], out, DATA_TIMEOUT


# name -> builder(x, rng, base_url) -> (argv, previous-output key or None, timeout)
COMMANDS: dict[str, Callable] = {
    "fetch": lambda x, r, u: _writes("fetch", x, "parquet", [], r),
    "fetch-paths": lambda x, r, u: _writes("fetch", x, "parquet", ["--base-url", u, "--retries", "0",
                                                                   "--timeout", "2"], r),
    "info": lambda x, r, u: (["info", x], None, TORCH_TIMEOUT),
    "info-decode": lambda x, r, u: (["info", x, "--decode", "16"], None, DATA_TIMEOUT),
    # --extract-timeout: a page may use 2 CPU s (not 10), so a few slow pages stay within the case's limit
    "filter": lambda x, r, u: _writes("filter", x, "parquet", ["--extract-timeout", "2"]
                                      + r.choice([[], ["--rejected", "out/rej.parquet"]]), r),
    "dedup": lambda x, r, u: _writes("dedup", x, "parquet", r.choice([[], ["--clusters", "out/cl.parquet"]]), r),
    "bpe-train": lambda x, r, u: _writes("bpe-train", x, "tok", ["--vocab-size", "300"], r),
    "tokenize": lambda x, r, u: _writes("tokenize", x, "bin", ["-t", "in/tok.json"], r),
    "tokenize-with": lambda x, r, u: _writes("tokenize", "in/clean.parquet", "bin", ["-t", x], r),
    "sample-input": lambda x, r, u: (["sample", "in/base", "--input", x, "-o", "out/o.parquet", "-n", "3",
                                      "--force", "--device", "cpu"], "parquet", TORCH_TIMEOUT),
    "sample": lambda x, r, u: (["sample", x, "Call me", "-n", "4", "--device", "cpu"], None, TORCH_TIMEOUT),
    "pretrain": lambda x, r, u: (["pretrain", x, *TINY, "--max-steps", "2", "-o", "out/ckpt", "--force"],
                                 "ckpt", TORCH_TIMEOUT),
    "pretrain-val": lambda x, r, u: (["pretrain", "in/data.bin", "--val", x, *TINY, "--max-steps", "1",
                                      "-o", "out/ckpt", "--force"], "ckpt", TORCH_TIMEOUT),
    "pretrain-resume": lambda x, r, u: (["pretrain", "in/data.bin", *TINY, "--max-steps", "3", "-o", "out/ckpt",
                                         "--resume"], "resume", TORCH_TIMEOUT),
}

TABLE_COMMANDS = ["filter", "dedup", "bpe-train", "tokenize", "info"]
KINDS: dict[str, list[str]] = {
    "warc": ["fetch", "info"],
    "arc": ["fetch", "info"],
    "wet": ["fetch", "info"],
    "jsonl": ["fetch", *TABLE_COMMANDS],
    "parquet": ["fetch", *TABLE_COMMANDS, "sample-input"],
    "arrow": TABLE_COMMANDS,  # read from stdin
    "tokfile": ["pretrain", "pretrain-val", "info-decode"],
    "tokenizer": ["tokenize-with", "info"],
    "checkpoint": ["sample", "info", "tokenize-with", "pretrain-resume"],
    "list": ["fetch"],
    "paths": ["fetch-paths"],
    "text": ["fetch", "info", "filter"],
}
# Unmutated files every case gets beside its input (what its command names besides the input).
COMPANIONS = ["tok.json", "clean.parquet", "data.bin", "base", "crawl.warc.gz", "crawl.arc", "page.html"]


def make_case(kind: str, rnd: int, seeds: dict[str, list[Path]], seed_dir: Path, case_dir: Path,
              rng: random.Random, base_url: str) -> Case:
    commands = KINDS[kind]
    command = commands[rnd % len(commands)]
    baseline = rnd < len(commands)
    src = seeds[kind][0] if baseline else rng.choice(seeds[kind])
    inp = case_dir / "in"
    inp.mkdir(parents=True)
    for name in COMPANIONS:
        (shutil.copytree if (seed_dir / name).is_dir() else shutil.copy2)(seed_dir / name, inp / name)
    for key, (name, _) in PREV.items():
        if key != "ckpt":  # the checkpoint companion `base` doubles as the older checkpoint
            shutil.copy2(seed_dir / name, inp / f"prev.{name}")
    # The input keeps its seed's name (suffixes steer how llmtool reads it), prefixed so that
    # it never overwrites a companion; a checkpoint folder is "ckpt"; a list must be list.txt.
    name = "ckpt" if src.is_dir() else "list.txt" if kind == "list" else f"x.{src.name}"
    note = "baseline (unmutated)"
    if baseline:
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, inp / name)
    else:
        note = mutate_file(kind, src, inp / name, rng)
    x = f"in/{name}"
    stdin = None
    if kind == "arrow":
        x, stdin = "-", x
    elif kind == "list":
        x = "@" + x
    argv, prev, timeout = COMMANDS[command](x, rng, base_url)
    if prev == "resume":
        setup = [(f"in/{name}", "out/ckpt")]
    elif prev == "ckpt":
        setup = [("in/base", "out/ckpt")]
    elif prev:
        setup = [(f"in/prev.{PREV[prev][0]}", PREV[prev][1])]
    else:
        setup = []
    return Case(kind, command, argv, f"{src.name}: {note}", stdin, setup, timeout)
