"""Build the one C extension (the BPE merge loop); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("llmtool.tokenizer._bpe", ["llmtool/tokenizer/_bpe.c"], extra_compile_args=["-O3"]),
    ],
)
