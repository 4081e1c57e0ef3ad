"""Tiktoken's named encodings (gpt2, r50k_base, p50k_base, cl100k_base, o200k_base), offline.

tiktoken downloads its rank files on first use and caches them in `TIKTOKEN_CACHE_DIR`
under the SHA-1 of the download URL. llmtool first looks for plain local copies, so a
machine without internet works when the files are put in a folder:

    LLMTOOL_TIKTOKEN_DIR=/data/tiktoken llmtool tokenize docs.parquet --tokenizer cl100k_base

Folders searched, in order: `$LLMTOOL_TIKTOKEN_DIR`, `$TIKTOKEN_CACHE_DIR`,
`$LLMTOOL_SHARED_DATA/tiktoken`, and `shared/data/tiktoken` beside the project checkout.
File names: `NAME.tiktoken` (tiktoken's rank file format), and for gpt2 / r50k_base also
`gpt2_encoder.json` or `encoder.json` (GPT-2's release: its ids are exactly GPT-2's ranks).
Without a local file, tiktoken's own loader runs (its cache, else a download).

    >>> ranks, spec = load_named("cl100k_base")   # doctest: +SKIP
    >>> spec["special_tokens"]["<|endoftext|>"]     # doctest: +SKIP
    100257
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

from llmtool.errors import BadInputError, EnvironmentProblem

NAMES = ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base")
_ALIASES = {"gpt-2": "gpt2", "gpt4": "cl100k_base", "gpt-4": "cl100k_base", "gpt4o": "o200k_base"}
_FILES = {
    "gpt2": ("gpt2.tiktoken", "r50k_base.tiktoken", "gpt2_encoder.json", "encoder.json"),
    "r50k_base": ("r50k_base.tiktoken", "gpt2.tiktoken", "gpt2_encoder.json", "encoder.json"),
}
_lock = threading.Lock()


def canonical_name(name: str) -> str | None:
    n = _ALIASES.get(name.lower(), name.lower())
    return n if n in NAMES else None


def search_dirs() -> list[Path]:
    dirs = []
    for var in ("LLMTOOL_TIKTOKEN_DIR", "TIKTOKEN_CACHE_DIR"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    if os.environ.get("LLMTOOL_SHARED_DATA"):
        dirs.append(Path(os.environ["LLMTOOL_SHARED_DATA"]) / "tiktoken")
    # The project checkout sits beside shared/ (developers' machines and CI).
    dirs.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "tiktoken")
    return dirs


def _spec(name: str) -> dict:
    """Pattern, special tokens and vocab size of a named encoding, from tiktoken itself.

    tiktoken's constructors load the rank file first; we swap the loaders for stubs for the
    duration of the call so that we get the rest of the definition without any I/O.
    """
    from tiktoken_ext import openai_public as op

    with _lock:
        saved = op.load_tiktoken_bpe, op.data_gym_to_mergeable_bpe_ranks
        op.load_tiktoken_bpe = lambda *a, **k: {}
        op.data_gym_to_mergeable_bpe_ranks = lambda *a, **k: {}
        try:
            d = op.ENCODING_CONSTRUCTORS[name]()
        finally:
            op.load_tiktoken_bpe, op.data_gym_to_mergeable_bpe_ranks = saved
    return {"pattern": d["pat_str"], "special_tokens": dict(d["special_tokens"]),
            "explicit_n_vocab": d.get("explicit_n_vocab")}


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 bytes (its bytes_to_unicode table, inverted)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def read_encoder_json(path: Path) -> dict[bytes, int]:
    """GPT-2's encoder.json -> mergeable ranks (the special <|endoftext|> is left out)."""
    try:
        enc = json.loads(path.read_text(encoding="utf-8"))
        dec = _gpt2_byte_decoder()
        return {bytes(dec[c] for c in tok): int(i) for tok, i in enc.items() if tok != "<|endoftext|>"}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadInputError(f"{path}: not a GPT-2 encoder.json ({e})")


def read_tiktoken_file(path: Path) -> dict[bytes, int]:
    """A tiktoken rank file: one `base64(token) rank` per line."""
    ranks = {}
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok, validate=True)] = int(rank)
        except ValueError as e:
            raise BadInputError(f"{path}: not a tiktoken rank file (line {n}: {e})")
    return ranks


def load_named(name: str) -> tuple[dict[bytes, int], dict]:
    """(mergeable_ranks, spec) of a named encoding: local files first, then tiktoken."""
    canon = canonical_name(name)
    if canon is None:
        raise BadInputError(f"unknown tokenizer {name!r}: pass a tokenizer .json file or one of {', '.join(NAMES)}")
    spec = _spec(canon)
    for d in search_dirs():
        for fname in _FILES.get(canon, (f"{canon}.tiktoken",)):
            p = d / fname
            if p.is_file():
                ranks = read_encoder_json(p) if fname.endswith(".json") else read_tiktoken_file(p)
                if len(ranks) < 256:
                    raise BadInputError(f"{p}: only {len(ranks)} ranks, not a byte-level BPE rank file")
                from llmtool.tokenizer.file import _check_ids

                try:  # a damaged local copy must not reach tiktoken (Rust panics) or struct
                    _check_ids(ranks, spec["special_tokens"])
                except ValueError as e:
                    raise BadInputError(f"{p}: not a usable rank file ({e})")
                spec["source"] = str(p)
                return ranks, spec
    import tiktoken

    try:
        enc = tiktoken.get_encoding(canon)
    except Exception as e:  # network errors, proxy errors, hash mismatches: all the same to the user
        raise EnvironmentProblem(
            f"tokenizer {canon}: no local rank file ({' or '.join(_FILES.get(canon, (canon + '.tiktoken',)))}) "
            f"in {', '.join(map(str, search_dirs()))}, and tiktoken could not fetch it ({type(e).__name__}); "
            f"put the file in a folder and set LLMTOOL_TIKTOKEN_DIR to it"
        )
    spec["source"] = "tiktoken"
    return dict(enc._mergeable_ranks), spec
