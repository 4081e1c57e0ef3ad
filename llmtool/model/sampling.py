"""The sample recipe behind `llmtool sample`: prompts in, completions out (stdout or a table).

    from llmtool.model.sampling import SampleArgs, sample
    sample(SampleArgs(checkpoint="base", prompts=["Once upon a time"], max_tokens=50), Opts(), 1)

Every prompt starts with the tokenizer's BOS token, as every training document did.
Streaming to stdout goes through an incremental UTF-8 decoder, so a character split
across two tokens is printed whole, once both have arrived.
"""

from __future__ import annotations

import codecs
import sys
import time
from dataclasses import dataclass, field

from llmtool.errors import BadInputError, UsageError


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


class _Sampler:
    def __init__(self, a: SampleArgs):
        import torch

        from llmtool.model import checkpoint
        from llmtool.train.device import resolve_device

        self.a = a
        self.device = resolve_device(a.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)
        self.model, self.tok = checkpoint.load(a.checkpoint, self.device)
        self.stop_ids = (self.tok.eot_id,) if a.stop and self.tok.eot_id is not None else ()
        self.gen = torch.Generator(device=self.device).manual_seed(a.seed)
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            self.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        else:
            self.autocast = None
        self.tokens_out = 0
        self.seconds = 0.0

    def encode(self, prompt: str) -> list[int]:
        bos = [self.tok.bos_id] if self.tok.bos_id is not None else []
        ids = bos + self.tok.encode(prompt)
        if not ids:
            raise UsageError("an empty prompt needs a tokenizer with a BOS token; give a prompt")
        return ids

    def stream(self, ids: list[int], n: int):
        from llmtool.model.generate import stream

        a = self.a
        t0 = time.perf_counter()
        for nxt in stream(self.model, [ids] * n, a.max_tokens, temperature=a.temperature, top_k=a.top_k,
                          top_p=a.top_p, stop_ids=self.stop_ids, generator=self.gen, autocast=self.autocast):
            yield nxt.tolist()
        self.seconds += time.perf_counter() - t0

    def complete(self, ids: list[int], n: int) -> list[tuple[list[int], str]]:
        """n completions of one prompt, batched: (tokens without the stop token, finish reason)."""
        rows: list[list[int]] = [[] for _ in range(n)]
        finish = ["length"] * n
        for step in self.stream(ids, n):
            for i, t in enumerate(step):
                if finish[i] != "length":
                    continue  # stopped rows keep yielding the stop token
                if t in self.stop_ids:
                    finish[i] = "eot"
                else:
                    rows[i].append(t)
        self.tokens_out += sum(len(r) for r in rows)
        return list(zip(rows, finish))


def _write(data: str) -> None:
    sys.stdout.buffer.write(data.encode("utf-8"))
    sys.stdout.buffer.flush()


def _text_prompts(a: SampleArgs) -> list[str]:
    if a.prompt_file:
        try:
            raw = sys.stdin.buffer.read() if a.prompt_file == "-" else open(a.prompt_file, "rb").read()
        except OSError as e:
            raise BadInputError(f"{a.prompt_file}: cannot read ({e.strerror})")
        text = raw.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]
    return list(a.prompts) or [""]


def _text_mode(s: _Sampler, prompts: list[str]) -> int:
    n = s.a.num_samples
    first = True
    count = 0
    for p in prompts:
        ids = s.encode(p)
        if n == 1:  # stream token by token
            if not first:
                _write("---\n")
            first = False
            _write(p)
            dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
            made = 0
            for step in s.stream(ids, 1):
                t = step[0]
                if t in s.stop_ids:
                    break
                made += 1
                _write(dec.decode(s.tok.decode_bytes([t])))
            s.tokens_out += made
            _write(dec.decode(b"", final=True) + "\n")
            count += 1
        else:
            for toks, _ in s.complete(ids, n):
                if not first:
                    _write("---\n")
                first = False
                _write(p + s.tok.decode(toks) + "\n")
                count += 1
    return count


def _table_mode(s: _Sampler, a: SampleArgs, run) -> int:
    import pyarrow as pa

    from llmtool.io.tables import TableWriter, open_table

    t = open_table(a.table, require=())
    names = t.schema.names
    col = a.column or ("prompt" if "prompt" in names else "text" if "text" in names else None)
    if col is None or col not in names:
        raise BadInputError(f"{a.table}: no {a.column or 'prompt or text'} column (columns: {', '.join(names)}); "
                            "pick one with --column")
    if not pa.types.is_string(t.schema.field(col).type) and not pa.types.is_large_string(t.schema.field(col).type):
        raise BadInputError(f"{a.table}: column {col} is {t.schema.field(col).type}, not text")
    reserved = {"prompt", "sample", "completion", "tokens", "finish"}
    keep = [c for c in names if c not in reserved]
    count = 0
    with TableWriter(run.output, run.provenance) as w:
        for batch in t.batches():
            rows = batch.to_pylist()
            out = []
            for row in rows:
                prompt = row[col] or ""
                for i, (toks, fin) in enumerate(s.complete(s.encode(prompt), a.num_samples)):
                    out.append({**{c: row[c] for c in keep}, "prompt": prompt, "sample": i,
                                "completion": s.tok.decode(toks), "tokens": len(toks), "finish": fin})
            count += len(out)
            w.write_rows(out)
    return count


def sample(a: SampleArgs, opts, stage_version: int) -> None:
    from llmtool.io.console import log, set_logging
    from llmtool.io.run import StageRun

    set_logging("sample", opts.quiet, opts.verbose)
    given = [x for x in (a.prompts, a.prompt_file, a.table) if x]
    if len(given) > 1:
        raise UsageError("give prompts as arguments, --prompt-file or --input, not several")
    if a.output and not a.table:
        raise UsageError("-o writes a table of completions: it needs --input TABLE (text goes to stdout)")
    if a.top_k is not None and a.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    from llmtool.model.checkpoint import is_checkpoint

    if not is_checkpoint(a.checkpoint):
        raise BadInputError(f"{a.checkpoint}: not a checkpoint folder (no config.json)")
    if a.table:
        params = {"max_tokens": a.max_tokens, "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p,
                  "num_samples": a.num_samples, "seed": a.seed, "stop": a.stop, "column": a.column}
        run = StageRun("sample", stage_version, params, [a.checkpoint, a.table], a.output, opts)
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
