"""`llmtool convert`: public post-training data as tables `sft`, `rl` and `rm-train` read.

    llmtool convert identity fastchat_dummy_conversation.json -o identity.parquet
    llmtool convert oasst en_100_tree.jsonl -o oasst.parquet
    llmtool convert gsm8k train.jsonl.gz -o gsm8k.parquet
    llmtool convert self-instruct self_instruct_seed_tasks.jsonl -o instruct.parquet
    llmtool sft base/ identity.parquet -o chat/

Every row has a `messages` list (`{role, content}`) plus `source` and `id`; gsm8k rows also
have `prompt` and `answer` (the final number). What each format takes from its source is in
llmtool.data.sft_sources.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.stages.common import ForceOpt, JsonOpt, OutputOpt, QuietOpt, VerboseOpt

NO_ARGS_HELP = True
STAGE_VERSION = 1


def _formats() -> dict:
    from llmtool.data.sft_sources import CONVERTERS

    formats = dict(CONVERTERS)
    try:  # rankings (rm-train's input), where that module is built
        from llmtool.data import ranking_sources
        formats.update(getattr(ranking_sources, "CONVERTERS", {}))
    except ImportError:
        pass
    return formats


def run(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="oasst, identity, self-instruct or gsm8k "
                                       "(and oasst-rankings, for rm-train).")],
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT...", help="The source files (JSONL, .jsonl.gz "
                                                "or a JSON array).")],
    output: OutputOpt = None,
    name: Annotated[str, typer.Option("--name", help="identity: the assistant's name.")] = "llmtool",
    org: Annotated[str, typer.Option("--org", help="identity: who made it.")] = "the llmtool project",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Keep the first N rows.")] = None,
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Convert public post-training data (OpenAssistant trees, FastChat identity, self-instruct,
    GSM8K) into conversation tables for sft and rl.

    Examples:

      llmtool convert identity fastchat_dummy_conversation.json -o identity.parquet

      llmtool convert oasst en_100_tree.jsonl -o oasst.parquet

      llmtool convert gsm8k train.jsonl.gz -o gsm8k.parquet
    """
    import functools
    import itertools

    from llmtool.data.conversations import BadConversation
    from llmtool.data.sft_sources import records
    from llmtool.errors import BadInputError, UsageError
    from llmtool.io.run import Opts, StageRun
    from llmtool.io.tables import TableWriter

    formats = _formats()
    if fmt not in formats:
        raise UsageError(f"unknown format {fmt!r}: choose {', '.join(formats)}")
    convert = formats[fmt]
    if fmt == "identity":
        convert = functools.partial(convert, name=name, org=org)
    params = {"format": fmt, "limit": limit, **({"name": name, "org": org} if fmt == "identity" else {})}
    run_ = StageRun("convert", STAGE_VERSION, params, inputs, output,
                    Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose))
    if run_.up_to_date():
        return
    n = 0
    with TableWriter(run_.output, run_.provenance) as writer:
        for path in inputs:
            rows = convert(records(path))
            if limit is not None:
                rows = itertools.islice(rows, limit - n)
            batch = []
            try:
                for row in rows:
                    batch.append(row)
                    if len(batch) == 1000:
                        writer.write_rows(batch)
                        n, batch = n + len(batch), []
            except BadConversation as e:
                raise BadInputError(f"{path}: {e}")
            writer.write_rows(batch)
            n += len(batch)
        if n == 0:
            raise BadInputError(f"{', '.join(inputs)}: nothing to convert (no usable {fmt} records)")
    run_.summary(rows=n, format=fmt)
