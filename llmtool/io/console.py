"""Talk on stderr: the stage-prefixed log lines, warnings and progress bars every layer uses.

    >>> set_logging("demo", quiet=True)
    >>> log("not shown when quiet")
    >>> verbosity()
    0
"""

from __future__ import annotations

import sys

_state = {"stage": "llmtool", "level": 1}  # 0 quiet, 1 normal, 2 verbose


def verbosity() -> int:
    """0 quiet, 1 normal, 2 verbose."""
    return _state["level"]


def set_logging(stage: str, quiet: bool = False, verbose: bool = False) -> None:
    _state["stage"] = stage
    _state["level"] = 0 if quiet else (2 if verbose else 1)


def log(msg: str, level: int = 1) -> None:
    """A line on stderr, prefixed with the stage name (level 2 only with -v)."""
    if _state["level"] >= level:
        print(f"llmtool {_state['stage']}: {msg}", file=sys.stderr, flush=True)


def debug(msg: str) -> None:
    log(msg, level=2)


def warn(msg: str) -> None:
    if _state["level"] >= 1:
        print(f"llmtool {_state['stage']}: warning: {msg}", file=sys.stderr, flush=True)


def show_progress() -> bool:
    return _state["level"] >= 1 and sys.stderr.isatty()


class Progress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, description: str, total: float | None = None, unit: str = "docs"):
        self._p = None
        if show_progress():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._p = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn(unit), TimeElapsedColumn(),
                                   console=Console(stderr=True), transient=True)
            self._task = self._p.add_task(description, total=total)

    def __enter__(self) -> Progress:
        if self._p:
            self._p.__enter__()
        return self

    def advance(self, n: float = 1) -> None:
        if self._p:
            self._p.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._p:
            self._p.__exit__(*exc)
