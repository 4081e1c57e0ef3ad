"""Every module's docstring examples run as tests, so the examples stay true.

Each module runs in an empty temporary folder (examples may write files there). Examples
marked `# doctest: +SKIP` are not run (they need a network, a GPU or real data); the test
fails only when a run example is wrong, and never skips.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llmtool


def _modules() -> list[str]:
    names = ["llmtool", "tests.bundled"]
    for info in pkgutil.walk_packages(llmtool.__path__, "llmtool."):
        if not info.name.endswith("__main__"):  # importing it would run the CLI
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module, name):  # globals: a copy of the module's
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
