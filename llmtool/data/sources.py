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
        data = gzip.decompress(data)
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _is_paths_list(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith((".paths", ".paths.gz"))


def expand_sources(args: list[str], base_url: str | None = None) -> list[str]:
    out: list[str] = []
    for arg in args:
        if arg.startswith("hf://"):
            out.append(hf_to_url(arg))
        elif is_url(arg):
            out.append(arg)
        elif arg.startswith("@"):
            listing = arg[1:]
            folder = os.path.dirname(listing)
            for line in _read_lines(listing):
                local = line if os.path.isabs(line) else os.path.join(folder, line)
                out.extend(expand_sources([line if ("://" in line or not os.path.exists(local)) else local],
                                          base_url))
        elif os.path.isfile(arg) and _is_paths_list(arg):
            base = (base_url or COMMON_CRAWL).rstrip("/") + "/"
            out.extend(line if "://" in line else base + line.lstrip("/") for line in _read_lines(arg))
        else:
            out.extend(expand_inputs([arg], LOCAL_PATTERNS))
    if not out:
        raise BadInputError("no sources to fetch")
    return out
