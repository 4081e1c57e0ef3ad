"""`llmtool sample`: text from a checkpoint, with a KV cache; streams UTF-8 to stdout.

    llmtool sample base/ "Once upon a time" --max-tokens 100
    llmtool sample base/ --temperature 0 "The capital of France is"
    llmtool sample base/ -f prompts.txt --num-samples 3 --top-p 0.9
    llmtool sample base/ --input prompts.parquet -o completions.parquet
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt

NO_ARGS_HELP = True
STAGE_VERSION = 1


def run(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint folder (from pretrain, sft or rl).")],
    prompts: Annotated[Optional[list[str]], typer.Argument(
        help="Prompts; none: one unconditional sample from the BOS token.")] = None,
    prompt_file: Annotated[Optional[str], typer.Option(
        "--prompt-file", "-f", help="Text file, one prompt per line (- for stdin).")] = None,
    table: Annotated[Optional[str], typer.Option(
        "--input", "-i", help="Table of prompts (Parquet, Arrow, JSONL): writes a table of completions.")] = None,
    column: Annotated[Optional[str], typer.Option(
        "--column", help="Prompt column of --input (default: prompt, else text).")] = None,
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="Completions table (with --input; default INPUT.sample.parquet, - for stdout).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="New tokens per sample.")] = 256,
    temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="0 = greedy.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", min=1, help="Sample among the k likeliest tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(
        "--top-p", min=0.0, max=1.0, help="Nucleus: the likeliest tokens covering probability p.")] = None,
    num_samples: Annotated[int, typer.Option("--num-samples", min=1, help="Samples per prompt.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same samples).")] = 0,
    no_stop: Annotated[bool, typer.Option("--no-stop", help="Do not stop at the end-of-text token.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Generate text from a checkpoint: temperature, top-k, top-p, greedy, N samples, stop at EOT.

    Text prompts print prompt + completion on stdout as they are generated (samples are
    separated by a line "---"); a table of prompts gives a table with the columns
    prompt, sample, completion, tokens, finish (eot or length) and the input's other columns.

    Examples:

      llmtool sample base/ "Once upon a time" --max-tokens 100

      llmtool sample base/ "2 + 2 =" --temperature 0

      llmtool sample base/ --input prompts.parquet -o completions.parquet --num-samples 4
    """
    from llmtool.io.run import Opts
    from llmtool.model.sampling import SampleArgs, sample

    sample(SampleArgs(checkpoint=checkpoint, prompts=prompts or [], prompt_file=prompt_file, table=table,
                      column=column, output=output, max_tokens=max_tokens, temperature=temperature,
                      top_k=top_k, top_p=top_p, num_samples=num_samples, seed=seed, stop=not no_stop,
                      device=device),
           Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose), STAGE_VERSION)
