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
MAX_ID = 2**32 - 1  # token files and the fingerprint store ids as uint32

# Text that a split pattern must cut into non-empty pieces: tiktoken's Rust core panics
# (an uncatchable-looking crash with a Rust backtrace) on a zero-width match.
_PATTERN_PROBE = ("Hello, world! It's 2024: x=3.14 ... \t\n\n  naïve Ünïcödé ÆØÅ "
                  "日本語のテキスト Привет мир 🙂👍 <|endoftext|> \r\n end  ")


def pattern_problem(pattern) -> str | None:
    """Why `pattern` cannot be a split pattern (None when it can)."""
    if not isinstance(pattern, str) or not pattern:
        return f"the split pattern must be a non-empty string, not {pattern!r}"
    import regex

    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        return f"the split pattern is not a valid regex ({e})"
    if any(m.start() == m.end() for m in compiled.finditer(_PATTERN_PROBE)):
        return f"the split pattern {pattern[:60]!r} can match empty text (tiktoken cannot use it)"
    return None


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ID


def _check_fields(d: dict) -> None:
    """Raise ValueError naming the first field of a tokenizer file with a wrong type or value.

    JSON edited by hand or by another tool reaches tiktoken and struct only after this, so a
    bad file is one error line, never a TypeError, a struct.error or a Rust panic.
    """
    version = d.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"\"version\" must be an integer, not {version!r}")
    for key in ("name", "bos_token"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise ValueError(f"\"{key}\" must be a string, not {d[key]!r}")
    for key in ("training", "provenance"):
        if d.get(key) is not None and not isinstance(d[key], dict):
            raise ValueError(f"\"{key}\" must be an object, not {type(d[key]).__name__}")
    if "pattern" not in d:
        raise ValueError("no \"pattern\"")
    if why := pattern_problem(d["pattern"]):
        raise ValueError(why)
    ranks = d.get("ranks")
    if not isinstance(ranks, list) or not all(isinstance(t, str) for t in ranks):
        raise ValueError("\"ranks\" must be a list of base64 strings")
    rank_ids = d.get("rank_ids")
    if rank_ids is not None and (not isinstance(rank_ids, list) or not all(map(_is_id, rank_ids))):
        raise ValueError(f"\"rank_ids\" must be a list of integers from 0 to {MAX_ID}")
    specials = d.get("special_tokens", {})
    if not isinstance(specials, dict):
        raise ValueError(f"\"special_tokens\" must be an object {{token: id}}, not {type(specials).__name__}")
    for name, i in specials.items():
        if not name:
            raise ValueError("a special token has an empty name")
        if not _is_id(i):
            raise ValueError(f"special token {name!r} has id {i!r}: ids are integers from 0 to {MAX_ID}")
    n_vocab = d.get("explicit_n_vocab")
    if n_vocab is not None and not (_is_id(n_vocab) and n_vocab > 0):
        raise ValueError(f"\"explicit_n_vocab\" must be a positive integer, not {n_vocab!r}")


def _check_ids(ranks: dict[bytes, int], specials: dict[str, int]) -> None:
    """Ids fit uint32, every byte has a rank and no two tokens share an id (tiktoken would
    panic or decode wrong)."""
    bad = next((i for i in ranks.values() if not 0 <= i <= MAX_ID), None)
    if bad is not None:
        raise ValueError(f"rank {bad} is out of range (ids are integers from 0 to {MAX_ID})")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(f"{len(missing)} of the 256 single bytes have no rank (first: {missing[0]})")
    if len(set(ranks.values())) != len(ranks):
        raise ValueError("two ranks share an id")
    taken = set(ranks.values())
    for name, i in specials.items():
        if i in taken:
            raise ValueError(f"special token {name!r} has id {i}, which is already taken")
        taken.add(i)


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
        """A copy with the missing special tokens appended (see `add_special_tokens`)."""
        return add_special_tokens(self, names)

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
        from llmtool.tokenizer.chat import TEMPLATE, has_chat_tokens

        if has_chat_tokens(self):  # for other tools: how conversations are rendered (tokenizer/chat.py)
            d["chat_template"] = TEMPLATE
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
        try:
            _check_fields(d)
        except ValueError as e:
            raise BadInputError(f"{where}: corrupt tokenizer file ({e})")
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
            _check_ids(ranks, specials)
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
        except RecursionError:  # json gives up near 1,000 levels with Python's own error
            raise BadInputError(f"{p}: not a tokenizer file (JSON nested too deeply)")
        return cls.from_dict(d, str(p))

    def __getstate__(self):  # for process pools: rebuild the tiktoken object on the other side
        s = dict(self.__dict__)
        s["_encoding"] = None
        s["_decoder"] = None
        return s

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]}…)"


def add_special_tokens(tok: Tokenizer, names: list[str]) -> Tokenizer:
    """`tok` with the special tokens `names` appended at the next free ids (from vocab_size on).

    Names it already has keep their ids; when all are present, `tok` itself comes back.
    The ranks and pattern are unchanged, so every ordinary text encodes as before; the
    fingerprint changes (it covers the special tokens), and the saved file still loads
    into plain tiktoken. Used to add chat tokens (<|im_start|>, <|im_end|>) to a
    pretrained model's tokenizer before growing its embedding to the new vocab_size.

        >>> chat = add_special_tokens(load_tokenizer("gpt2"), ["<|im_start|>", "<|im_end|>"])  # doctest: +SKIP
        >>> chat.special_tokens["<|im_start|>"]                                              # doctest: +SKIP
        50257
    """
    specials = dict(tok.special_tokens)
    nxt = tok.vocab_size
    for name in names:
        if not isinstance(name, str) or not name:
            raise BadInputError(f"a special token must be a non-empty string, not {name!r}")
        if name not in specials:
            if nxt > MAX_ID:
                raise BadInputError(f"tokenizer {tok.name}: no free id left for special token {name!r}")
            specials[name] = nxt
            nxt += 1
    if specials == tok.special_tokens:
        return tok
    new = Tokenizer(tok.name, tok.pattern, tok.mergeable_ranks, specials, tok.bos_token,
                    None, tok.provenance, tok.extra)
    new.source = tok.source
    return new


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
