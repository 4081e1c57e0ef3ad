"""Shared test fixtures: where the real data lives, and a runner for the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the project (also in CI); LLMTOOL_SHARED_DATA overrides it.
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))


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
    if not DATA.exists():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA
