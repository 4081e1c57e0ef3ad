"""Imports point one way: io <- data / tokenizer / model <- train <- stages <- cli.

Every `import` and `from ... import` in the package is checked, including those inside
functions (a lazy import upward is still a dependency upward).
"""

import ast
from pathlib import Path

import llmtool

PACKAGE = Path(llmtool.__file__).parent

# Rank of each top-level part of the package; a module may import its own rank or lower ones.
# data, tokenizer and model share a rank: a checkpoint holds a tokenizer, a corpus reader may
# use the data readers.
RANKS = {
    "__init__": 0, "errors": 0, "io": 0,
    "data": 1, "tokenizer": 1, "model": 1,
    "train": 2,
    "stages": 3,
    "cli": 4, "__main__": 4,
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.rsplit(".", node.level)[0]
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.lineno, node.module


def upward_imports(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        here = RANKS[_part(module)]
        for line, target in _imports(path, module):
            if target != "llmtool" and not target.startswith("llmtool."):
                continue
            there = RANKS.get(_part(target))
            assert there is not None, f"{module}: unknown part of the package {target}"
            if there > here:
                found.append(f"{path.relative_to(package.parent)}:{line} imports {target}")
    return found


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports() == []


def test_every_part_of_the_package_has_a_rank():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert parts <= set(RANKS), parts - set(RANKS)


def test_the_checker_sees_an_upward_import(tmp_path):
    # The check itself must be able to fail: a lazy import of stages inside io is caught.
    fake = tmp_path / "llmtool"
    (fake / "io").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "io" / "__init__.py").write_text("")
    (fake / "io" / "bad.py").write_text("def f():\n    from llmtool.stages.common import JsonOpt\n")
    assert upward_imports(fake) == ["llmtool/io/bad.py:2 imports llmtool.stages.common"]
