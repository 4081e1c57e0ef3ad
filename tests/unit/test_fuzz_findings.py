"""Regression tests for what `make fuzz` found (each crashed with a traceback before)."""

import gzip
import json
import random
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmtool.errors import BadInputError


def _corrupt_gzip_with_zlib_error() -> bytes:
    """A .jsonl.gz whose deflate stream is damaged so that zlib itself raises (not only the CRC check)."""
    rows = "".join(json.dumps({"text": f"document {i} " + "words " * (i % 50)}) + "\n" for i in range(400))
    good = gzip.compress(rows.encode())
    rng = random.Random(0)
    for _ in range(2000):
        bad = bytearray(good)
        i = rng.randrange(20, len(bad) - 20)
        bad[i] ^= 1 << rng.randrange(8)
        try:
            gzip.decompress(bytes(bad))
        except zlib.error:
            return bytes(bad)
        except (OSError, EOFError):
            continue
    pytest.fail("no zlib.error mutation found")


def test_damaged_gzip_stream_is_bad_input(tmp_path):
    from llmtool.io.tables import open_table

    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(_corrupt_gzip_with_zlib_error())
    with pytest.raises(BadInputError, match="corrupt gzip"):
        open_table(str(path))


def test_deeply_nested_tokenizer_file_is_bad_input(tmp_path):
    from llmtool.tokenizer.file import Tokenizer

    path = tmp_path / "tok.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadInputError, match="nested too deeply"):
        Tokenizer.load(path)


def test_urls_go_on_the_wire_percent_encoded():
    from llmtool.data.http import request_url

    assert request_url("http://example.org/a b/\u00e9?x=\u00e9#\u00e9") == \
        "http://example.org/a%20b/%C3%A9?x=%C3%A9#%C3%A9"
    assert request_url("http://b\u00fccher.de:8080/x") == "http://xn--bcher-kva.de:8080/x"
    assert request_url("http://example.org/plain?q=1") == "http://example.org/plain?q=1"
    for bad in ("http://example.org/a\x01b", "http://example.org/\x7f", "http://h\u00e9:99999/x"):
        with pytest.raises(BadInputError):
            request_url(bad)


def test_binary_text_column_is_decoded_by_tokenize(tmp_path):
    from llmtool.io.tables import open_table, text_column
    from llmtool.tokenizer.pipeline import _encode_one  # noqa: F401  (the path that crashed)

    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": pa.array([b"caf\xc3\xa9", None, b"\xff bad"], pa.binary())}), path)
    batch = next(open_table(str(path)).batches())
    assert text_column(batch) == ["caf\u00e9", None, "\ufffd bad"]


def test_metrics_with_damaged_lines_are_read_without_them(tmp_path):
    from llmtool.model.checkpoint import read_metrics

    (tmp_path / "metrics.jsonl").write_bytes(
        b'{"step": 1, "loss": 2.5}\n\xff\xfe not utf-8\n' + b"[" * 5000 + b"\n[1, 2]\n{\"step\": 2}\n")
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.5}, {"step": 2}]
