"""What `fetch` reads: arguments → an ordered list of sources (local paths or URLs).

    llmtool fetch page.html crawl/ 'dumps/*.warc.gz'      local files, folders, globs
    llmtool fetch https://host/x.warc.gz                  URL (downloaded to the cache)
    llmtool fetch hf://datasets/OWNER/NAME/PATH.parquet   Hugging Face dataset file
    llmtool fetch @sources.txt                            one source per line
    llmtool fetch warc.paths.gz --base-url URL            Common Crawl paths list
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from llmtool.data.fetch import LOCAL_PATTERNS
from llmtool.data.http import hf_to_url
from llmtool.errors import BadInputError
from llmtool.io.tables import expand_inputs

COMMON_CRAWL = "https://data.commoncrawl.org/"


def is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _read_lines(path: str) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadInputError(f"{path}: cannot read source list ({e.strerror})")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise BadInputError(f"{path}: truncated or corrupt gzip file")
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _is_paths_list(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith((".paths", ".paths.gz"))


def expand_sources(args: list[str], base_url: str | None = None, _open: tuple[str, ...] = ()) -> list[str]:
    """Sources in order; `_open` holds the @lists being expanded, to refuse a cycle."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("hf://"):
            out.append(hf_to_url(arg))
        elif is_url(arg):
            out.append(arg)
        elif arg.startswith("@"):
            listing = arg[1:]
            key = os.path.realpath(listing)
            if key in _open:
                chain = " -> ".join(os.path.basename(p) for p in (*_open, key))
                raise BadInputError(f"{listing}: source lists include each other in a loop ({chain})")
            folder = os.path.dirname(listing)
            for line in _read_lines(listing):
                # relative entries (also nested @lists) are relative to the list's folder
                name = line[1:] if line.startswith("@") else line
                local = name if os.path.isabs(name) else os.path.join(folder, name)
                if "://" not in line and os.path.exists(local):
                    line = ("@" if line.startswith("@") else "") + local
                out.extend(expand_sources([line], base_url, (*_open, key)))
        elif os.path.isfile(arg) and _is_paths_list(arg):
            base = (base_url or COMMON_CRAWL).rstrip("/") + "/"
            out.extend(line if "://" in line else base + line.lstrip("/") for line in _read_lines(arg))
        else:
            out.extend(expand_inputs([arg], LOCAL_PATTERNS))
    if not out and not _open:  # an empty nested list is fine; nothing at all is not
        raise BadInputError("no sources to fetch")
    return out
