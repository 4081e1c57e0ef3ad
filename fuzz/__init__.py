"""llmtool's own mutation fuzzer: python -m fuzz --help (see fuzz/__main__.py)."""
