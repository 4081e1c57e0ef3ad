"""The tokenizer: one self-contained JSON file, or a named tiktoken encoding.

    >>> tok = load_tokenizer("gpt2")                       # doctest: +SKIP
    >>> tok.encode("Hello world")                          # doctest: +SKIP
    [15496, 995]
    >>> tok.decode(tok.encode("Hello world"))              # doctest: +SKIP
    'Hello world'

The file (written by `llmtool bpe-train` or `Tokenizer.save`) holds the split pattern, the
byte-level merge ranks in rank order (base64) and the special tokens. It loads straight
into tiktoken without llmtool:

    import base64, json, tiktoken
    d = json.load(open("tok.json"))
    enc = tiktoken.Encoding(name=d["name"], pat_str=d["pattern"],
                            mergeable_ranks={base64.b64decode(t): i for i, t in enumerate(d["ranks"])},
                            special_tokens=d["special_tokens"])

(`ranks` is dense: entry i is the token of rank i. A file with gaps in its ranks also has
`rank_ids`, the rank of each entry.)

The fingerprint (xxh3-128 of pattern, ranks and special tokens) is stored in token files
and checkpoints, so a stage refuses data made with another tokenizer.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import xxhash

from llmtool.errors import BadInputError

FORMAT = "llmtool-tokenizer"
FORMAT_VERSION = 1
ENDOFTEXT = "<|endoftext|>"


def fingerprint_of(pattern: str, mergeable_ranks: dict[bytes, int], special_tokens: dict[str, int]) -> str:
    """32 hex chars identifying what the tokenizer does (not its name or provenance)."""
    h = xxhash.xxh3_128()
    h.update(b"llmtool-tokenizer-v1\0" + pattern.encode("utf-8") + b"\0")
    pack = struct.Struct("<II").pack
    parts = [pack(r, len(t)) + t for t, r in sorted(mergeable_ranks.items(), key=lambda kv: kv[1])]
    h.update(b"".join(parts))
    h.update(b"\0specials\0")
    for name, i in sorted(special_tokens.items(), key=lambda kv: kv[1]):
        b = name.encode("utf-8")
        h.update(pack(i, len(b)) + b)
    return h.hexdigest()


class Tokenizer:
    """Byte-level BPE (tiktoken-compatible): pattern, mergeable ranks, special tokens."""

    def __init__(self, name: str, pattern: str, mergeable_ranks: dict[bytes, int],
                 special_tokens: dict[str, int] | None = None, bos_token: str | None = None,
                 explicit_n_vocab: int | None = None, provenance: dict | None = None,
                 extra: dict | None = None):
        self.name = name
        self.pattern = pattern
        self.mergeable_ranks = mergeable_ranks
        self.special_tokens = dict(special_tokens or {})
        self.provenance = provenance
        self.extra = dict(extra or {})  # free-form facts from training (corpus size, ...)
        top = max([*mergeable_ranks.values(), *self.special_tokens.values(), -1])
        self.vocab_size = max(top + 1, explicit_n_vocab or 0)
        self._explicit_n_vocab = explicit_n_vocab
        if bos_token is not None and bos_token not in self.special_tokens:
            raise BadInputError(f"tokenizer {name}: BOS token {bos_token!r} is not one of its special tokens")
        self.bos_token = bos_token
        self.fingerprint = fingerprint_of(pattern, mergeable_ranks, self.special_tokens)
        self.source: str | None = None
        self._encoding = None
        self._decoder = None

    # ------------------------------------------------------------ ids

    @property
    def eot_id(self) -> int | None:
        return self.special_tokens.get(ENDOFTEXT)

    @property
    def bos_id(self) -> int | None:
        """The token put between documents: the chosen BOS, else <|endoftext|>."""
        if self.bos_token is not None:
            return self.special_tokens[self.bos_token]
        return self.eot_id

    def special_id(self, token: str) -> int:
        try:
            return self.special_tokens[token]
        except KeyError:
            have = ", ".join(self.special_tokens) or "none"
            raise BadInputError(f"tokenizer {self.name} has no special token {token!r} (it has: {have})")

    def with_special_tokens(self, names: list[str]) -> Tokenizer:
        """A copy with the missing special tokens appended after the current largest id."""
        specials = dict(self.special_tokens)
        nxt = self.vocab_size
        for n in names:
            if n not in specials:
                specials[n] = nxt
                nxt += 1
        if specials == self.special_tokens:
            return self
        return Tokenizer(self.name, self.pattern, self.mergeable_ranks, specials, self.bos_token,
                         None, self.provenance, self.extra)

    # ------------------------------------------------------------ encode / decode

    @property
    def encoding(self):
        """The tiktoken.Encoding doing the work (built on first use)."""
        if self._encoding is None:
            import tiktoken

            try:
                self._encoding = tiktoken.Encoding(
                    name=f"llmtool:{self.name}:{self.fingerprint[:12]}", pat_str=self.pattern,
                    mergeable_ranks=self.mergeable_ranks, special_tokens=self.special_tokens,
                    explicit_n_vocab=self._explicit_n_vocab)
            except ValueError as e:
                raise BadInputError(f"tokenizer {self.name}: cannot build it ({e})")
        return self._encoding

    def encode(self, text: str) -> list[int]:
        """Ordinary encoding: special-token text in `text` is encoded as plain text."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads or os.cpu_count() or 1)

    def decode_bytes(self, ids) -> bytes:
        try:
            return self.encoding.decode_bytes([int(i) for i in ids])
        except KeyError as e:
            raise BadInputError(f"token id {e.args[0]} is not in tokenizer {self.name} (vocab {self.vocab_size})")

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        """The bytes of one token (special tokens as their text)."""
        if self._decoder is None:
            self._decoder = {r: t for t, r in self.mergeable_ranks.items()}
            self._decoder.update({r: s.encode() for s, r in self.special_tokens.items()})
        return self._decoder[i]

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict:
        items = sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        d = {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name, "pattern": self.pattern,
             "vocab_size": self.vocab_size, "n_ranks": len(items),
             "special_tokens": self.special_tokens, "bos_token": self.bos_token,
             "fingerprint": self.fingerprint}
        if self._explicit_n_vocab:
            d["explicit_n_vocab"] = self._explicit_n_vocab
        if self.extra:
            d["training"] = self.extra
        d["ranks"] = [base64.b64encode(t).decode("ascii") for t, _ in items]
        if any(r != i for i, (_, r) in enumerate(items)):
            d["rank_ids"] = [r for _, r in items]
        if self.provenance:
            d["provenance"] = self.provenance
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write one self-contained JSON file, atomically."""
        from llmtool.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, ensure_ascii=False, separators=(",", ":"))
                f.write("\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "tokenizer") -> Tokenizer:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise BadInputError(f"{where}: not an llmtool tokenizer file (no \"format\": \"{FORMAT}\")")
        if d.get("version", 0) > FORMAT_VERSION:
            raise BadInputError(f"{where}: tokenizer format version {d['version']} is newer than this llmtool")
        try:
            toks = [base64.b64decode(t, validate=True) for t in d["ranks"]]
            ids = d.get("rank_ids") or range(len(toks))
            if len(ids) != len(toks):
                raise ValueError("rank_ids and ranks differ in length")
            ranks = dict(zip(toks, (int(i) for i in ids)))
            if len(ranks) != len(toks):
                raise ValueError("a token appears twice in ranks")
            specials = {str(k): int(v) for k, v in d.get("special_tokens", {}).items()}
            tok = cls(d.get("name") or Path(where).stem, d["pattern"], ranks, specials, d.get("bos_token"),
                      d.get("explicit_n_vocab"), d.get("provenance"), d.get("training"))
        except (KeyError, ValueError, TypeError) as e:
            raise BadInputError(f"{where}: corrupt tokenizer file ({type(e).__name__}: {e})")
        if d.get("fingerprint") and d["fingerprint"] != tok.fingerprint:
            raise BadInputError(f"{where}: tokenizer file is corrupt (its fingerprint does not match its content)")
        return tok

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise BadInputError(f"{p}: cannot read tokenizer ({e.strerror})")
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInputError(f"{p}: not a tokenizer file (invalid JSON: {e})")
        return cls.from_dict(d, str(p))

    def __getstate__(self):  # for process pools: rebuild the tiktoken object on the other side
        s = dict(self.__dict__)
        s["_encoding"] = None
        s["_decoder"] = None
        return s

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]}…)"


_named_cache: dict[str, Tokenizer] = {}


def load_tokenizer(spec: str | os.PathLike) -> Tokenizer:
    """A tokenizer from a .json file, a checkpoint folder (its tokenizer.json) or a name.

    Names: gpt2, r50k_base, p50k_base, cl100k_base, o200k_base (see llmtool.tokenizer.named
    for where their rank files are looked for offline).
    """
    s = str(spec)
    p = Path(s)
    if p.is_dir():
        f = p / "tokenizer.json"
        if not f.is_file():
            raise BadInputError(f"{p}: folder has no tokenizer.json (is it a checkpoint?)")
        return Tokenizer.load(f)
    if p.is_file():
        if s.endswith(".tiktoken"):
            raise BadInputError(f"{p}: a bare tiktoken rank file has no split pattern; name the encoding "
                                f"(e.g. --tokenizer cl100k_base with LLMTOOL_TIKTOKEN_DIR={p.parent})")
        return Tokenizer.load(p)
    from llmtool.tokenizer import named

    canon = named.canonical_name(s)
    if canon is None:
        if s.endswith(".json") or os.sep in s:
            raise BadInputError(f"{s}: no such tokenizer file")
        raise BadInputError(f"unknown tokenizer {s!r}: pass a tokenizer .json file or one of {', '.join(named.NAMES)}")
    if canon not in _named_cache:
        ranks, info = named.load_named(canon)
        tok = Tokenizer(canon, info["pattern"], ranks, info["special_tokens"],
                        explicit_n_vocab=info.get("explicit_n_vocab"))
        tok.source = info.get("source")  # the rank file it came from (or "tiktoken")
        _named_cache[canon] = tok
    return _named_cache[canon]
