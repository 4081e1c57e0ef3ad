"""Atomic outputs: write beside the destination, fsync, then rename over it.

A crash, an exception or Ctrl-C never leaves a half-written file under the final name:
the temporary file is removed and any older output stays as it was.

    >>> from llmtool.io.atomic import atomic_path
    >>> with atomic_path("out.bin") as tmp:
    ...     _ = tmp.write_bytes(b"data")
    >>> open("out.bin", "rb").read()
    b'data'

Temporary names carry the host and pid of their owner (`.out.parquet.HOST.PID.RANDOM.tmp`,
scratch folders `llmtool-WHAT.HOST.PID.RANDOM`), so what a SIGKILLed run left behind is
recognised and removed the next time a folder is used, and only when that process is gone:
a live process's files are never touched (nor those of another host on a shared disk).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
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


# a host name as it may appear in a file name (no dots: they separate the fields)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
# tempfile's random part: 8 characters of [a-z0-9_]
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)$")
_SCRATCH_RE = re.compile(r"^\.?llmtool-[A-Za-z0-9_-]+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[a-z0-9_]{8}$")
_cleaned: set[str] = set()  # folders already swept by this process


def _owner() -> str:
    return f"{_HOST}.{os.getpid()}"  # at call time: a forked worker has its own pid


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _remove(path: Path) -> bool:
    """Remove a file or folder if we may (another user's is left alone); True when it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
    return not os.path.lexists(path)


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and scratch folders in `folder` that a process of this host
    left when it died (SIGKILL, a crash). Returns what was removed."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TEMP_RE.match(name) or _SCRATCH_RE.match(name)
        if not m or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        kind = m.groupdict().get("kind")
        if kind and not (folder / m["name"]).exists():
            # atomic_dir died between moving the old folder aside and renaming the new one in:
            # its .old and .tmp are the only complete copies; leave them to the user
            owner = f".{m['name']}.{m['host']}.{m['pid']}."
            if kind == "old" or any(n.startswith(owner) and n.endswith(".old") for n in names):
                continue
        if _remove(folder / name):
            removed.append(folder / name)
    return removed


def _sweep(folder: Path) -> None:
    """clean_stale once per folder and process: cheap for a stage writing many outputs."""
    key = os.path.realpath(folder)
    if key not in _cleaned:
        _cleaned.add(key)
        clean_stale(folder)


def scratch_dir(what: str, parent: str | os.PathLike | None = None, hidden: bool = False) -> Path:
    """A new scratch folder `llmtool-WHAT.HOST.PID.RANDOM` in `parent` (default: the system
    temp folder, $TMPDIR), after removing those of dead processes there. The caller
    removes it when done."""
    folder = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    _sweep(folder)
    prefix = f"{'.' if hidden else ''}llmtool-{what}.{_owner()}."
    return Path(tempfile.mkdtemp(prefix=prefix, dir=folder))


def _temp_name(dest: Path) -> Path:
    _sweep(dest.parent)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.{_owner()}.", suffix=".tmp", dir=dest.parent)
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
    _sweep(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_owner()}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                _fsync_path(f)
        if dest.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first,
            # so there is never a moment without a complete folder under some name.
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{_owner()}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
