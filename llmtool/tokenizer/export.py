"""Other tools' formats: tiktoken rank files, llm.c and nanoGPT token files.

    >>> write_tiktoken(load_tokenizer("tok.json"), "tok.tiktoken")           # doctest: +SKIP
    >>> export_tokens("data.bin", "train.bin", "llmc")                        # doctest: +SKIP

- tiktoken: one `base64(token) rank` line per mergeable token, sorted by rank; load it
  with `tiktoken.load.load_tiktoken_bpe(path)` (the pattern and special tokens are not part
  of that format: take them from the .json file).
- llm.c (`dev/data/data_common.py`): a 256 x int32 header (magic 20240520, version 1,
  token count) then uint16 tokens; vocabularies above 65536 use magic 20240801, version
  7 and uint32 tokens, as llm.c's Llama-3 files do.
- nanoGPT (`data/*/prepare.py`): the bare uint16 tokens (`np.memmap(path, np.uint16)`),
  no header; refused for vocabularies above 65536, which nanoGPT's loader cannot read.

The document index does not exist in these layouts; the separator tokens stay in the
stream, so document boundaries remain visible.
"""

from __future__ import annotations

import base64
import os

from llmtool.errors import BadInputError, UsageError

FORMATS = ("llmtool", "llmc", "nanogpt")
LLMC_MAGIC, LLMC_VERSION = 20240520, 1
LLMC_MAGIC32, LLMC_VERSION32 = 20240801, 7


def write_tiktoken(tok, path: str | os.PathLike) -> None:
    from llmtool.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for t, r in sorted(tok.mergeable_ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(t) + b" " + str(r).encode() + b"\n")


def export_tokens(src: str, dest: str, fmt: str, chunk: int = 1 << 24) -> dict:
    """Copy the tokens of an llmtool token file into llm.c's or nanoGPT's layout."""
    import numpy as np

    from llmtool.io.atomic import atomic_path
    from llmtool.io.tokfile import TokenFile

    if fmt not in ("llmc", "nanogpt"):
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    tf = TokenFile(src, verify=True)
    h = tf.header
    wide = h.vocab_size > 65536
    if fmt == "nanogpt" and wide:
        raise BadInputError(f"{src}: vocab {h.vocab_size} does not fit nanoGPT's uint16 token files")
    if fmt == "llmc" and h.n_tokens >= 2**31:
        raise BadInputError(f"{src}: {h.n_tokens} tokens exceed llm.c's int32 token count; shard the input")
    dtype = np.uint32 if wide else np.uint16
    with atomic_path(dest) as tmp, open(tmp, "wb") as f:
        if fmt == "llmc":
            header = np.zeros(256, dtype=np.int32)
            header[0], header[1] = (LLMC_MAGIC32, LLMC_VERSION32) if wide else (LLMC_MAGIC, LLMC_VERSION)
            header[2] = h.n_tokens
            f.write(header.tobytes())
        for i in range(0, h.n_tokens, chunk):
            f.write(np.asarray(tf.tokens[i:i + chunk]).astype(dtype, copy=False).tobytes())
    return {"tokens": h.n_tokens, "docs": h.n_docs, "format": fmt}
