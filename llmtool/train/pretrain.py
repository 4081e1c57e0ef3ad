"""The pretrain recipe behind `llmtool pretrain`: parse, plan, check, train, summarise.

    from llmtool.train.pretrain import PretrainArgs, pretrain
    pretrain(PretrainArgs(data="data.bin", output="base", depth=2, context=64, max_steps=20), Opts(), 1)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from llmtool.errors import BadInputError, UsageError

# Knobs that change the weights: they go into the provenance key (logging-only ones do not).
_SEMANTIC = ("context", "micro_batch", "total_batch", "optimizer", "matrix_lr", "embedding_lr", "unembedding_lr",
             "weight_decay", "grad_clip", "warmup_steps", "warmdown", "final_lr", "max_steps", "max_tokens",
             "max_time", "seed")


@dataclass
class PretrainArgs:
    data: str
    output: str | None = None
    val: str | None = None
    val_split: float = 0.0
    tokenizer: str | None = None
    depth: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_kv_head: int | None = None
    context: int | None = None
    softcap: float = 15.0
    micro_batch: int | None = None
    total_batch: str | int | None = None
    max_steps: int | None = None
    max_tokens: str | int | None = None
    max_time: str | float | None = None
    windows: str = "random"
    seed: int = 0
    optimizer: str = "muon"
    lr: float | None = None
    embedding_lr: float = 0.2
    unembedding_lr: float = 0.004
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    warmup: int = 0
    warmdown: float = 0.2
    final_lr: float = 0.0
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    threads: int | None = None
    log_every: int = 10
    eval_every: int = 0
    eval_tokens: str | int = "512k"
    sample_every: int = 0
    prompts: list[str] | None = None
    ckpt_every: int = 0
    resume: bool = False
    dry_run: bool = False


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}


def parse_count(value, what: str) -> int | None:
    """'512k', '10M', '1.5B', '1e6' or a plain int."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmgbt]?)\s*", str(value).lower())
    if not m:
        raise UsageError(f"{what} {value!r}: expected a count like 524288, 512k, 10M or 1.5B")
    n = int(float(m.group(1)) * _UNITS[m.group(2)])
    if n < 1:
        raise UsageError(f"{what} {value!r}: must be positive")
    return n


def parse_duration(value) -> float | None:
    """'90', '90s', '5m', '1.5h' -> seconds."""
    if value is None or isinstance(value, (int, float)):
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|sec|m|min|h|d)?\s*", str(value).lower())
    if not m:
        raise UsageError(f"--max-time {value!r}: expected a duration like 90s, 5m or 2h")
    mult = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * mult


def default_total_batch(depth: int) -> int:
    """Tokens per step grow with the model: a power of two near 1536 × depth², at most 512k."""
    import math

    return min(1 << 19, 1 << round(math.log2(1536 * depth * depth)))


def resolve_tokenizer(spec: str | None, tf, data_path: str):
    """The tokenizer given, else the one named in the token file's metadata; it must match."""
    from llmtool.tokenizer.file import load_tokenizer

    if spec:
        tok = load_tokenizer(spec)
    else:
        meta = tf.meta or {}
        cands = []
        for key in ("tokenizer", "tokenizer_path", "tokenizer_name"):
            v = meta.get(key)
            if isinstance(v, dict):
                cands += [v.get("path"), v.get("spec"), v.get("name")]
            elif isinstance(v, str):
                cands.append(v)
        tok = None
        for c in cands:
            if not c:
                continue
            try:
                t = load_tokenizer(c)
            except BadInputError:
                continue
            if not tf.header.fingerprint.strip("0") or t.fingerprint[:32] == tf.header.fingerprint:
                tok = t
                break
        if tok is None:
            raise UsageError(f"{data_path}: cannot find the tokenizer it was made with; pass --tokenizer FILE|NAME")
    tf.check_tokenizer(tok.fingerprint, f"tokenizer {tok.name}")
    if tf.header.vocab_size > tok.vocab_size:
        raise BadInputError(f"{data_path}: vocab size {tf.header.vocab_size} is larger than tokenizer "
                            f"{tok.name}'s ({tok.vocab_size}); retokenize or pass the matching --tokenizer")
    return tok


def default_output(data: str) -> str:
    from llmtool.io.run import strip_suffix

    p = Path(data)
    folder = p.parent if os.access(p.parent, os.W_OK) else Path(".")
    return str(folder / f"{strip_suffix(p.name)}.pretrain")


def check_existing(out: str, resume: bool, force: bool) -> None:
    """Never throw away a training run by accident: replacing one needs --force."""
    p = Path(out)
    if not p.exists():
        if resume:
            raise UsageError(f"--resume: {out} does not exist (nothing to resume)")
        return
    if not p.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another -o")
    from llmtool.model.checkpoint import is_checkpoint

    if not is_checkpoint(out):
        if any(p.iterdir()):
            raise UsageError(f"{out} is a non-empty folder that is not a checkpoint; refusing to replace it")
        return
    if resume or force:
        return
    prov = {}
    if (p / "provenance.json").exists():
        try:
            prov = json.loads((p / "provenance.json").read_text())
        except json.JSONDecodeError:
            prov = {}
    if prov.get("complete", True) is False:
        raise UsageError(f"{out} holds an unfinished run (step {prov.get('step', '?')}); continue it with "
                         "--resume, or start over with --force")
    raise UsageError(f"{out} holds a model trained with other settings or data; replace it with --force "
                     "or choose another -o")


