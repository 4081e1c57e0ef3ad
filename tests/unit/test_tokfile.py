"""Token files: round trip, document index, truncation and corruption detection."""

import numpy as np
import pytest

from llmtool.errors import BadInputError
from llmtool.io.tokfile import TokenFile, TokenFileWriter, read_header


def _write(path, docs, vocab=1000, **kw):
    with TokenFileWriter(path, vocab_size=vocab, eot_id=vocab - 1, fingerprint="ab" * 16,
                         meta={"tokenizer": {"name": "t"}}, **kw) as w:
        for d in docs:
            w.add_document(np.asarray(d))


def test_round_trip_and_index(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 999, size=rng.integers(1, 50)) for _ in range(30)]
    p = tmp_path / "t.bin"
    _write(p, docs)
    tf = TokenFile(p, verify=True)
    assert tf.header.n_docs == 30 and len(tf) == sum(map(len, docs))
    assert tf.tokens.dtype == np.uint16
    assert tf.header.header_size % 4096 == 0
    for i, d in enumerate(docs):
        assert tf.document(i).tolist() == d.tolist()
    assert tf.meta["tokenizer"]["name"] == "t"


def test_uint32_for_large_vocab(tmp_path):
    p = tmp_path / "t.bin"
    _write(p, [[70000, 5]], vocab=100_000)
    tf = TokenFile(p, verify=True)
    assert tf.tokens.dtype == np.uint32 and tf.tokens.tolist() == [70000, 5]


def test_truncated_and_corrupt_files_are_detected(tmp_path):
    p = tmp_path / "t.bin"
    _write(p, [np.arange(500)] * 4)
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    with pytest.raises(BadInputError, match="truncated"):
        TokenFile(p)
    flipped = bytearray(data)
    flipped[read_header_size(data) + 10] ^= 0xFF
    p.write_bytes(bytes(flipped))
    with pytest.raises(BadInputError, match="checksum|outside"):
        TokenFile(p, verify=True)
    p.write_bytes(b"not a token file at all" * 10)
    with pytest.raises(BadInputError, match="not an llmtool token file"):
        read_header(p)


def read_header_size(data: bytes) -> int:
    return int.from_bytes(data[8:16], "little")


def test_error_during_write_leaves_nothing(tmp_path):
    p = tmp_path / "t.bin"
    with pytest.raises(ValueError):
        with TokenFileWriter(p, vocab_size=10) as w:
            w.add_document(np.array([1, 2]))
            w.add_document(np.array([11]))  # outside the vocab
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_mismatch(tmp_path):
    p = tmp_path / "t.bin"
    _write(p, [[1, 2]])
    tf = TokenFile(p)
    tf.check_tokenizer("ab" * 16)
    with pytest.raises(BadInputError, match="different tokenizer"):
        tf.check_tokenizer("cd" * 16)
