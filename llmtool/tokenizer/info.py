"""`llmtool info` for tokenizer files and token files.

    >>> describe_tokenizer("tok.json")["vocab_size"]          # doctest: +SKIP
    32768
    >>> describe_tokfile("data.bin", decode=20)["text"]       # doctest: +SKIP

Values are data (numbers stay numbers, absent ids are None) so `llmtool info --json` can
be read by programs; the stage prints them for people.
"""

from __future__ import annotations

from numbers import Real


def _num(v):
    """A number from a metadata field edited by hand, or None (never a crash in `info`)."""
    return v if isinstance(v, Real) and not isinstance(v, bool) else None


def _show(b: bytes) -> str:
    return repr(b.decode("utf-8", errors="backslashreplace"))


def describe_tokenizer(path: str) -> dict:
    from llmtool.tokenizer.file import Tokenizer

    tok = Tokenizer.load(path)
    longest = sorted(tok.mergeable_ranks, key=lambda t: (-len(t), tok.mergeable_ranks[t]))[:10]
    info = {
        "kind": "tokenizer",
        "path": path,
        "name": tok.name,
        "vocab_size": tok.vocab_size,
        "merges": len(tok.mergeable_ranks) - 256,
        "pattern": tok.pattern,
        "special_tokens": {k: v for k, v in tok.special_tokens.items()},
        "bos": {"token": tok.bos_token or "<|endoftext|>", "id": tok.bos_id} if tok.bos_id is not None else None,
        "fingerprint": tok.fingerprint,
        "longest_tokens": [_show(t) for t in longest],
        "last_merges": [_show(t) for t in sorted(tok.mergeable_ranks, key=tok.mergeable_ranks.get)[-5:]],
    }
    ex = tok.extra if isinstance(tok.extra, dict) else {}
    comp = {}
    if _num(ex.get("train_bytes_per_token")):
        comp["training sample bytes/token"] = ex["train_bytes_per_token"]
    if _num(ex.get("heldout_bytes_per_token")):
        comp["held-out bytes/token"] = ex["heldout_bytes_per_token"]
    if comp:
        info["compression"] = comp
    if "docs" in ex:
        info["trained_on"] = {k: _num(ex.get(k)) for k in ("docs", "chars", "unique_chunks")}
        if ex.get("stopped_early"):
            info["trained_on"].update(merges=_num(ex.get("merges")), merges_wanted=_num(ex.get("merges_wanted")))
    info["provenance"] = tok.provenance if isinstance(tok.provenance, dict) else None
    return info


def tokenizer_for(tf):
    """The tokenizer a token file was made with (by the spec recorded in it), fingerprint-checked."""
    from llmtool.errors import BadInputError
    from llmtool.tokenizer.file import load_tokenizer

    tmeta = tf.meta.get("tokenizer")
    tmeta = tmeta if isinstance(tmeta, dict) else {}
    spec = tmeta.get("spec") or tmeta.get("name")
    if not spec or not isinstance(spec, str):
        raise BadInputError(f"{tf.path}: records no tokenizer, cannot decode")
    tok = load_tokenizer(spec)
    tf.check_tokenizer(tok.fingerprint, f"tokenizer {spec}")
    return tok


def describe_tokfile(path: str, decode: int | None = None) -> dict:
    from llmtool.io.tokfile import TokenFile

    tf = TokenFile(path, verify=True)
    h = tf.header
    tmeta = tf.meta.get("tokenizer")
    tmeta = tmeta if isinstance(tmeta, dict) else {}
    info = {
        "kind": "token file",
        "path": path,
        "format_version": h.version,
        "dtype": str(h.dtype),
        "vocab_size": h.vocab_size,
        "tokens": h.n_tokens,
        "documents": h.n_docs,
        "tokens_per_doc": round(h.n_tokens / h.n_docs, 1) if h.n_docs else 0,
        "bos_id": h.bos_id if h.bos_id >= 0 else None,
        "eot_id": h.eot_id if h.eot_id >= 0 else None,
        "tokenizer": {"name": str(tmeta.get("name", "?")), "fingerprint": h.fingerprint},
        "separator": str(tf.meta.get("separator", "?")),
        "size_bytes": tf.path.stat().st_size,
        "checksum": "ok",
    }
    if tf.meta.get("split"):
        info["split"] = str(tf.meta["split"])
    if decode:
        tok = tokenizer_for(tf)
        info["text"] = tok.decode(tf.tokens[:decode])
    prov = tf.meta.get("provenance")
    info["provenance"] = prov if isinstance(prov, dict) else None
    return info
