"""`llmtool sft`: finetune a model on conversations so it answers as an assistant.

    llmtool sft base/ conversations.parquet -o chat/
    llmtool sft base/ data/oasst.parquet --val val.parquet --epochs 2 --lr-frac 0.2 -o chat/
    llmtool sft base/ convs.jsonl --show-mask 3        # look at what the model will learn
    llmtool sft chat/ --resume                          # after Ctrl-C or a crash
    torchrun --nproc_per_node 8 -m llmtool sft base/ big.parquet --device cuda -o chat/
    llmtool chat chat/ "Who are you?"

The recipe: read and check the conversations (llmtool.data.conversations), render them with
the chat template (llmtool.tokenizer.chat: one renderer for sft, rl, chat and serve), fit
them into the context at turn boundaries and pack them (llmtool.train.sft_data), then the
shared Trainer with a loss on the assistant tokens only. A base model gets the chat tokens
added first; the learning rates and optimizer default to the base's, times --lr-frac.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import typer

from llmtool.stages.training import (
    BATCH,
    LOGGING,
    MODEL,
    OPTIMIZER,
    TrainOptions,
    apply_checkpoint_settings,
    check_existing,
    checkpoint_settings,
    command,
    default_output,
    flag_errors,
    option,
    resume_state,
)

NO_ARGS_HELP = True
STAGE_VERSION = 1
SFT_PROMPTS = ("Who are you?", "What is the capital of France?")


def _optional_argument(help: str):
    """A positional argument that may be left out (DATA, with `sft chat/ --resume`)."""
    meta = {"typer": typer.Argument(help=help, show_default=False, metavar="[DATA]..."), "flags": (), "semantic": True,
            "resume": "fixed", "parse": None, "path": True, "saved": True, "same": None}
    return field(default=None, metadata=meta)


@dataclass(kw_only=True)
class SftOptions(TrainOptions):
    base: str = field(metadata={"typer": typer.Argument(help="Checkpoint to start from (`pretrain`'s, or a chat "
                                                             "model); with --resume alone, the run's folder.",
                                                         metavar="BASE"),
                                "flags": (), "semantic": True, "resume": "fixed", "parse": None, "path": True,
                                "saved": True, "same": None})
    data: Optional[list[str]] = _optional_argument("Conversations: tables or JSONL with `messages`, "
                                                   "`conversations` (ShareGPT) or `prompt`/`response` columns; "
                                                   "several files are trained on together.")
    output: Optional[str] = option(None, "--output", "-o", saved=False,
                                   help="Checkpoint folder to write (default: BASE.sft/ beside the base).")
    val: Optional[str] = option(None, "--val", path=True,
                                help="Held-out conversations: validation loss on their assistant tokens.")
    val_split: float = option(0.0, "--val-split", min=0.0, max=0.5, semantic=True,
                              help="Hold out this share of DATA's conversations for validation instead of --val.")
    epochs: Optional[float] = option(None, "--epochs", min=0.0, panel=BATCH, semantic=True, resume="change",
                                     help="Passes over the conversations (default 1 when no other budget is given).")
    lr_frac: float = option(0.5, "--lr-frac", min=0.0, panel=OPTIMIZER, semantic=True,
                            help="Learning rates are the base run's times this (unless given with --lr, "
                            "--embedding-lr, --head-lr).")
    context: Optional[int] = option(None, "--context", min=2, panel=MODEL, semantic=True,
                                    help="Window length in tokens (default: the base model's context).")
    train_on: str = option("assistant", "--train-on", semantic=True,
                           help="assistant: learn every assistant message; last: only each conversation's last one.")
    skip_bad: bool = option(False, "--skip-bad", saved=False,
                            help="Skip malformed conversations (counted) instead of stopping at the first.")
    show_mask: Optional[int] = option(None, "--show-mask", min=0, saved=False,
                                      help="Print N rendered examples, supervised tokens highlighted, and the "
                                      "token counts; then exit without training.")
    warmdown: float = option(1.0, "--warmdown", min=0.0, max=1.0, panel=OPTIMIZER, semantic=True,
                             help="Share of the run with a linearly decaying lr (default: all of it).")
    sample_prompts: Optional[list[str]] = option(None, "--prompt", panel=LOGGING,
                                                 help="User message for the samples shown during training "
                                                 "(repeatable; --sample-every N).")


def _sft(o: SftOptions) -> None:
    """Finetune a model on conversations (supervised finetuning): the loss is on the assistant
    messages only, so it learns to answer, not to ask.

    A base checkpoint gets the chat tokens <|im_start|>, <|im_sep|>, <|im_end|> (new rows at the
    mean embedding); conversations longer than the context are cut at a turn boundary, the rest
    are packed best-fit into windows. Writes a chat checkpoint (`sample`, `chat` and `serve`
    render prompts as a user turn and stop at <|im_end|>).

    Examples:

      llmtool sft base/ conversations.parquet -o chat/

      llmtool sft base/ oasst.parquet --val val.parquet --epochs 2 --lr-frac 0.2 -o chat/

      llmtool sft base/ convs.jsonl --show-mask 3

      llmtool sft chat/ --resume

      torchrun --nproc_per_node 8 -m llmtool sft base/ big.parquet --device cuda -o chat/
    """
    from llmtool.io.console import set_logging

    set_logging("sft", o.quiet or o.show_mask is not None, o.verbose)
    with flag_errors(SftOptions):
        sft(o)


run = command(SftOptions, _sft)


def _conversations(path: str, skip_bad: bool):
    from llmtool.data import conversations as conv

    if not os.path.exists(path) and path != "-":
        from llmtool.errors import BadInputError

        raise BadInputError(f"{path}: no such file")
    items, _, skipped = conv.load(path, conv.conversation, skip_bad)
    return items, skipped


def sft(o: SftOptions) -> dict | None:
    """The recipe; returns the Trainer's summary (None for --dry-run, --show-mask, up to date)."""
    from llmtool.errors import BadInputError, UsageError
    from llmtool.io.console import log, set_logging, warn
    from llmtool.io.run import Opts, StageRun
    from llmtool.model import checkpoint

    # ---- where, and what a resume continues
    if o.resume and not o.data and o.output is None:  # `sft chat/ --resume`
        o.output = o.base
        o.given = o.given - {"base"}
    out = o.output or default_output(o.base, "sft")
    if out == "-":
        raise UsageError("a checkpoint is a folder: pass -o FOLDER, not -")
    state, notes = None, []
    if o.resume:
        check_existing(out, resume=True, force=o.force)
        state = resume_state(out)
        notes = apply_checkpoint_settings(o, checkpoint_settings(SftOptions, state))
    if not o.data:
        raise UsageError("missing DATA: the conversations to train on (a table or JSONL)")
    if o.train_on not in ("assistant", "last"):
        raise UsageError(f"--train-on {o.train_on}: choose assistant or last")
    if o.val and o.val_split:
        raise UsageError("give either --val FILE or --val-split, not both")
    if not checkpoint.is_checkpoint(o.base) and state is None:
        raise BadInputError(f"{o.base}: not a checkpoint folder (made by `llmtool pretrain` or `sft`)")

    convs, skipped = [], {}
    for path in o.data:
        got, bad = _conversations(path, o.skip_bad)
        convs += got
        for k, v in bad.items():
            skipped[k] = skipped.get(k, 0) + v
    val_convs = []
    if o.val:
        val_convs, vskipped = _conversations(o.val, o.skip_bad)
        for k, v in vskipped.items():
            skipped[f"--val: {k}"] = v
    if not convs:
        raise BadInputError(f"{', '.join(o.data)}: no usable conversations")

    import torch

    from llmtool.stages.training import start_chat
    from llmtool.tokenizer.chat import TEMPLATE, ChatFormat
    from llmtool.train import optim, sft_data
    from llmtool.train.device import setup
    from llmtool.train.loop import Trainer, check_fits, make_plan
    from llmtool.train.report import Reporter

    env = setup(o.device, o.dtype, o.threads)
    if not env.master:
        set_logging("sft", quiet=True)

    # ---- the model: the run's own checkpoint when resuming, else the base with the chat tokens
    if state is not None:
        model = checkpoint.load_model(out).train()
        tok = checkpoint.load_tokenizer(out)
        base_train, base_settings, added = {}, {}, []
    else:
        start = start_chat(o.base)
        model, tok, added = start.model, start.tokenizer, start.added
        base_train, base_settings = start.train_config, start.settings
    fmt = ChatFormat(tok)
    context = o.context or model.config.context
    if context > model.config.context:
        raise UsageError(f"--context {context} is longer than the model's context {model.config.context}")

    if o.val_split:
        order = sft_data.shuffled(range(len(convs)), o.seed)
        cut = max(1, round(len(convs) * o.val_split))
        val_convs = [convs[i] for i in order[:cut]]
        convs = [convs[i] for i in order[cut:]]
    prep = sft_data.prepare([fmt.render(c, o.train_on) for c in convs], context)
    val_prep = sft_data.prepare([fmt.render(c, o.train_on) for c in val_convs], context) if val_convs else None

    if o.show_mask is not None:
        _show_mask(fmt, prep, o.show_mask, len(convs), skipped)
        env.close()
        return None
    if not prep.examples:
        raise BadInputError(f"{', '.join(o.data)}: no conversation has an assistant message that fits the context "
                            f"({context} tokens); give a longer --context")
    source = sft_data.ConversationWindows(prep.examples, context, o.seed, pad_id=tok.eot_id or 0)
    val = sft_data.ConversationWindows(val_prep.examples, context, o.seed) if val_prep and val_prep.examples \
        else None

    # ---- settings: the base run's optimizer and learning rates (times --lr-frac), unless given
    if state is None:
        if "optimizer" not in o.given and base_train.get("optimizer"):
            o.optimizer = base_train["optimizer"]
        default_matrix = optim.MUON_LR if o.optimizer == "muon" else optim.ADAM_MATRIX_LR
        for name, default in (("matrix_lr", default_matrix), ("embedding_lr", optim.EMBEDDING_LR),
                              ("unembedding_lr", optim.UNEMBEDDING_LR)):
            if name not in o.given:
                base_lr = base_train.get(name) if base_train.get("optimizer", o.optimizer) == o.optimizer else None
                setattr(o, name, (base_lr if base_lr is not None else default) * o.lr_frac)
        if o.micro_batch is None:
            o.micro_batch = min(base_settings.get("micro_batch") or 16, len(source))
    on_gpu = env.device.type == "cuda"
    micro = o.micro_batch or (32 if on_gpu else 16)
    total = o.parsed("total_batch") or micro * context * env.world
    cfg = o.train_config(context=context, micro_batch=micro, total_batch=total,
                         sample_prompts=tuple(o.sample_prompts or SFT_PROMPTS))
    no_budget = not (cfg.max_steps or cfg.max_tokens or cfg.max_time)
    epochs = o.epochs if o.epochs is not None else (1.0 if no_budget else None)
    if no_budget:
        cfg.max_steps = 1  # for now: the plan below only gives the batch's shape
    plan = make_plan(model, cfg, env.world, env.dtype)
    per_step = micro * plan.n_micro * env.world
    steps_per_epoch = source.steps_per_epoch(per_step)
    if epochs is not None:  # the budget is whichever ends first: the epochs, or the steps/tokens given
        by_epochs = max(1, round(epochs * steps_per_epoch))
        given = None if no_budget else (cfg.max_steps or (-(-cfg.max_tokens // cfg.total_batch)
                                                         if cfg.max_tokens else None))
        cfg.max_steps = min(given or by_epochs, by_epochs)
    plan = make_plan(model, cfg, env.world, env.dtype)
    if state is not None and plan.steps is not None and state["step"] > plan.steps:
        raise UsageError(f"--resume: {out} is at step {state['step']}, past the budget of {plan.steps} steps; "
                         "give a larger budget (--epochs, --max-steps)")

    o.context, o.micro_batch, o.total_batch = context, micro, cfg.total_batch
    extra_config = {"chat_template": TEMPLATE}
    params = {"train": {k: v for k, v in cfg.to_dict().items() if k in o.semantic_names()},
              "epochs": epochs, "lr_frac": o.lr_frac, "train_on": o.train_on, "val_split": o.val_split,
              "tokenizer": tok.fingerprint, "world": env.world, "skip_bad": o.skip_bad}
    inputs = ([o.base] if state is None else []) + list(o.data) + ([o.val] if o.val else [])
    opts = Opts(force=o.force, json=o.json, quiet=o.quiet, verbose=o.verbose)
    run_ = StageRun("sft", STAGE_VERSION, params, inputs, out, opts, binary_output=False, folder=True)

    lines = [f"conversations: {len(convs):,} ({prep.tokens:,} tokens, {prep.supervised:,} supervised) "
             f"in {len(source):,} windows of {context}",
             f"steps: {plan.steps} ({steps_per_epoch} per epoch) of {per_step} windows"]
    if prep.truncated or prep.dropped:
        lines.append(f"longer than the context: {prep.truncated} cut at a turn boundary, "
                     f"{prep.dropped} left out (no assistant message fits)")
    if skipped:
        lines.append("skipped (--skip-bad): " + ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())))
    if added:
        lines.append(f"added to the base model: {' '.join(added)}")
    if o.dry_run:
        print("\n".join(lines + plan.lines() + [f"resume: {n}" for n in notes]))
        env.close()
        return None
    if run_.up_to_date():
        env.close()
        return None
    check_existing(out, o.resume, o.force)
    check_fits(plan, env)

    rep = Reporter("sft", env.master, checkpoint.read_metrics(out) if o.resume else None)
    if state is not None:
        rep.metrics = [m for m in rep.metrics if m.get("step", 0) <= state["step"]]
        rep.line(f"resuming {out} at step {state['step']}" + (": " + ", ".join(notes) if notes else ""))
    for line in lines:
        log(line)
    if prep.dropped:
        warn(f"{prep.dropped} conversation(s) left out: their first assistant message does not fit in "
             f"{context} tokens")
    evaluate_fn = sft_data.chat_val_loss(val, micro, cfg.eval_tokens) if val is not None else None
    torch.manual_seed(o.seed)
    trainer = Trainer(model, cfg, env, source, out, evaluate_fn=evaluate_fn, tokenizer=tok,
                      provenance=run_.provenance, loss_fn=sft_data.sft_loss, stage="sft",
                      extra_config=extra_config, reporter=rep, settings=o.settings(), chat=fmt)
    try:
        summary = trainer.run(state)
    finally:
        env.close()
    if env.master:
        fields = {"steps": summary["steps"], "conversations": len(convs), "supervised_tokens": prep.supervised}
        if summary["loss"] is not None:
            fields["loss"] = round(summary["loss"], 4)
        if summary["val_loss"] is not None:
            fields["val_loss"] = round(summary["val_loss"], 4)
        if prep.truncated:
            fields["truncated"] = prep.truncated
        if prep.dropped:
            fields["too_long"] = prep.dropped
        if skipped:
            fields["skipped"] = sum(skipped.values())
        run_.summary(**fields)
    return summary


