"""One invocation of a stage: output naming, provenance, the up-to-date check and the summary.

A stage reads like a recipe:

    run = StageRun("filter", version=1, params={...}, inputs=[src], output=o, opts=opts)
    if run.up_to_date():
        return
    with TableWriter(run.output, run.provenance) as w:
        ...
    run.summary(docs_in=n, docs_out=m)

    >>> strip_suffix("crawl.warc.gz")
    'crawl'
    >>> parse_shard("3/8")
    (3, 8)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from llmtool.errors import UsageError
from llmtool.io.console import log, set_logging


@dataclass
class Opts:
    """The common options, bundled so they pass through to StageRun in one piece."""

    force: bool = False
    json: bool = False
    quiet: bool = False
    verbose: bool = False


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N); None -> (0, 1)."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UsageError(f"--shard {shard!r}: expected I/N, e.g. 0/8")
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {shard!r}: need 0 <= I < N")
    return i, n


_KNOWN_SUFFIXES = (".warc.wet.gz", ".warc.wat.gz", ".warc.gz", ".warc", ".wet.gz", ".wet", ".arc.gz",
                   ".arc", ".jsonl.gz", ".jsonl", ".json.gz", ".json", ".parquet", ".arrow",
                   ".txt.gz", ".txt", ".html.gz", ".html", ".htm", ".bin", ".gz")


def strip_suffix(name: str) -> str:
    for suf in _KNOWN_SUFFIXES:
        if name.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return Path(name).stem if "." in name else name


def default_output(inputs: list[str], stage: str, ext: str = ".parquet") -> str:
    """gzip-style: raw.parquet -> raw.STAGE.parquet beside it; stdin or a piped stdout -> '-'."""
    from llmtool.io.tables import stdout_is_pipe

    if not inputs or inputs[0] == "-" or stdout_is_pipe():
        return "-"
    first = inputs[0]
    if "://" in first or first.startswith("@"):
        base = strip_suffix(first.rstrip("/").rsplit("/", 1)[-1].lstrip("@")) or stage
        return f"{base}.{stage}{ext}"
    p = Path(first)
    name = f"{strip_suffix(p.name)}.{stage}{ext}"
    folder = p.parent if os.access(p.parent, os.W_OK) else Path(".")
    return str(folder / name)


# ---------------------------------------------------------------- the run


def ensure_folder(path: str, what: str | None = None) -> None:
    """Create an output folder (and its parents), or fail with one line if that is impossible:
    a file already has the name, or the place is not writable. `what` names it (e.g. a flag)."""
    label = f"{what} {path}" if what else path
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{label}: is a file, not a folder; choose another name")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{label}: cannot create this folder ({e.strerror or e})")
    check_writable(os.path.join(path, "x"), what)


def check_writable(path: str, what: str | None = None) -> None:
    """Fail early, with one line, when an output file cannot be created at `path`: its folder
    (or the nearest existing one above it, as atomic writes create the rest) is not a folder
    or refuses a new file. Probing with a real temporary file is the only sure test
    (os.access says yes to root on read-only places such as /proc)."""
    import tempfile

    label = f"{what} {path}" if what else path
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {label}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".llmtool-probe.", dir=folder)
    except OSError as e:
        raise UsageError(f"cannot write {label}: {e.strerror or e} in {folder} (choose another place)")
    os.close(fd)
    os.unlink(probe)


LLMC_MAGICS = (20240520, 20240801)  # llm.c token files, which llmtool tokenize writes


def made_by(path: str, provenance: dict | None = None) -> str | None:
    """The llmtool stage that wrote a file, or None for a file llmtool did not write.

    llm.c token files carry no provenance; they count as tokenize's (their magic number
    says what they are). nanoGPT's bare token files cannot be told from any other file.
    """
    if provenance is not None:
        return provenance.get("stage") if isinstance(provenance.get("stage"), str) else None
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return "tokenize" if len(head) == 4 and int.from_bytes(head, "little") in LLMC_MAGICS else None


class StageRun:
    """One invocation of a stage: output naming, provenance, up-to-date check, summary.

    Before any work it checks that the output can be written, and refuses (exit 2) to
    replace a file that is not an earlier output of the same stage unless `--force`:
    `llmtool fetch X -o notes.txt` must not eat notes.txt. Folder outputs (`folder=True`,
    checkpoints) are checked by their stage, which knows what may be replaced.
    """

    def __init__(self, stage: str, version: int, params: dict, inputs: list[str], output: str | None,
                 opts: Opts, ext: str = ".parquet", binary_output: bool = True, folder: bool = False):
        from llmtool.io import provenance as prov

        set_logging(stage, opts.quiet, opts.verbose)
        self.stage = stage
        self.opts = opts
        self.t0 = time.perf_counter()
        self.output = output if output is not None else default_output(inputs, stage, ext)
        if opts.json and self.output == "-":
            raise UsageError("--json prints the summary on stdout, so the data needs -o FILE")
        if binary_output and self.output == "-" and sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal: pipe it on or pass -o FILE")
        old = self.claim(self.output, folder=folder) if self.output != "-" else None
        self.inputs = inputs
        # the old output's input records lend their keys to inputs whose size and mtime still
        # match, so an up-to-date check does not rehash unchanged inputs
        previous = {i.get("path"): i for i in prov.inputs_of(old)} if old else {}
        records = [prov.input_record(i, previous.get(i)) for i in inputs]
        self.provenance = prov.strip_nested(prov.make(stage, version, params, records))

    def claim(self, path: str, flag: str = "-o", folder: bool = False) -> dict | None:
        """Check an output path before any work (the main output, or an extra one such as
        `--rejected` or `OUTPUT.val.bin`): writable, not a folder, and not a file this stage did
        not write unless `--force`. Returns the provenance of what is there now, if any."""
        from llmtool.io import provenance as prov

        if not folder and os.path.isdir(path):
            raise UsageError(f"{path} is a folder: name a file to write with {flag}")
        check_writable(path)
        if not os.path.exists(path):
            return None
        old = prov.read_provenance(path)
        if not folder and not self.opts.force:
            maker = made_by(path, old)
            if maker != self.stage:  # our own earlier output: replacing it is the point
                what = f"an output of llmtool {maker}" if maker else "not a file llmtool wrote"
                raise UsageError(f"{path} exists and is {what}; refusing to replace it with the "
                                 f"{self.stage} output (pass --force to replace it, or choose another {flag})")
        return old

    @property
    def key(self) -> str | None:
        return self.provenance["key"]

    def up_to_date(self) -> bool:
        """True (and says so) when the output exists with the same provenance key."""
        from llmtool.io.provenance import read_provenance

        if self.opts.force or self.output == "-" or self.key is None or not os.path.exists(self.output):
            return False
        old = read_provenance(self.output)
        if old and old.get("key") == self.key:
            if self.opts.json:
                print(json.dumps({"stage": self.stage, "output": self.output, "up_to_date": True}))
            else:
                log(f"{self.output} is up to date (use --force to rebuild)")
            return True
        return False

    def summary(self, **fields) -> dict:
        """The one-line summary on stderr, or a JSON object on stdout with --json."""
        seconds = time.perf_counter() - self.t0
        data = {"stage": self.stage, "output": self.output, "seconds": round(seconds, 3), **fields}
        if self.opts.json:
            print(json.dumps(data, default=str))
        else:
            parts = []
            for k, v in fields.items():
                if isinstance(v, dict):
                    if v:
                        parts.append(f"{k}: " + ", ".join(f"{kk} {vv}" for kk, vv in v.items()))
                elif isinstance(v, float):
                    parts.append(f"{k.replace('_', ' ')} {v:.4g}")
                else:
                    parts.append(f"{k.replace('_', ' ')} {v}")
            dest = "stdout" if self.output == "-" else self.output
            log(f"{'; '.join(parts)} -> {dest} ({seconds:.1f}s)")
        return data
