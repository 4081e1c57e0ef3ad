"""Token files: a fixed header, contiguous memmap-able tokens, then the document index.

Layout (little-endian):

    0     magic  b"LLMTOK1\\n"
    8     u64    header size in bytes (a multiple of 4096, so tokens are page-aligned)
    16    u32    format version (1)
    20    u32    bytes per token: 2 (uint16, vocab <= 65536) or 4 (uint32)
    24    u64    vocab size
    32    u64    number of tokens
    40    u64    number of documents
    48    i64    BOS id (-1: none)         56  i64  EOT id (-1: none)
    64    32 B   tokenizer fingerprint (ASCII hex)
    96    u64    xxh3-64 of the token bytes
    104   u64    length of the JSON metadata that follows (tokenizer name, provenance)
    header size: tokens; then u64 start offset of each document; then b"LLMTEND\\n".

A file whose size disagrees with its header, or that lacks the trailer, is truncated:
reading it raises BadInputError (exit 3).

    >>> import numpy as np
    >>> with TokenFileWriter("t.bin", vocab_size=300, eot_id=256) as w:
    ...     w.add_document(np.array([1, 2, 3]))
    >>> TokenFile("t.bin").tokens[:3].tolist()
    [1, 2, 3]
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from llmtool.errors import BadInputError
from llmtool.io.atomic import atomic_path

MAGIC = b"LLMTOK1\n"
TRAILER = b"LLMTEND\n"
VERSION = 1
_FIXED = struct.Struct("<8sQIIQQQqq32sQQ")  # 112 bytes
_ALIGN = 4096


@dataclass
class Header:
    header_size: int
    version: int
    token_bytes: int
    vocab_size: int
    n_tokens: int
    n_docs: int
    bos_id: int
    eot_id: int
    fingerprint: str
    checksum: int
    meta: dict = field(default_factory=dict)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.token_bytes == 2 else np.uint32)

    def expected_size(self) -> int:
        return self.header_size + self.n_tokens * self.token_bytes + self.n_docs * 8 + len(TRAILER)


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65536 else np.uint32)


def _pack_header(h: Header) -> bytes:
    meta = json.dumps(h.meta, default=str).encode()
    fixed = _FIXED.pack(MAGIC, h.header_size, h.version, h.token_bytes, h.vocab_size, h.n_tokens,
                        h.n_docs, h.bos_id, h.eot_id, h.fingerprint.encode()[:32].ljust(32, b"0"),
                        h.checksum, len(meta))
    data = fixed + meta
    assert len(data) <= h.header_size
    return data.ljust(h.header_size, b"\0")


def read_header(path: str | os.PathLike) -> Header:
    """Parse and sanity-check a token file's header (BadInputError if it is not one)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            fixed = f.read(_FIXED.size)
            if len(fixed) < _FIXED.size or fixed[:8] != MAGIC:
                raise BadInputError(f"{path}: not an llmtool token file (bad magic)")
            (_, hsize, version, tbytes, vocab, ntok, ndocs, bos, eot, fp, checksum, mlen) = _FIXED.unpack(fixed)
            if version != VERSION or tbytes not in (2, 4) or mlen > hsize:
                raise BadInputError(f"{path}: corrupt token file header (version {version}, {tbytes} bytes/token)")
            meta = json.loads(f.read(mlen) or b"{}")
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})")
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadInputError(f"{path}: corrupt token file header (metadata)")
    if not isinstance(meta, dict):
        raise BadInputError(f"{path}: corrupt token file header (metadata is not a JSON object)")
    try:
        fingerprint = fp.decode("ascii")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: corrupt token file header (tokenizer fingerprint is not ASCII)")
    return Header(hsize, version, tbytes, vocab, ntok, ndocs, bos, eot, fingerprint, checksum, meta)


