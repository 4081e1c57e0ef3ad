"""`llmtool info`: what an artifact is, how big, and how it was made.

    llmtool info docs.parquet
    llmtool fetch crawl.warc.gz | llmtool info -
    llmtool info data.bin --decode 50
    llmtool info tok.json
    llmtool info base/
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.stages.common import JsonOpt

NO_ARGS_HELP = True


def run(
    path: Annotated[str, typer.Argument(help="A table, token file, tokenizer, checkpoint folder, web archive, or - for stdin.")],
    decode: Annotated[Optional[int], typer.Option("--decode", help="Token files: print the first N tokens as text.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Describe any llmtool artifact: rows, columns, size, header, and its lineage.

    Examples:

      llmtool info pages.parquet

      llmtool fetch crawl.warc.gz | llmtool info -

      llmtool info data.bin --decode 50 --json
    """
    from llmtool.errors import UsageError
    from llmtool.stages.info_describe import describe, render

    if decode is not None and decode < 0:  # a negative N would slice from the end: everything but N
        raise UsageError(f"--decode {decode}: give a number of tokens, 0 or more")
    info = describe(path, decode=decode)
    if json_out:
        import json

        print(json.dumps(info, default=str, indent=1))
    else:
        render(info)
