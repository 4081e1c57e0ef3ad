"""Per-document dedup keys of one input, computed in batches and spilled to disk by band.

    >>> from llmtool.data.dedup.signatures import Settings, compute_batch
    >>> s = Settings(mode="both")
    >>> r = compute_batch(["a b c d e f", "A b, c d e f!", ""], s)
    >>> r["bands"].shape, bool((r["bands"][0] == r["bands"][1]).all()), r["has"].tolist()
    ((3, 14), True, [True, True, False])

For every document: its length (characters, for `--keep longest`), whether it has
shingles, its exact hash (xxh3-128 of the normalised text) and its band hashes (14 by
default). One input's keys live in a folder named after the input's fingerprint and the
settings, one file per band (`band_00.u64` ...), appended batch by batch, so memory holds
one batch; `meta.json` is written last and marks the folder complete. These folders are
the shard outputs of `dedup --shard I/N --signatures DIR`, merged by a later run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Settings:
    """Everything that changes a document's keys (part of the signature folder name)."""

    mode: str = "both"  # exact | minhash | both | none
    ngram: int = 5
    num_perm: int = 112
    bands: int = 14
    rows: int = 8
    seed: int = 1

    @property
    def exact(self) -> bool:
        return self.mode in ("exact", "both")

    @property
    def minhash(self) -> bool:
        return self.mode in ("minhash", "both")

    def fingerprint(self) -> dict:
        return {"format": FORMAT_VERSION, **asdict(self)}


_HASHERS: dict = {}


def _hasher(s: Settings):
    from llmtool.data.dedup.minhash import MinHasher

    key = (s.num_perm, s.ngram, s.seed)
    if key not in _HASHERS:
        _HASHERS[key] = MinHasher(num_perm=s.num_perm, ngram=s.ngram, seed=s.seed)
    return _HASHERS[key]


def compute_batch(texts: list[str | None], s: Settings) -> dict[str, np.ndarray]:
    """Keys of a batch of texts: length, has (shingles), exact (n,2), bands (n,B)."""
    from llmtool.data.dedup.exact import exact_hashes
    from llmtool.data.dedup.minhash import band_hashes
    from llmtool.data.dedup.normalise import normalise_codepoints, split_documents

    n = len(texts)
    out = {"length": np.fromiter((len(t) if t else 0 for t in texts), dtype=np.int64, count=n)}
    cp = normalise_codepoints(texts) if n else np.zeros(0, np.uint32)
    if s.exact:
        out["exact"] = exact_hashes(split_documents(cp) if n else [])
    if s.minhash:
        mh = _hasher(s)
        sh, doc = mh.shingles_from_codepoints(cp, n)
        sig, has = mh.signatures_from_shingles(sh, doc, n)
        out["has"] = has
        out["bands"] = band_hashes(sig, s.bands, s.rows)
    else:
        out["has"] = np.zeros(n, dtype=bool)
    return out


def folder_name(input_key: str, s: Settings) -> str:
    import xxhash

    h = xxhash.xxh3_64_hexdigest(json.dumps([input_key, s.fingerprint()], sort_keys=True).encode())
    return f"sig-{h}"


class SignatureWriter:
    """Appends batches of keys for one input; `finish` writes meta.json (complete)."""

    def __init__(self, folder: str | os.PathLike, s: Settings):
        self.folder = Path(folder)
        self.s = s
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.tmp = self.folder.with_name(self.folder.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.rows = 0
        self._fh = {"length": open(self.tmp / "length.i64", "wb"), "has": open(self.tmp / "has.u8", "wb")}
        if s.exact:
            self._fh["exact"] = open(self.tmp / "exact.u64", "wb")
        if s.minhash:
            for b in range(s.bands):
                self._fh[f"band_{b:02d}"] = open(self.tmp / f"band_{b:02d}.u64", "wb")

    def append(self, r: dict[str, np.ndarray]) -> None:
        self._fh["length"].write(r["length"].astype("<i8").tobytes())
        self._fh["has"].write(r["has"].astype(np.uint8).tobytes())
        if self.s.exact:
            self._fh["exact"].write(r["exact"].astype("<u8").tobytes())
        if self.s.minhash:
            bands = r["bands"]
            for b in range(self.s.bands):
                self._fh[f"band_{b:02d}"].write(np.ascontiguousarray(bands[:, b]).astype("<u8").tobytes())
        self.rows += r["length"].size

    def close(self) -> None:
        for f in self._fh.values():
            f.close()

    def finish(self, meta: dict) -> None:
        self.close()
        (self.tmp / "meta.json").write_text(json.dumps({**meta, "rows": self.rows,
                                                        "settings": self.s.fingerprint()}))
        os.replace(self.tmp, self.folder)

    def abort(self) -> None:
        self.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class SignatureReader:
    """The keys of one input, read back whole or one band at a time."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.rows = int(self.meta["rows"])

    @staticmethod
    def complete(folder: str | os.PathLike) -> bool:
        return (Path(folder) / "meta.json").is_file()

    def _read(self, name: str, dtype: str, width: int = 1) -> np.ndarray:
        a = np.fromfile(self.folder / name, dtype=dtype)
        if a.size != self.rows * width:
            from llmtool.errors import BadInputError

            raise BadInputError(f"{self.folder}/{name}: {a.size} values for {self.rows} rows "
                                "(signature folder damaged: delete it and rerun)")
        return a.reshape(self.rows, width) if width > 1 else a

    def length(self) -> np.ndarray:
        return self._read("length.i64", "<i8")

    def has(self) -> np.ndarray:
        return self._read("has.u8", "u1").astype(bool)

    def exact(self) -> np.ndarray:
        return self._read("exact.u64", "<u8", 2)

    def band(self, b: int) -> np.ndarray:
        return self._read(f"band_{b:02d}.u64", "<u8")