def pretrain(a: PretrainArgs, opts, stage_version: int) -> dict | None:
    from llmtool.io.console import set_logging
    from llmtool.io.run import StageRun

    set_logging("pretrain", opts.quiet, opts.verbose)
    out = a.output or default_output(a.data)
    if out == "-":
        raise UsageError("a checkpoint is a folder: pass -o FOLDER, not -")
    if not os.path.exists(a.data):
        raise BadInputError(f"{a.data}: no such token file")
    if a.val and not os.path.exists(a.val):
        raise BadInputError(f"{a.val}: no such validation token file")
    if a.val and a.val_split:
        raise UsageError("give either --val FILE or --val-split, not both")

    import torch

    from llmtool.io.tokfile import TokenFile
    from llmtool.model import checkpoint
    from llmtool.model.gpt import GPT, GPTConfig
    from llmtool.train.data import TokenWindows
    from llmtool.train.device import setup
    from llmtool.train.loop import DEFAULT_PROMPTS, TrainConfig, Trainer, check_fits, make_plan

    tf = TokenFile(a.data)
    tok = resolve_tokenizer(a.tokenizer, tf, a.data)
    valf = None
    if a.val:
        valf = TokenFile(a.val)
        valf.check_tokenizer(tok.fingerprint, f"tokenizer {tok.name}")

    # ---- the model: from the checkpoint when resuming, else from --depth / explicit dims
    resume_cfg = None
    if a.resume and checkpoint.is_checkpoint(out):
        resume_cfg = checkpoint.read_config(out)
        fp = resume_cfg.get("tokenizer_fingerprint")
        if fp and fp[:32] != tok.fingerprint[:32]:
            raise BadInputError(f"--resume: {out} was trained with another tokenizer than {a.data}")
    if resume_cfg is not None:
        mcfg = GPTConfig.from_dict(resume_cfg)
    else:
        depth = a.depth or 12
        mcfg = GPTConfig.from_depth(depth, tok.vocab_size, context=a.context or 1024)
        if a.n_embd:
            mcfg.n_embd = a.n_embd
            if not a.n_head:
                mcfg.n_head = max(1, -(-a.n_embd // 128))
                while a.n_embd % mcfg.n_head:
                    mcfg.n_head += 1
        if a.n_head:
            mcfg.n_head = a.n_head
        mcfg.n_kv_head = a.n_kv_head or mcfg.n_head
        mcfg.softcap = a.softcap
        mcfg.validate()
    context = a.context or mcfg.context
    if context > mcfg.context:
        raise UsageError(f"--context {context} is longer than the checkpoint's context {mcfg.context}")

    env = setup(a.device, a.dtype, a.threads)
    if not env.master:
        set_logging("pretrain", quiet=True)
    n = len(tf)
    train_span = (0, n)
    val_span = None
    if a.val_split:
        cut = int(n * (1 - a.val_split))
        train_span, val_span = (0, cut), (cut, n)
    source = TokenWindows(a.data, context, a.seed, a.windows, tokfile=tf, span=train_span)
    val = None
    if valf is not None:
        val = TokenWindows(a.val, context, tokfile=valf, what="the validation data")
    elif val_span is not None:
        val = TokenWindows(a.data, context, tokfile=tf, span=val_span, what="the --val-split share")

    torch.manual_seed(a.seed)
    model = GPT(mcfg)
    depth = mcfg.n_layer
    on_gpu = env.device.type == "cuda"
    micro = a.micro_batch or (32 if on_gpu else 16)
    total = parse_count(a.total_batch, "--total-batch")
    max_tokens = parse_count(a.max_tokens, "--max-tokens")
    max_time = parse_duration(a.max_time)
    if max_time is not None and max_time <= 0:
        raise UsageError("--max-time must be positive")
    if not (a.max_steps or max_tokens or max_time):
        max_tokens = 20 * model.num_params()  # Chinchilla-optimal, as nanochat
    cfg = TrainConfig(context=context, micro_batch=micro, total_batch=None, optimizer=a.optimizer, matrix_lr=a.lr,
                      embedding_lr=a.embedding_lr, unembedding_lr=a.unembedding_lr, weight_decay=a.weight_decay,
                      grad_clip=a.grad_clip, warmup_steps=a.warmup, warmdown=a.warmdown, final_lr=a.final_lr,
                      max_steps=a.max_steps, max_tokens=max_tokens, max_time=max_time, seed=a.seed,
                      log_every=a.log_every, eval_every=a.eval_every,
                      eval_tokens=parse_count(a.eval_tokens, "--eval-tokens"), sample_every=a.sample_every,
                      sample_prompts=tuple(a.prompts) if a.prompts else DEFAULT_PROMPTS, ckpt_every=a.ckpt_every,
                      compile=a.compile)
    if a.micro_batch is None:  # shrink the default micro-batch until it fits
        while cfg.micro_batch > 1 and make_plan(model, cfg, env.world, env.dtype).memory_bytes > _free(env) * 0.8:
            cfg.micro_batch //= 2
    per_micro = cfg.micro_batch * context * env.world
    if total is None and not on_gpu:
        # nanochat's batch sizes are for GPUs; a CPU takes seconds per micro-batch already,
        # and small models learn more from many small steps than from a few large ones
        total = per_micro
    if total is None:
        total = max(per_micro, default_total_batch(depth) // per_micro * per_micro)
        if a.total_batch is None and a.micro_batch is None and a.max_steps is None and max_tokens:
            total = min(total, max(per_micro, max_tokens // 20 // per_micro * per_micro))  # >= ~20 steps
    cfg.total_batch = total
    plan = make_plan(model, cfg, env.world, env.dtype)

    params = {"model": {k: v for k, v in mcfg.to_dict().items()},
              "train": {k: v for k, v in cfg.to_dict().items() if k in _SEMANTIC},
              "windows": a.windows, "val_split": a.val_split, "tokenizer": tok.fingerprint,
              "world": env.world}
    inputs = [a.data] + ([a.val] if a.val else [])
    run = StageRun("pretrain", stage_version, params, inputs, out, opts, binary_output=False)

    if a.dry_run:
        lines = [f"device: {env.device} ({env.dtype}), {env.world} rank(s)",
                 f"architecture: {mcfg.n_layer} layers, width {mcfg.n_embd}, {mcfg.n_head} heads "
                 f"({mcfg.n_kv_head} kv), context {context}, vocab {mcfg.vocab_size}",
                 *plan.lines(), f"data: {n:,} tokens in {a.data} ({tf.header.n_docs:,} documents)"]
        if plan.tokens:
            lines.append(f"epochs: {plan.tokens / max(1, train_span[1] - train_span[0]):.2f} over the training data")
        if opts.json:
            print(json.dumps({"stage": "pretrain", "dry_run": True, "output": out, "device": str(env.device),
                              "params": plan.params, "flops_per_token": plan.flops_per_token,
                              "tokens_per_step": plan.tokens_per_step, "steps": plan.steps, "tokens": plan.tokens,
                              "total_flops": plan.total_flops, "memory_bytes": plan.memory_bytes}))
        else:
            print("\n".join(lines))
        env.close()
        return None
    if run.up_to_date():
        env.close()
        return None
    check_existing(out, a.resume, opts.force)
    check_fits(plan, env)
    n_train = train_span[1] - train_span[0]
    if plan.tokens and plan.tokens > 4 * n_train:
        from llmtool.io.console import warn

        warn(f"the budget ({plan.tokens:,} tokens) goes {plan.tokens / n_train:.0f} times over the "
             f"{n_train:,} training tokens: expect overfitting (more data, or a smaller --max-tokens)")

    resume_state = None
    if a.resume:
        model = checkpoint.load_model(out).train()
        resume_state = checkpoint.load_train_state(out)
        if resume_state.get("world", env.world) != env.world or \
                resume_state.get("train_config", {}).get("micro_batch", micro) != cfg.micro_batch:
            from llmtool.io.console import warn

            warn("resuming with another number of ranks or micro-batch: same data, "
                 "but float sums happen in another order (not bit-exact)")
    from llmtool.train.report import Reporter

    rep = Reporter("pretrain", env.master, checkpoint.read_metrics(out) if a.resume else None)
    if resume_state is not None:  # drop records of steps after the checkpoint (a crash after it)
        rep.metrics = [m for m in rep.metrics if m.get("step", 0) <= resume_state["step"]]
    for line in plan.lines()[:3]:
        rep.line(line)
    if resume_state is not None:
        rep.line(f"resuming {out} at step {resume_state['step']}")
    trainer = Trainer(model, cfg, env, source, out, val=val, tokenizer=tok, provenance=run.provenance,
                      stage="pretrain", reporter=rep)
    try:
        summary = trainer.run(resume_state)
    except torch.OutOfMemoryError:
        from llmtool.errors import LlmtoolError

        raise LlmtoolError(f"out of memory on {env.device}: use a smaller --micro-batch (gradient accumulation "
                           "keeps the total batch), --context or --depth")
    finally:
        env.close()
    if env.master:
        fields = {"steps": summary["steps"], "tokens": summary["tokens"]}
        if summary["loss"] is not None:
            fields["loss"] = round(summary["loss"], 4)
        if summary["val_bpb"] is not None:
            fields["val_bpb"] = round(summary["val_bpb"], 4)
        elif summary["val_loss"] is not None:
            fields["val_loss"] = round(summary["val_loss"], 4)
        if summary["tok_per_s"]:
            fields["tok_per_s"] = summary["tok_per_s"]
        run.summary(**fields)
    return summary


def _free(env) -> float:
    from llmtool.train.device import memory_available

    free = memory_available(env.device)
    return float(free) if free else float("inf")