def _show_mask(fmt, prep, n: int, n_convs: int, skipped: dict) -> None:
    """N rendered examples, supervised tokens in green, special tokens bold; then the counts."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    tok = fmt.tokenizer
    special = {i: s for s, i in tok.special_tokens.items()}
    for k, ex in enumerate(prep.examples[:n]):
        console.rule(f"example {k + 1}: {len(ex.ids)} tokens, {ex.n_supervised} supervised")
        text = Text()
        run, run_style = [], None
        for t, m in zip(ex.ids, ex.mask):
            style = ("bold " if t in special else "") + ("green" if m else "dim")
            if style != run_style and run:
                text.append(tok.decode(run), style=run_style)
                run = []
            run_style = style
            run.append(t)
        if run:
            text.append(tok.decode(run), style=run_style)
        console.print(text)
    unsup = prep.tokens - prep.supervised
    console.rule()
    console.print(f"{n_convs:,} conversations, {len(prep.examples):,} used: {prep.tokens:,} tokens, "
                  f"{prep.supervised:,} supervised ({100 * prep.supervised / max(prep.tokens, 1):.1f}%), "
                  f"{unsup:,} not; {prep.truncated} cut at a turn boundary, {prep.dropped} too long"
                  + ("; skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items()) if skipped else ""))
