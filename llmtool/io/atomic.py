"""Atomic outputs: write beside the destination, fsync, then rename over it.

A crash, an exception or Ctrl-C never leaves a half-written file under the final name:
the temporary file is removed and any older output stays as it was.

    >>> from llmtool.io.atomic import atomic_path
    >>> with atomic_path("out.bin") as tmp:          # doctest: +SKIP
    ...     tmp.write_bytes(b"data")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llmtool.errors import LlmtoolError


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_name(dest: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary permissions
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` atomically."""
    dest = Path(dest)
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _temp_name(dest)
    except PermissionError:
        raise LlmtoolError(f"cannot write {dest}: permission denied (choose another place with -o)")
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, dest)
        with contextlib.suppress(OSError):  # make the rename itself durable
            _fsync_path(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; on success it replaces `dest` as a whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        if dest.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first,
            # so there is never a moment without a complete folder under some name.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
