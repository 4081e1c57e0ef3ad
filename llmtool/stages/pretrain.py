"""`llmtool pretrain`: train a GPT from scratch on a token file; the output is a checkpoint folder.

    llmtool pretrain data.bin --val val.bin --depth 4 --context 256 --max-time 3m -o base/
    llmtool pretrain data.bin --depth 20 --device cuda --compile -o base/
    torchrun --nproc_per_node 8 -m llmtool pretrain data.bin --depth 20 -o base/
    llmtool pretrain data.bin --depth 20 --dry-run
    llmtool pretrain base/ --resume                      # after Ctrl-C or a crash
    llmtool sample base/ "Once upon a time"

The recipe: options (declared once, in PretrainOptions and llmtool.stages.training), plan,
checks, Trainer (llmtool.train), summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from llmtool.stages.training import (
    BATCH,
    MODEL,
    TrainOptions,
    apply_checkpoint_settings,
    argument,
    check_existing,
    check_vocab,
    checkpoint_settings,
    command,
    default_output,
    flag_errors,
    option,
    resolve_tokenizer,
    resume_state,
)

NO_ARGS_HELP = True
STAGE_VERSION = 1

# On a CPU without a budget: train 20 tokens per parameter, but for at most this long, and
# refuse when that makes fewer than MIN_CPU_STEPS steps (the estimate says the model is too big).
CPU_DEFAULT_SECONDS = 1800
MIN_CPU_STEPS = 20
CPU_DEFAULT_DEPTH, CPU_DEFAULT_CONTEXT = 4, 256


def _same_tokens(a: str, b: str) -> bool:
    """Two paths name the same training data when their token files hold the same tokens."""
    from llmtool.io.tokfile import read_header

    if not os.path.exists(b):  # the data moved: the tokenizer fingerprint still guards the resume
        return True
    if not os.path.exists(a):
        return False
    ha, hb = read_header(a), read_header(b)
    return (ha.checksum, ha.n_tokens, ha.fingerprint) == (hb.checksum, hb.n_tokens, hb.fingerprint)


@dataclass(kw_only=True)
class PretrainOptions(TrainOptions):
    data: str = argument("Token file (.bin) made by `llmtool tokenize` (with --resume, the checkpoint "
                         "folder instead: the data is then the one it was trained on).",
                         path=True, same=_same_tokens)
    output: Optional[str] = option(None, "--output", "-o", saved=False,
                                   help="Checkpoint folder to write (default: DATA.pretrain/ beside the input).")
    val: Optional[str] = option(None, "--val", path=True,
                                help="Validation token file: loss and bits-per-byte every --eval-every steps.")
    val_split: float = option(0.0, "--val-split", min=0.0, max=0.5, semantic=True,
                              help="Hold out this share of DATA's tokens (its end) for validation instead of --val.")
    tokenizer: Optional[str] = option(None, "--tokenizer", saved=False,
                                      help="Tokenizer file or name (default: the one DATA was made with, or the "
                                      "checkpoint's on --resume); must match DATA.")
    depth: Optional[int] = option(None, "--depth", min=1, panel=MODEL, semantic=True,
                                  help="Layers; width = 64 × depth, heads of 128 dims, batch and learning rates "
                                  "follow (nanochat's sizing). Default 12 (4 on a CPU without a budget).")
    width: Optional[int] = option(None, "--width", min=8, panel=MODEL, semantic=True, help="Override the width.")
    heads: Optional[int] = option(None, "--heads", min=1, panel=MODEL, semantic=True,
                                  help="Override the number of attention heads.")
    kv_heads: Optional[int] = option(None, "--kv-heads", min=1, panel=MODEL, semantic=True,
                                     help="Key/value heads (< heads: grouped-query attention).")
    context: Optional[int] = option(None, "--context", min=2, panel=MODEL, semantic=True,
                                    help="Sequence length in tokens (default 1024; 256 on a CPU without a budget).")
    softcap: float = option(15.0, "--softcap", min=0.0, panel=MODEL, semantic=True, help="Logit soft-cap (0 = off).")
    windows: str = option("random", "--windows", panel=BATCH, semantic=True,
                          help="random: windows start anywhere; docs: at document starts.")


def _pretrain(o: PretrainOptions) -> None:
    """Pretrain a GPT (RoPE, RMSNorm, QK-norm, ReLU², soft-capped logits) on a token file.

    Writes a checkpoint folder: config.json, model.safetensors, tokenizer.json, train_state.pt,
    metrics.jsonl, provenance.json. Under torchrun, trains on every GPU with DDP. --resume
    continues with the checkpoint's settings; on a CPU without a size or budget, a small model
    trains for at most 30 minutes.

    Examples:

      llmtool pretrain data.bin --val-split 0.02 --depth 4 --context 256 --max-time 3m -o base/

      llmtool pretrain data.bin --val val.bin --depth 20 --device cuda --compile -o base/

      torchrun --nproc_per_node 8 -m llmtool pretrain data.bin --depth 20 -o base/

      llmtool pretrain base/ --resume

      llmtool pretrain base/ --resume --max-steps 20000    # a longer run
    """
    from llmtool.io.console import set_logging

    set_logging("pretrain", o.quiet, o.verbose)
    with flag_errors(PretrainOptions):
        pretrain(o)


run = command(PretrainOptions, _pretrain)


def default_total_batch(depth: int) -> int:
    """Tokens per step grow with the model: a power of two near 1536 × depth², at most 512k."""
    import math

    return min(1 << 19, 1 << round(math.log2(1536 * depth * depth)))


def pretrain(o: PretrainOptions) -> dict | None:
    """The recipe; returns the Trainer's summary (None for a dry run or an up-to-date output)."""
    from llmtool.errors import BadInputError, UsageError
    from llmtool.io.console import log, set_logging, warn
    from llmtool.io.run import Opts, StageRun
    from llmtool.model import checkpoint

    # ---- where, and what a resume continues: the run's settings come from its checkpoint
    if o.resume and o.output is None and checkpoint.is_checkpoint(o.data):  # `pretrain base/ --resume`
        o.output, o.data = o.data, None
        o.given = o.given - {"data"}
    out = o.output or default_output(o.data, "pretrain")
    if out == "-":
        raise UsageError("a checkpoint is a folder: pass -o FOLDER, not -")
    state, notes = None, []
    if o.resume:
        check_existing(out, resume=True, force=o.force)
        state = resume_state(out)
        notes = apply_checkpoint_settings(o, checkpoint_settings(PretrainOptions, state))
        if o.data is None:
            raise UsageError(f"--resume: {out} does not record its training data; pass the token file as well")
    if not os.path.exists(o.data):
        raise BadInputError(f"{o.data}: no such token file")
    if o.val and not os.path.exists(o.val):
        raise BadInputError(f"{o.val}: no such validation token file")
    if o.val and o.val_split:
        raise UsageError("give either --val FILE or --val-split, not both")

    import torch

    from llmtool.io.tokfile import TokenFile
    from llmtool.model.gpt import GPT, GPTConfig
    from llmtool.train.data import TokenWindows, Verification
    from llmtool.train.device import setup, training_flops
    from llmtool.train.loop import Trainer, check_fits, make_plan
    from llmtool.train.report import Reporter, fmt_count, fmt_duration

    tf = TokenFile(o.data)
    if state is not None and not o.tokenizer:
        tok = checkpoint.load_tokenizer(out)
        check_vocab(tf, tok, o.data)
    else:
        tok = resolve_tokenizer(o.tokenizer, tf, o.data)
    valf = None
    if o.val:
        valf = TokenFile(o.val)
        valf.check_tokenizer(tok.fingerprint, f"tokenizer {tok.name}")

    env = setup(o.device, o.dtype, o.threads)
    if not env.master:
        set_logging("pretrain", quiet=True)
    on_gpu = env.device.type == "cuda"
    no_budget = not (o.max_steps or o.max_tokens or o.max_time)
    small_default = env.device.type == "cpu" and no_budget and not (o.depth or o.width or o.context)

    # ---- the model: the checkpoint's when resuming, else from --depth / explicit dims
    if state is not None:
        model = checkpoint.load_model(out).train()
        mcfg = model.config
        fp = checkpoint.read_config(out).get("tokenizer_fingerprint")
        if fp and fp[:32] != tok.fingerprint[:32]:
            raise BadInputError(f"--resume: {out} was trained with another tokenizer than {o.data}")
    else:
        depth = o.depth or (CPU_DEFAULT_DEPTH if small_default else 12)
        mcfg = GPTConfig.from_depth(depth, tok.vocab_size,
                                    context=o.context or (CPU_DEFAULT_CONTEXT if small_default else 1024))
        if o.width:
            mcfg.n_embd = o.width
            if not o.heads:
                mcfg.n_head = max(1, -(-o.width // 128))
                while o.width % mcfg.n_head:
                    mcfg.n_head += 1
        if o.heads:
            mcfg.n_head = o.heads
        mcfg.n_kv_head = o.kv_heads or mcfg.n_head
        mcfg.softcap = o.softcap
        mcfg.validate()
        torch.manual_seed(o.seed)
        model = GPT(mcfg)
    context = o.context or mcfg.context
    if context > mcfg.context:
        raise UsageError(f"--context {context} is longer than the checkpoint's context {mcfg.context}")

    n = len(tf)
    train_span, val_span = (0, n), None
    if o.val_split:
        cut = int(n * (1 - o.val_split))
        train_span, val_span = (0, cut), (cut, n)
    vocab = mcfg.vocab_size
    source = TokenWindows(o.data, context, o.seed, o.windows, tokfile=tf, span=train_span, vocab_size=vocab)
    val = None
    if valf is not None:
        val = TokenWindows(o.val, context, tokfile=valf, what="the validation data", vocab_size=vocab)
    elif val_span is not None:
        val = TokenWindows(o.data, context, tokfile=tf, span=val_span, what="the --val-split share", vocab_size=vocab)

    # ---- batch and budget
    max_tokens, max_time = o.parsed("max_tokens"), o.parsed("max_time")
    if no_budget:
        max_tokens = 20 * model.num_params()  # Chinchilla-optimal, as nanochat
        if env.device.type == "cpu":
            max_time = CPU_DEFAULT_SECONDS  # ... but a CPU would take days for most models
    cfg = o.train_config(context=context, micro_batch=o.micro_batch or (32 if on_gpu else 16), total_batch=None,
                         max_tokens=max_tokens, max_time=max_time)
    if o.micro_batch is None:  # shrink the default micro-batch until it fits
        while cfg.micro_batch > 1 and make_plan(model, cfg, env.world, env.dtype).memory_bytes > _free(env) * 0.8:
            cfg.micro_batch //= 2
    per_micro = cfg.micro_batch * context * env.world
    total = o.parsed("total_batch")
    if total is None and not on_gpu:
        # nanochat's batch sizes are for GPUs; a CPU takes seconds per micro-batch already,
        # and small models learn more from many small steps than from a few large ones
        total = per_micro
    if total is None:
        total = max(per_micro, default_total_batch(mcfg.n_layer) // per_micro * per_micro)
        if o.total_batch is None and o.micro_batch is None and o.max_steps is None and max_tokens:
            total = min(total, max(per_micro, max_tokens // 20 // per_micro * per_micro))  # >= ~20 steps
    cfg.total_batch = total
    plan = make_plan(model, cfg, env.world, env.dtype)
    plan.flops_per_second = training_flops(env)
    if state is not None and plan.steps is not None and state["step"] > plan.steps:
        raise UsageError(f"--resume: {out} is at step {state['step']}, past the budget of {plan.steps} steps; "
                         "give a larger budget (--max-steps, --max-tokens)")
    if no_budget and env.device.type == "cpu":
        tps = plan.tokens_per_second
        steps_in_time = CPU_DEFAULT_SECONDS * tps / plan.tokens_per_step if tps else None
        if steps_in_time is not None and steps_in_time < MIN_CPU_STEPS:
            chinchilla = fmt_duration(max_tokens / tps)
            raise UsageError(
                f"no budget given: on this CPU the {plan.params / 1e6:.0f}M-parameter model would train at "
                f"~{fmt_count(tps)} tokens/s, so 20 tokens per parameter ({fmt_count(max_tokens)}) would take "
                f"~{chinchilla}, and {CPU_DEFAULT_SECONDS // 60} minutes make only ~{steps_in_time:.0f} steps; "
                f"choose a smaller model (--depth {CPU_DEFAULT_DEPTH} --context {CPU_DEFAULT_CONTEXT}) or give a "
                "budget (--max-time, --max-steps, --max-tokens)")

    # ---- the run's settings as it will use them: saved in the checkpoint, read back on --resume
    o.depth, o.width, o.heads, o.kv_heads = mcfg.n_layer, mcfg.n_embd, mcfg.n_head, mcfg.n_kv_head
    o.context, o.softcap = context, mcfg.softcap
    o.micro_batch, o.total_batch, o.max_tokens, o.max_time = cfg.micro_batch, cfg.total_batch, cfg.max_tokens, \
        cfg.max_time

    params = {"model": dict(mcfg.to_dict()),
              "train": {k: v for k, v in cfg.to_dict().items() if k in o.semantic_names()},
              "windows": o.windows, "val_split": o.val_split, "tokenizer": tok.fingerprint, "world": env.world}
    inputs = [o.data] + ([o.val] if o.val else [])
    opts = Opts(force=o.force, json=o.json, quiet=o.quiet, verbose=o.verbose)
    run_ = StageRun("pretrain", STAGE_VERSION, params, inputs, out, opts, binary_output=False, folder=True)

    if o.dry_run:
        _print_plan(o, out, env, mcfg, plan, tf, train_span, context, notes, no_budget)
        env.close()
        return None
    if run_.up_to_date():
        env.close()
        return None
    check_existing(out, o.resume, o.force)
    check_fits(plan, env)
    # the checksums and id ranges of the token files: at once for small files, for large ones in
    # the background of the first steps (no checkpoint is written before it is done)
    source.verification = Verification([tf, valf])
    if val is not None:
        val.verification = source.verification
    n_train = train_span[1] - train_span[0]
    if plan.tokens and plan.tokens > 4 * n_train:
        warn(f"the budget ({plan.tokens:,} tokens) goes {plan.tokens / n_train:.0f} times over the "
             f"{n_train:,} training tokens: expect overfitting (more data, or a smaller --max-tokens)")

    rep = Reporter("pretrain", env.master, checkpoint.read_metrics(out) if o.resume else None)
    if state is not None:  # drop records of steps after the checkpoint (a crash after it)
        rep.metrics = [m for m in rep.metrics if m.get("step", 0) <= state["step"]]
    for line in _choices(no_budget, small_default, plan, cfg):
        log(line)
    for line in plan.lines()[:3]:
        rep.line(line)
    if state is not None:
        rep.line(f"resuming {out} at step {state['step']}" + (": " + ", ".join(notes) if notes else ""))
        if state.get("world", env.world) != env.world or any(x.startswith("--micro-batch") for x in notes):
            warn("resuming with another number of ranks or micro-batch: same data, "
                 "but float sums happen in another order (not bit-exact)")
    trainer = Trainer(model, cfg, env, source, out, val=val, tokenizer=tok, provenance=run_.provenance,
                      stage="pretrain", reporter=rep, settings=o.settings())
    try:
        summary = trainer.run(state)
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
        run_.summary(**fields)
    return summary


def _choices(no_budget: bool, small_default: bool, plan, cfg) -> list[str]:
    """What was chosen for the user, said once at the start."""
    from llmtool.train.report import fmt_count

    lines = []
    if small_default:
        lines.append(f"no size or budget given on a CPU: depth {CPU_DEFAULT_DEPTH}, context {CPU_DEFAULT_CONTEXT} "
                     "(--depth, --context to choose)")
    if no_budget:
        cap = f", or {CPU_DEFAULT_SECONDS // 60} minutes on this CPU, whichever comes first" if cfg.max_time else ""
        lines.append(f"no budget given: 20 tokens per parameter ({fmt_count(cfg.max_tokens)}){cap} "
                     "(--max-steps, --max-tokens, --max-time to choose)")
    return lines


def _print_plan(o, out, env, mcfg, plan, tf, train_span, context, notes, no_budget) -> None:
    import json

    lines = [f"device: {env.device} ({env.dtype}), {env.world} rank(s)",
             f"architecture: {mcfg.n_layer} layers, width {mcfg.n_embd}, {mcfg.n_head} heads "
             f"({mcfg.n_kv_head} kv), context {context}, vocab {mcfg.vocab_size}",
             *plan.lines(), f"data: {len(tf):,} tokens in {o.data} ({tf.header.n_docs:,} documents)"]
    if plan.tokens:
        lines.append(f"epochs: {plan.tokens / max(1, train_span[1] - train_span[0]):.2f} over the training data")
    if no_budget and plan.seconds and o.max_time and plan.seconds > o.max_time:
        lines.append(f"stops after {o.max_time / 60:.0f} minutes (before the token budget)")
    lines += [f"resume: {n}" for n in notes]
    if o.json:
        print(json.dumps({"stage": "pretrain", "dry_run": True, "output": out, "device": str(env.device),
                          "params": plan.params, "flops_per_token": plan.flops_per_token,
                          "tokens_per_step": plan.tokens_per_step, "steps": plan.steps, "tokens": plan.tokens,
                          "total_flops": plan.total_flops, "memory_bytes": plan.memory_bytes,
                          "max_time": o.max_time, "estimated_seconds": plan.seconds}))
    else:
        print("\n".join(lines))


def _free(env) -> float:
    from llmtool.train.device import memory_available

    free = memory_available(env.device)
    return float(free) if free else float("inf")
