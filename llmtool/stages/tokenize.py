"""`llmtool tokenize`: document tables -> a token file for pretraining.

    llmtool tokenize docs.parquet --tokenizer tok.json -o data.bin --val-fraction 0.01
    llmtool dedup raw.parquet | llmtool tokenize - --tokenizer gpt2 -o data.bin
    llmtool tokenize data.bin --format llmc -o fineweb_train_000001.bin
    llmtool info data.bin --decode 50
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.io.console import Progress
from llmtool.io.pool import default_workers
from llmtool.io.run import Opts, StageRun
from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt, WorkersOpt

NO_ARGS_HELP = True
VERSION = 2  # 2: a --val-fraction that picks no document holds out the last one

# Not the shared OutputOpt: a token file is never Parquet and never goes to stdout.
OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="Output token file. Default: INPUT.tokenize.bin beside the input "
    "(INPUT.tokenize.FORMAT.bin when converting a token file); required when reading stdin "
    "or when stdout is a pipe.")]


def _is_tokfile(path: str) -> bool:
    from llmtool.io.tokfile import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False


def run(
    inputs: Annotated[list[str], typer.Argument(help="Document tables (Parquet, Arrow, JSONL, text), folders, globs, or - for stdin; or one llmtool token file to convert with --format.")],
    output: OutputOpt = None,
    tokenizer: Annotated[Optional[str], typer.Option("--tokenizer", "-t", help="Tokenizer .json file, checkpoint folder, or a name: gpt2, cl100k_base, o200k_base, ...")] = None,
    bos: Annotated[Optional[str], typer.Option("--bos", help="Special token put before every document (default: the tokenizer's BOS, else <|endoftext|>).")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", min=0.0, max=1.0, help="Hold out about this share of documents (chosen by content hash) in OUTPUT.val.bin.")] = None,
    val_docs: Annotated[Optional[int], typer.Option("--val-docs", min=1, help="Hold out the first N documents in OUTPUT.val.bin.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output layout: llmtool (header + doc index), llmc (llm.c .bin), nanogpt (bare uint16).")] = "llmtool",
    workers: WorkersOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Tokenize documents into a token file: header, contiguous tokens, document index.

    The separator token (<|endoftext|> or --bos) comes before every document; special-token text inside documents is encoded as plain text. The output is the same for any --workers.

    Examples:

      llmtool tokenize clean.parquet -t tok.json -o data.bin --val-fraction 0.01

      llmtool dedup raw.parquet | llmtool tokenize - -t gpt2 -o data.bin

      llmtool tokenize data.bin --format nanogpt -o train.bin
    """
    import os

    from llmtool.errors import UsageError
    from llmtool.tokenizer.export import FORMATS, export_tokens
    from llmtool.tokenizer.pipeline import tokenize_to_file, val_path_for

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if val_fraction is not None and val_docs is not None:
        raise UsageError("--val-fraction and --val-docs exclude each other: pick one")
    opts = Opts(force, json_out, quiet, verbose)

    # A token file in: convert its layout, nothing to tokenize.
    if len(inputs) == 1 and inputs[0] != "-" and _is_tokfile(inputs[0]):
        if fmt == "llmtool":
            raise UsageError(f"{inputs[0]} is already a token file: pass --format llmc or nanogpt to convert it")
        run_ = StageRun("tokenize", VERSION, {"format": fmt}, inputs, output, opts, ext=f".{fmt}.bin")
        if run_.output == "-":
            raise UsageError("token files need a seekable file: pass -o FILE")
        stats = export_tokens(inputs[0], run_.output, fmt)
        run_.summary(**stats)
        return

    if not tokenizer:
        raise UsageError("--tokenizer is required: a tokenizer .json file or a name such as gpt2")
    from llmtool.tokenizer.file import load_tokenizer

    tok = load_tokenizer(tokenizer)
    sep_token = bos or tok.bos_token or "<|endoftext|>"
    if bos is None and tok.bos_id is None:
        raise UsageError(f"tokenizer {tok.name} has no <|endoftext|>: name the separator with --bos TOKEN")
    sep = tok.special_id(sep_token)
    params = {"tokenizer": tok.fingerprint, "sep": sep_token, "val_fraction": val_fraction,
              "val_docs": val_docs, "format": fmt}
    run_ = StageRun("tokenize", VERSION, params, inputs, output, opts, ext=".bin")
    if run_.output == "-":
        raise UsageError("token files need a seekable file (the header is written last): pass -o FILE")
    if run_.up_to_date():
        return
    held = val_fraction is not None or val_docs is not None
    # how to find the tokenizer again: `spec` (a name or an absolute path); `path` for files
    tmeta = {"name": tok.name, "fingerprint": tok.fingerprint, "vocab_size": tok.vocab_size}
    if os.path.exists(tokenizer):
        tmeta["spec"] = tmeta["path"] = os.path.abspath(tokenizer)
    else:
        tmeta["spec"] = tokenizer
    meta = {"tokenizer": tmeta,
            "separator": sep_token, "provenance": run_.provenance}
    nworkers = default_workers(workers)

    if held and fmt == "llmtool":  # the held-out file is an output too: never replace a stranger
        run_.claim(val_path_for(run_.output))
    dest, val_dest = run_.output, (val_path_for(run_.output) if held else None)
    tmpdir = None
    if fmt != "llmtool":  # tokenize into our layout next to the output, then convert
        from llmtool.io.atomic import scratch_dir

        tmpdir = str(scratch_dir("tokenize", os.path.dirname(os.path.abspath(dest)), hidden=True))
        dest = os.path.join(tmpdir, "data.bin")
        val_dest = os.path.join(tmpdir, "data.val.bin") if held else None
    try:
        with Progress("tokenize", unit="docs") as bar:
            stats = tokenize_to_file(inputs, tok, dest, sep, meta, workers=nworkers, val_path=val_dest,
                                     val_docs=val_docs or 0, val_fraction=val_fraction or 0.0,
                                     progress=bar.advance)
        if tmpdir:
            export_tokens(dest, run_.output, fmt)
            if held:
                export_tokens(val_dest, val_path_for(run_.output), fmt)
    finally:
        if tmpdir:
            import shutil

            shutil.rmtree(tmpdir, ignore_errors=True)
    from llmtool.io.console import warn

    if stats["docs"] + stats["val_docs"] == 0:
        warn("no non-empty documents in the input: the token file is empty")
    elif held and stats["val_fallback"]:
        warn(f"--val-fraction {val_fraction} picked none of the {stats['docs'] + stats['val_docs']} documents: "
             f"the last document was held out instead (--val-docs N chooses a number)")
    elif held and stats["val_docs"] == 0:
        warn(f"no document was held out: the validation file {val_path_for(run_.output)} is empty")
    elif held and stats["docs"] == 0:
        warn(f"every document went to the validation file: {run_.output} is empty (use a smaller --val-docs)")
    fields = {"docs": stats["docs"], "tokens": stats["tokens"], "empty_docs_skipped": stats["empty"],
              "chars_per_token": round(_bpt(stats), 3)}
    if held:
        fields.update(val_docs=stats["val_docs"], val_tokens=stats["val_tokens"], val_output=val_path_for(run_.output))
    fields["tokenizer"] = f"{tok.name} ({tok.fingerprint[:12]})"
    run_.summary(**fields)


def _bpt(stats: dict) -> float:
    """Characters per token, excluding separators (a cheap compression figure for the summary)."""
    ntok = stats["tokens"] + stats["val_tokens"] - stats["docs"] - stats["val_docs"]
    return stats["chars"] / ntok if ntok > 0 else 0.0
