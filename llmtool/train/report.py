"""Training output: progress lines on stderr (rich colours on a terminal) and the metrics list.

    step 120/1000 | loss 4.2311 | lr 1.00 | grad 0.41 | 31.2k tok/s | mfu 43.1% | eta 4m02s
"""

from __future__ import annotations

import os
import sys
import time

from llmtool.io.console import verbosity


def fmt_duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


class Reporter:
    """Prints on rank 0 only; collects metric records for metrics.jsonl."""

    def __init__(self, stage: str, master: bool = True, metrics: list[dict] | None = None):
        self.stage = stage
        self.master = master
        self.metrics: list[dict] = list(metrics or [])
        self.quiet = verbosity() == 0
        self._console = None
        if master and not self.quiet and sys.stderr.isatty():
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def line(self, msg: str, style: str | None = None) -> None:
        if not self.master or self.quiet:
            return
        if self._console is not None:
            from rich.text import Text

            t = Text(f"llmtool {self.stage}: ", style="dim")
            t.append(msg, style=style or "")
            self._console.print(t)
        else:
            print(f"llmtool {self.stage}: {msg}", file=sys.stderr, flush=True)

    def urgent(self, msg: str) -> None:
        """A line written straight to the stderr descriptor: safe inside a signal handler, which
        may interrupt a print() in progress (a second buffered write there would raise)."""
        if not self.master or self.quiet:
            return
        try:
            os.write(sys.stderr.fileno(), f"llmtool {self.stage}: {msg}\n".encode())
        except (OSError, ValueError):
            pass

    def text(self, msg: str) -> None:
        """Free text (samples): no markup interpretation."""
        if not self.master or self.quiet:
            return
        if self._console is not None:
            self._console.print(msg, markup=False, style="cyan")
        else:
            print(msg, file=sys.stderr, flush=True)

    def record(self, **fields) -> None:
        fields.setdefault("time", round(time.time(), 3))
        self.metrics.append({k: v for k, v in fields.items() if v is not None})