class TokenFile:
    """A token file opened for reading: `.tokens` (memmap), `.doc_starts`, `.header`."""

    def __init__(self, path: str | os.PathLike, verify: bool = False):
        self.path = Path(path)
        self.header = h = read_header(self.path)
        size = self.path.stat().st_size
        if size != h.expected_size():
            raise BadInputError(
                f"{self.path}: truncated or corrupt token file ({size} bytes, header promises "
                f"{h.expected_size()}); rerun the stage that wrote it"
            )
        with open(self.path, "rb") as f:
            f.seek(size - len(TRAILER))
            if f.read() != TRAILER:
                raise BadInputError(f"{self.path}: token file lacks its end marker (truncated?)")
        self.tokens = (np.memmap(self.path, dtype=h.dtype, mode="r", offset=h.header_size, shape=(h.n_tokens,))
                       if h.n_tokens else np.zeros(0, h.dtype))
        index_at = h.header_size + h.n_tokens * h.token_bytes
        self.doc_starts = (np.memmap(self.path, dtype=np.uint64, mode="r", offset=index_at, shape=(h.n_docs,))
                           if h.n_docs else np.zeros(0, np.uint64))
        if verify:
            self.verify()

    def verify(self) -> None:
        """Check the token checksum and that every id is below the vocab size."""
        h = self.header
        digest = xxhash.xxh3_64()
        chunk = 1 << 24
        top = 0
        for i in range(0, h.n_tokens, chunk):
            part = np.asarray(self.tokens[i:i + chunk])
            digest.update(part.tobytes())
            top = max(top, int(part.max()))
        if digest.intdigest() != h.checksum:
            raise BadInputError(f"{self.path}: token checksum mismatch (the file is corrupt)")
        if h.n_tokens and top >= h.vocab_size:
            raise BadInputError(f"{self.path}: token id {top} is outside the vocab ({h.vocab_size})")

    @property
    def meta(self) -> dict:
        return self.header.meta

    def __len__(self) -> int:
        return self.header.n_tokens

    def document(self, i: int) -> np.ndarray:
        start = int(self.doc_starts[i])
        end = int(self.doc_starts[i + 1]) if i + 1 < len(self.doc_starts) else len(self.tokens)
        return np.asarray(self.tokens[start:end])

    def check_tokenizer(self, fingerprint: str, what: str = "the tokenizer") -> None:
        """Refuse to combine this file with a tokenizer it was not made with."""
        mine = self.header.fingerprint
        if fingerprint and mine.strip("0") and mine != fingerprint[:32]:
            raise BadInputError(
                f"{self.path}: made with a different tokenizer (fingerprint {mine[:12]}…, "
                f"{what} has {fingerprint[:12]}…); retokenize or pass the matching tokenizer"
            )


class TokenFileWriter:
    """Stream documents into a token file; written atomically on a clean exit."""

    def __init__(self, path: str | os.PathLike, vocab_size: int, bos_id: int = -1, eot_id: int = -1,
                 fingerprint: str = "", meta: dict | None = None):
        self.path = Path(path)
        self.dtype = dtype_for_vocab(vocab_size)
        self.meta = meta or {}
        meta_len = len(json.dumps(self.meta, default=str).encode())
        hsize = -(-(_FIXED.size + meta_len) // _ALIGN) * _ALIGN
        self.header = Header(hsize, VERSION, self.dtype.itemsize, vocab_size, 0, 0, bos_id, eot_id,
                             fingerprint[:32], 0)
        self.header.meta = self.meta
        self._digest = xxhash.xxh3_64()
        self._doc_starts: list[np.ndarray] = []
        self._atomic = None
        self._fh = None

    def __enter__(self) -> TokenFileWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._fh = open(tmp, "wb")
        self._fh.write(b"\0" * self.header.header_size)
        return self

    def add_tokens(self, tokens: np.ndarray, doc_starts: np.ndarray | list[int] = ()) -> None:
        """Append tokens; `doc_starts` are offsets of documents starting inside them."""
        tokens = np.asarray(tokens)
        if tokens.size and int(tokens.max()) >= self.header.vocab_size:
            raise ValueError(f"token id {int(tokens.max())} is outside the vocab ({self.header.vocab_size})")
        data = tokens.astype(self.dtype, copy=False).tobytes()
        starts = np.asarray(doc_starts, dtype=np.uint64) + np.uint64(self.header.n_tokens)
        self._doc_starts.append(starts)
        self._fh.write(data)
        self._digest.update(data)
        self.header.n_tokens += tokens.size
        self.header.n_docs += len(starts)

    def add_document(self, tokens: np.ndarray) -> None:
        self.add_tokens(tokens, [0])

    def _finish(self) -> None:
        for starts in self._doc_starts:
            self._fh.write(starts.astype("<u8").tobytes())
        self._fh.write(TRAILER)
        self.header.checksum = self._digest.intdigest()
        self._fh.seek(0)
        self._fh.write(_pack_header(self.header))

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as e:
                self._fh.close()
                self._atomic.__exit__(type(e), e, e.__traceback__)
                raise
        self._fh.close()
        self._atomic.__exit__(exc_type, exc, tb)
