"""`llmtool sample`: text from a checkpoint; streams UTF-8 to stdout, or a table in and out.

    llmtool sample base/ "Once upon a time" --max-tokens 100
    llmtool sample base/ --temperature 0 "The capital of France is"
    llmtool sample base/ -f prompts.txt --num-samples 3 --top-p 0.9
    llmtool sample base/ --input prompts.parquet -o completions.parquet

The recipe: options, checks, load the checkpoint, run `llmtool.model.engine.Engine`, print
or write. Every prompt starts with the tokenizer's BOS token, as every training document
did. Prompt i (counted from 0 over all prompts) draws from its own generator seeded from
(--seed, i), so a prompt's samples do not depend on which prompts share its batch.
Streaming goes through an incremental UTF-8 decoder: a character split across two
tokens is printed whole, once both have arrived.
"""

from __future__ import annotations

import codecs
import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt

NO_ARGS_HELP = True
STAGE_VERSION = 1
CHUNK = 256  # table prompts handed to the engine at once (it runs up to max_batch rows together)
STOP_TOKENS = ("<|endoftext|>", "<|im_end|>")  # whichever the tokenizer has end a sample


@dataclass
class SampleArgs:
    checkpoint: str
    prompts: list[str] = field(default_factory=list)
    prompt_file: str | None = None
    table: str | None = None
    column: str | None = None
    output: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int = 0
    stop: bool = True
    device: str = "auto"
    raw: bool = False  # a chat model's prompt as text to continue, not as a user message


def prompt_seed(seed: int, i: int) -> int:
    """The seed of prompt i's generator: distinct per prompt, fixed by --seed."""
    return (seed * 0x9E3779B1 + i) % (1 << 63)


class _Sampler:
    """The loaded checkpoint and the engine, with the run's settings."""

    def __init__(self, a: SampleArgs):
        import torch

        from llmtool.model import checkpoint
        from llmtool.model.engine import Engine
        from llmtool.train.device import resolve_device

        self.a = a
        self.device = resolve_device(a.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormals make small CPU models many times slower
        self.model, self.tok = checkpoint.load(a.checkpoint, self.device)
        # a chat model (sft, rl) answers the prompt as a user message, as `chat` would ask it
        self.chat = None
        if checkpoint.read_config(a.checkpoint).get("model_kind") == "chat" and not a.raw:
            from llmtool.tokenizer.chat import ChatFormat

            self.chat = ChatFormat(self.tok)
        specials = self.tok.special_tokens
        self.stop = tuple(specials[s] for s in STOP_TOKENS if s in specials) if a.stop else ()
        autocast = None
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        self.engine = Engine(self.model, autocast=autocast)
        self.tokens_out = 0
        self.seconds = 0.0

    def encode(self, prompt: str) -> list[int]:
        from llmtool.errors import UsageError

        if self.chat is not None:
            if not prompt.strip():
                raise UsageError("a chat model answers a message: give a prompt (or --raw to sample freely)")
            return self.chat.prompt([{"role": "user", "content": prompt}])
        bos = [self.tok.bos_id] if self.tok.bos_id is not None else []
        ids = bos + self.tok.encode(prompt)
        if not ids:
            raise UsageError("an empty prompt needs a tokenizer with a BOS token; give a prompt")
        return ids

    def request(self, prompt: str, i: int, n: int):
        from llmtool.model.engine import Request

        a = self.a
        return Request(self.encode(prompt), n=n, max_tokens=a.max_tokens, temperature=a.temperature,
                       top_k=a.top_k, top_p=a.top_p, stop=self.stop, seed=prompt_seed(a.seed, i))

    def complete(self, prompts: list[str], first: int, n: int) -> list[list[tuple[list[int], str]]]:
        """n completions of each prompt, batched: (tokens without the stop token, finish)."""
        reqs = [self.request(p, first + i, n) for i, p in enumerate(prompts)]
        t0 = time.perf_counter()
        done = self.engine.generate(reqs)
        self.seconds += time.perf_counter() - t0
        out = []
        for comps in done:
            rows = []
            for c in comps:
                toks = c.tokens[:-1] if c.finish == "stop" else c.tokens
                self.tokens_out += len(toks)
                rows.append((toks, "eot" if c.finish == "stop" else "length"))
            out.append(rows)
        return out

    def stream(self, prompt: str, i: int):
        """The tokens of one sample of `prompt`, as they come (without the stop token)."""
        t0 = time.perf_counter()
        for step in self.engine.stream([self.request(prompt, i, 1)]):
            t = step[0]
            if t.finish == "stop":
                break
            self.tokens_out += 1
            yield t.token
        self.seconds += time.perf_counter() - t0


def _write(data: str) -> None:
    sys.stdout.buffer.write(data.encode("utf-8"))
    sys.stdout.buffer.flush()


def _text_prompts(a: SampleArgs) -> list[str]:
    from llmtool.errors import BadInputError

    if a.prompt_file:
        try:
            if a.prompt_file == "-":
                raw = sys.stdin.buffer.read()
            else:
                with open(a.prompt_file, "rb") as f:
                    raw = f.read()
        except OSError as e:
            raise BadInputError(f"{a.prompt_file}: cannot read ({e.strerror})")
        text = raw.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]
    return list(a.prompts) or [""]


