"""Tokenizers: byte-level BPE training, the tokenizer file, named tiktoken encodings, token files.

    >>> from llmtool.tokenizer import load_tokenizer      # doctest: +SKIP
    >>> load_tokenizer("gpt2").encode("Hello world")       # doctest: +SKIP
    [15496, 995]
"""

from llmtool.tokenizer.file import Tokenizer, load_tokenizer

__all__ = ["Tokenizer", "load_tokenizer"]
