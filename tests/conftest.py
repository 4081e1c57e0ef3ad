"""Shared test fixtures: where the test data lives, and a runner for the CLI.

Two tiers (docs/design.md §6):
- the fast tier (`make test`) needs nothing outside the repository: small licence-clean files
  in tests/data/, and inputs built from the public-domain books in examples/data/books;
- the real tier (`make test-real`, marker `real`) reads the real data from `$LLMTOOL_DATA`
  (default: `../shared/data` beside the checkout; the README says where each file comes from).

A test that takes the `data` fixture is marked `real` automatically, so the fast tier
deselects it instead of skipping it. Selecting a real test without the data is an error,
not a skip: a green run then always means the tests really ran.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Small licence-clean files that ship with the tests (origins and licences in its SOURCES.md);
# laid out like the real data folder, so `datafile(name)` finds either.
BUNDLED = ROOT / "tests" / "data"
BOOKS = ROOT / "examples" / "data" / "books"
# post-training data that ships with the demo (examples/data/post/SOURCES.md), same layout
EXAMPLES = ROOT / "examples" / "data"


def data_dir() -> Path:
    """The real data: $LLMTOOL_DATA, else $LLMTOOL_SHARED_DATA (older name), else ../shared/data."""
    for var in ("LLMTOOL_DATA", "LLMTOOL_SHARED_DATA"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return ROOT.parent / "shared" / "data"


DATA = data_dir()


def pytest_addoption(parser):
    parser.addoption("--no-skips", action="store_true",
                     help="fail the run when any test is skipped (make test, make test-real)")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the mark must already be there
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)


def pytest_collection_finish(session):
    real = [i for i in session.items if i.get_closest_marker("real")]
    if real and not DATA.is_dir():
        raise pytest.UsageError(
            f"{len(real)} selected tests need the real data (marker `real`), which is not at {DATA}: "
            "set LLMTOOL_DATA to its folder (README, Development), or run the fast tier: "
            "`make test` (-m 'not real')")


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.getoption("--no-skips") and _skipped:
        terminalreporter.write_line(f"--no-skips: {len(_skipped)} tests skipped, which fails the run: "
                                    + ", ".join(_skipped[:5]) + (" ..." if len(_skipped) > 5 else ""), red=True)


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("--no-skips") and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass
class Result:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", errors="replace")


def run_cli(*args, input: bytes | None = None, cwd=None, timeout: float = 300, env=None) -> Result:
    """Run `python -m llmtool ARGS` in a subprocess, as a user would."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "llmtool", *map(str, args)], input=input,
                       capture_output=True, cwd=cwd, timeout=timeout, env=e)
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", errors="replace"))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def data() -> Path:
    """The real data folder (real tier only; taking this fixture marks a test `real`)."""
    if not DATA.is_dir():  # only reached when run without the collection check above
        pytest.fail(f"real data not found at {DATA}: set LLMTOOL_DATA")
    return DATA


@pytest.fixture
def datafile(request):
    """`datafile("web/warc/x.warc.gz")`: the bundled copy in tests/data when there is one, else
    the file in the real data folder; the latter only in a test marked `real`."""

    def find(name: str) -> Path:
        for folder in (BUNDLED, EXAMPLES):
            if (folder / name).exists():
                return folder / name
        if request.node.get_closest_marker("real") is None:
            pytest.fail(f"{name} is not bundled in tests/data: mark the test @pytest.mark.real")
        return request.getfixturevalue("data") / name

    return find


@pytest.fixture(scope="session")
def books(tmp_path_factory) -> Path:
    """A folder with the bundled public-domain books as plain text: `pride_and_prejudice.txt`
    (676 KB) and `moby_dick.txt` (1.2 MB), both Project Gutenberg texts."""
    d = tmp_path_factory.mktemp("books")
    for gz in sorted(BOOKS.glob("*.txt.gz")):
        (d / gz.name[: -len(".gz")]).write_bytes(gzip.decompress(gz.read_bytes()))
    return d


@pytest.fixture(scope="session")
def sample_warc(tmp_path_factory) -> Path:
    """The demo's crawl (examples/make_sample_warc.py): 232 web pages made from the books, with
    boilerplate, exact and near copies, spam and a German page."""
    out = tmp_path_factory.mktemp("crawl") / "crawl.warc.gz"
    subprocess.run([sys.executable, ROOT / "examples" / "make_sample_warc.py", BOOKS, out],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def near_dups(books, tmp_path_factory) -> tuple[Path, list[dict]]:
    """(path, rows) of a near-duplicate corpus with known answers built from the books
    (tests/bundled.py: 800 originals, exact and near copies, 1,400 rows), as JSONL.gz."""
    import json

    from tests.bundled import near_dup_corpus

    rows = near_dup_corpus(books, originals=800)
    path = tmp_path_factory.mktemp("near_dups") / "near_dup_corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    return path, rows


@pytest.fixture(scope="session")
def tiny_base(books, tmp_path_factory) -> Path:
    """A tiny base checkpoint (depth 1, width 64, 512-token BPE, 30 steps on Pride and Prejudice,
    about 10 s to build): for stages that start from a model (sft, chat, rm-train, rl, serve)."""
    d = tmp_path_factory.mktemp("tiny_base")
    book = books / "pride_and_prejudice.txt"
    for args in (("bpe-train", book, "-V", "512", "-o", d / "tok.json"),
                 ("tokenize", book, "-t", d / "tok.json", "-o", d / "data.bin"),
                 ("pretrain", d / "data.bin", "--depth", "1", "--width", "64", "--context", "128",
                  "--micro-batch", "8", "--max-steps", "30", "--log-every", "0", "--threads", "1",
                  "-o", d / "base")):
        r = run_cli(*args, "-q")
        assert r.rc == 0, r.err
    return d / "base"


@pytest.fixture(scope="session")
def tiny_chat(tiny_base, tmp_path_factory) -> Path:
    """A tiny chat checkpoint: `tiny_base` with the chat tokens added (llmtool.tokenizer.chat)
    and marked `model_kind: chat`. Its answers are not good; its format is the real one."""
    from llmtool.model import checkpoint
    from llmtool.stages.training import start_chat

    out = tmp_path_factory.mktemp("tiny_chat") / "chat"
    s = start_chat(tiny_base)
    checkpoint.save(out, s.model, s.tokenizer, metrics=[], provenance={"stage": "sft", "complete": True},
                    extra_config={"model_kind": "chat"})
    return out