def _text_mode(s: _Sampler, prompts: list[str]) -> int:
    n = s.a.num_samples
    count = 0
    for i, p in enumerate(prompts):
        if n == 1:  # stream token by token
            if count:
                _write("---\n")
            if s.chat is None:  # a completion continues the prompt; an answer stands alone
                _write(p)
            dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for t in s.stream(p, i):
                _write(dec.decode(s.tok.decode_bytes([t])))
            _write(dec.decode(b"", final=True) + "\n")
            count += 1
        else:  # the n samples of a prompt run together, sharing its prefill
            for toks, _ in s.complete([p], i, n)[0]:
                if count:
                    _write("---\n")
                _write(("" if s.chat is not None else p) + s.tok.decode(toks) + "\n")
                count += 1
    return count


def _table_mode(s: _Sampler, a: SampleArgs, run) -> int:
    import pyarrow as pa

    from llmtool.errors import BadInputError
    from llmtool.io.tables import TableWriter, open_table

    t = open_table(a.table, require=())
    names = t.schema.names
    col = a.column or ("prompt" if "prompt" in names else "text" if "text" in names else None)
    if col is None or col not in names:
        raise BadInputError(f"{a.table}: no {a.column or 'prompt or text'} column (columns: {', '.join(names)}); "
                            "pick one with --column")
    kind = t.schema.field(col).type
    if not pa.types.is_string(kind) and not pa.types.is_large_string(kind):
        raise BadInputError(f"{a.table}: column {col} is {kind}, not text")
    reserved = {"prompt", "sample", "completion", "tokens", "finish"}
    keep = [c for c in names if c not in reserved]
    count = 0
    with TableWriter(run.output, run.provenance) as w:
        for batch in t.batches():
            rows = batch.to_pylist()
            for lo in range(0, len(rows), CHUNK):
                part = rows[lo:lo + CHUNK]
                prompts = [row[col] or "" for row in part]
                done = s.complete(prompts, count, a.num_samples)
                out = []
                for row, prompt, comps in zip(part, prompts, done):
                    for i, (toks, fin) in enumerate(comps):
                        out.append({**{c: row[c] for c in keep}, "prompt": prompt, "sample": i,
                                    "completion": s.tok.decode(toks), "tokens": len(toks), "finish": fin})
                count += len(part)
                w.write_rows(out)
    return count * a.num_samples


def sample(a: SampleArgs, opts) -> None:
    from llmtool.errors import BadInputError, UsageError
    from llmtool.io.console import log, set_logging
    from llmtool.io.run import StageRun, default_output
    from llmtool.model.checkpoint import is_checkpoint

    set_logging("sample", opts.quiet, opts.verbose)
    given = [x for x in (a.prompts, a.prompt_file, a.table) if x]
    if len(given) > 1:
        raise UsageError("give prompts as arguments, --prompt-file or --input, not several")
    if a.output and not a.table:
        raise UsageError("-o writes a table of completions: it needs --input TABLE (text goes to stdout)")
    if a.top_k is not None and a.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if not is_checkpoint(a.checkpoint):
        raise BadInputError(f"{a.checkpoint}: not a checkpoint folder (no config.json)")
    if a.table:
        params = {"max_tokens": a.max_tokens, "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p,
                  "num_samples": a.num_samples, "seed": a.seed, "stop": a.stop, "column": a.column,
                  **({"raw": True} if a.raw else {})}
        # named after the prompts (prompts.sample.parquet), not after the checkpoint
        output = a.output if a.output is not None else default_output([a.table], "sample")
        run = StageRun("sample", STAGE_VERSION, params, [a.checkpoint, a.table], output, opts)
        if run.up_to_date():
            return
        s = _Sampler(a)
        n = _table_mode(s, a, run)
        run.summary(completions=n, tokens=s.tokens_out, tok_per_s=round(s.tokens_out / max(s.seconds, 1e-9), 1))
        return
    if opts.json:
        raise UsageError("--json needs --input TABLE -o FILE (text samples go to stdout)")
    prompts = _text_prompts(a)
    s = _Sampler(a)
    t0 = time.perf_counter()
    n = _text_mode(s, prompts)
    log(f"{n} sample(s), {s.tokens_out} tokens, {s.tokens_out / max(time.perf_counter() - t0, 1e-9):.1f} tok/s")


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
    no_stop: Annotated[bool, typer.Option(
        "--no-stop", help="Do not stop at the end-of-text (or <|im_end|>) token.")] = False,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Chat models: continue the prompt as text instead of answering it as a user message.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Generate text from a checkpoint: temperature, top-k, top-p, greedy, N samples, stop at EOT.

    Text prompts print prompt + completion on stdout as they are generated (samples are
    separated by a line "---"); a chat model (from sft or rl) answers each prompt as a user
    message and prints the answer, which ends at <|im_end|> (--raw: continue the text instead); a table of prompts gives a table with the columns
    prompt, sample, completion, tokens, finish (eot or length) and the input's other columns.
    The samples of a prompt, and the prompts of a table, are generated together in batches.

    Examples:

      llmtool sample base/ "Once upon a time" --max-tokens 100

      llmtool sample base/ "2 + 2 =" --temperature 0

      llmtool sample base/ --input prompts.parquet -o completions.parquet --num-samples 4
    """
    from llmtool.io.run import Opts

    sample(SampleArgs(checkpoint=checkpoint, prompts=prompts or [], prompt_file=prompt_file, table=table,
                      column=column, output=output, max_tokens=max_tokens, temperature=temperature,
                      top_k=top_k, top_p=top_p, num_samples=num_samples, seed=seed, stop=not no_stop,
                      device=device, raw=raw),
           Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose))
