"""`llmtool bpe-train`: train a byte-level BPE tokenizer on a document table.

    llmtool bpe-train docs.parquet --vocab-size 32768 -o tok.json
    llmtool bpe-train ../shared/data/text --vocab-size 4096 --pattern gpt4-digits2 -o tok.json --export tiktoken
    llmtool info tok.json
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.io.console import log
from llmtool.io.pool import default_workers
from llmtool.io.run import Opts, StageRun
from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt, WorkersOpt

NO_ARGS_HELP = True
VERSION = 1

# Not the shared OutputOpt: the tokenizer is a JSON file, not Parquet.
OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="Output tokenizer .json, or - for stdout. Default: stdout when it is a "
    "pipe, else INPUT.bpe-train.json beside the input.")]


def run(
    inputs: Annotated[list[str], typer.Argument(help="Document tables (Parquet, Arrow, JSONL, text), folders, globs, or - for stdin.")],
    output: OutputOpt = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", "-V", help="Total vocabulary: 256 bytes + merges + special tokens.")] = 32768,
    pattern: Annotated[str, typer.Option("--pattern", help="Split regex: gpt4 (GPT-4's), gpt4-digits2 (numbers in 1-2 digit groups, as nanochat), gpt2, or a custom regex.")] = "gpt4",
    special: Annotated[Optional[list[str]], typer.Option("--special", help="A special token (repeat for several); default <|endoftext|> <|im_start|> <|im_sep|> <|im_end|>. --special '' for none.")] = None,
    max_chars: Annotated[Optional[int], typer.Option("--max-chars", min=1, help="Train on at most this many characters in all.")] = None,
    doc_cap: Annotated[Optional[int], typer.Option("--doc-cap", min=1, help="Use at most this many characters of each document.")] = None,
    eval_path: Annotated[Optional[str], typer.Option("--eval", help="Held-out document table: report bytes/token on it.")] = None,
    export: Annotated[Optional[str], typer.Option("--export", help="Also write another format beside the output: tiktoken (OUTPUT.tiktoken rank file).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Tokenizer name (default: the output file's stem).")] = None,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a byte-level BPE tokenizer (GPT-4 split pattern, tiktoken-compatible file).

    Chunks are counted once, merges update pair counts incrementally, ties go to the smallest pair: the same merges as rustbpe. Special tokens come after the merges.

    Examples:

      llmtool bpe-train docs.parquet --vocab-size 32768 -o tok.json

      llmtool bpe-train books/ -V 4096 --pattern gpt4-digits2 --export tiktoken -o tok.json

      llmtool dedup raw.parquet | llmtool bpe-train - -o tok.json --doc-cap 10000
    """
    from pathlib import Path

    from llmtool.errors import UsageError
    from llmtool.tokenizer import bpe
    from llmtool.tokenizer.corpus import iter_texts

    specials = bpe.DEFAULT_SPECIALS if special is None else [s for s in special if s]
    if export not in (None, "tiktoken"):
        raise UsageError(f"--export {export!r}: the format to export is tiktoken")
    pat = bpe.resolve_pattern(pattern)  # fail on a bad regex before reading anything
    from llmtool.tokenizer.file import pattern_problem

    if why := pattern_problem(pat):  # e.g. 'a*': zero-width matches crash tiktoken's Rust core
        raise UsageError(f"--pattern: {why}")
    if vocab_size < 256 + len(specials):
        raise UsageError(f"--vocab-size {vocab_size} is too small: it must hold the 256 byte tokens and "
                         f"{len(specials)} special tokens (at least {256 + len(specials)})")
    params = {"vocab_size": vocab_size, "pattern": pat, "special": specials, "max_chars": max_chars,
              "doc_cap": doc_cap, "eval": eval_path, "export": export, "name": name}
    opts = Opts(force, json_out, quiet, verbose)
    run_ = StageRun("bpe-train", VERSION, params, inputs, output, opts, ext=".json", binary_output=False)
    if export and run_.output == "-":
        raise UsageError("--export writes a file beside the output: pass -o FILE")
    if run_.up_to_date():
        return
    out_name = name or (Path(run_.output).name.split(".")[0] if run_.output != "-" else "bpe")

    sample: list[str] = []
    texts = iter_texts(inputs, doc_cap=doc_cap, max_chars=max_chars, sample=sample, sample_chars=1_000_000)
    nworkers = default_workers(workers)

    def counted(stats, unique):
        log(f"{stats['docs']} docs, {stats['chars']:,} chars, {unique:,} unique chunks; merging")

    tok = bpe.train_tokenizer(texts, vocab_size, pattern=pat, special_tokens=specials, workers=nworkers,
                              name=out_name, on_counted=counted)
    tok.extra["pattern_name"] = pattern if pattern in bpe.PATTERNS else "custom"
    if tok.extra["stopped_early"]:
        log(f"warning: the corpus holds only {tok.extra['merges']} merges, not {tok.extra['merges_wanted']}: "
            f"the vocab is {tok.vocab_size}, not {vocab_size} (give more text or a smaller --vocab-size)")
    tok.extra["train_bytes_per_token"] = round(bpe.bytes_per_token(tok, sample) or 0, 4)
    if eval_path:
        held = bpe.bytes_per_token(tok, iter_texts([eval_path]), max_chars=10_000_000)
        tok.extra["heldout_bytes_per_token"] = round(held, 4) if held else None
    tok.provenance = run_.provenance

    if run_.output == "-":
        import json
        import sys

        json.dump(tok.to_dict(), sys.stdout, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        tok.save(run_.output)
    fields = {"docs": tok.extra["docs"], "chars": tok.extra["chars"], "unique_chunks": tok.extra["unique_chunks"],
              "vocab": tok.vocab_size, "merges": tok.extra["merges"],
              "bytes_per_token": tok.extra["train_bytes_per_token"]}
    if eval_path:
        fields["heldout_bytes_per_token"] = tok.extra.get("heldout_bytes_per_token")
    if export:
        from llmtool.tokenizer.export import write_tiktoken

        dest = str(Path(run_.output).with_suffix(".tiktoken"))
        write_tiktoken(tok, dest)
        fields["exported"] = dest
    fields["fingerprint"] = tok.fingerprint
    run_.summary(**fields)
