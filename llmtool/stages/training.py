"""What every training stage (pretrain, sft, rm-train, rl) shares: its options, declared once,
and the helpers around the Trainer (budget parsing, tokenizer resolution, output naming and
checks, starting from or resuming a checkpoint, flag names in library errors).

Options are a dataclass whose fields carry their command-line metadata. The typer
command, the TrainConfig, the provenance key and what a resume may change all come from
that one declaration, so a new option is one field plus its use:

    @dataclass(kw_only=True)
    class SftOptions(TrainOptions):
        data: str = argument("Conversations (Parquet or JSONL).", path=True)
        base: str = option(..., "--from", semantic=True, help="Checkpoint to start from.")
        matrix_lr: Optional[float] = option(0.002, "--lr", min=0.0, panel=OPTIMIZER, semantic=True,
                                            help="Learning rate of the matrices.")   # another default

    def _sft(o: SftOptions) -> None:
        '''Fine-tune a model on conversations. (the --help text, with examples)'''
        cfg = o.train_config(context=..., micro_batch=...)      # TrainConfig fields by name

    run = command(SftOptions, _sft)                             # what cli.py registers

Field metadata (`option(default, *flags, ...)`):
- `semantic`: the value changes the weights: it goes into the provenance key (when it is a
  TrainConfig field; a stage adds its own, e.g. the model) and a resumed run must keep it;
- `resume`: "fixed" (a resumed run takes the checkpoint's value; giving another is an error)
  or "change" (the new value is applied and said: budgets, logging, device); default: fixed
  for semantic options, change for the rest;
- `parse`: turns the typed text into the value used (`count`: "512k" -> 524288, `duration`);
- `path`: a file, saved as an absolute path so a resume from another folder finds it;
- `saved`: False for options that are not settings of the run (--force, --resume, -o ...).

This module stays light (no torch at import): stages import it at the top.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Optional, get_args, get_type_hints

import typer

from llmtool.errors import BadInputError, LlmtoolError, UsageError
from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt

MODEL = "Model"
BATCH = "Batch and budget"
OPTIMIZER = "Optimizer"
DEVICE = "Device"
LOGGING = "Logging and checkpoints"

BUDGET = ("max_steps", "max_tokens", "max_time")

# ---------------------------------------------------------------- parsing

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}


def count(value, what: str = "count") -> int | None:
    """'512k', '10M', '1.5B', '1e6' or a plain int."""
    if value is None or isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmgbt]?)\s*", str(value).lower())
    if not m:
        raise UsageError(f"{what} {value!r}: expected a count like 524288, 512k, 10M or 1.5B")
    try:
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    except ValueError:
        raise UsageError(f"{what} {value!r}: expected a count like 524288, 512k, 10M or 1.5B")
    if n < 1:
        raise UsageError(f"{what} {value!r}: must be positive")
    return n


def duration(value, what: str = "--max-time") -> float | None:
    """'90', '90s', '5m', '1.5h' -> seconds."""
    if value is None or isinstance(value, (int, float)):
        return value
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|sec|m|min|h|d)?\s*", str(value).lower())
    try:
        seconds = float(m.group(1)) if m else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise UsageError(f"{what} {value!r}: expected a duration like 90s, 5m or 2h")
    if seconds <= 0:
        raise UsageError(f"{what} {value!r}: must be positive")
    return seconds * {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]


parse_count = count  # the names the pretrain recipe used
parse_duration = duration

# ---------------------------------------------------------------- declaring options


def option(default, *flags: str, help: str = "", panel: str | None = None, semantic: bool = False,
           resume: str | None = None, parse=None, path: bool = False, saved: bool = True, same=None, **typer_kw):
    """A dataclass field that is also a command-line option (see the module docstring)."""
    meta = {"typer": typer.Option(*flags, help=help, rich_help_panel=panel, **typer_kw), "flags": flags,
            "semantic": semantic, "resume": resume or ("fixed" if semantic else "change"), "parse": parse,
            "path": path, "saved": saved, "same": same}
    return field(default=default, metadata=meta)


def argument(help: str, *, path: bool = False, semantic: bool = False, same=None, **typer_kw):
    """A required positional argument (a field without a default)."""
    meta = {"typer": typer.Argument(help=help, **typer_kw), "flags": (), "semantic": semantic,
            "resume": "fixed", "parse": None, "path": path, "saved": True, "same": same}
    return field(metadata=meta)


def shared(alias, default):
    """An option of stages/common.py (ForceOpt ...): its typer metadata, not a copy of it."""
    info = get_args(alias)[1]
    # typer.Option("--quiet", "-q") keeps its first flag in `default` until typer reads it
    decls = ((info.default,) if isinstance(info.default, str) else ()) + tuple(info.param_decls or ())
    meta = {"typer": info, "flags": decls, "semantic": False,
            "resume": "change", "parse": None, "path": False, "saved": False, "same": None}
    return field(default=default, metadata=meta)


@dataclass(kw_only=True)
class TrainOptions:
    """The options of every training stage; a stage subclasses it with its own (and may
    redeclare a field to change its default or help)."""

    output: Optional[str] = option(None, "--output", "-o", saved=False,
                                   help="Checkpoint folder to write (default: INPUT.STAGE/ beside the input).")
    micro_batch: Optional[int] = option(
        None, "--micro-batch", min=1, panel=BATCH, semantic=True, resume="change",
        help="Sequences per forward pass and rank (default: 32 on CUDA, 16 elsewhere, less if memory is short).")
    total_batch: Optional[str] = option(
        None, "--total-batch", panel=BATCH, semantic=True, parse=count,
        help="Tokens per optimizer step over all ranks, e.g. 512k (gradient accumulation makes up the "
        "difference; default from --depth on GPUs, one micro-batch on CPUs).")
    max_steps: Optional[int] = option(
        None, "--max-steps", min=1, panel=BATCH, semantic=True, resume="change",
        help="Optimizer steps to train (a budget, like --max-tokens and --max-time; the first one reached "
        "ends the run).")
    max_tokens: Optional[str] = option(
        None, "--max-tokens", panel=BATCH, semantic=True, resume="change", parse=count,
        help="Training tokens, e.g. 200M (default: 20 × parameters, Chinchilla, when no budget is given; "
        "on a CPU at most 30 minutes).")
    max_time: Optional[str] = option(
        None, "--max-time", panel=BATCH, semantic=True, resume="change", parse=duration,
        help="Training time, e.g. 90s, 5m, 2h (evaluation excluded).")
    seed: int = option(0, "--seed", panel=BATCH, semantic=True,
                       help="Seed of the initial weights and of the order of the data.")
    optimizer: str = option("muon", "--optimizer", panel=OPTIMIZER, semantic=True,
                            help="muon (Muon for matrices, AdamW for the rest) or adamw.")
    matrix_lr: Optional[float] = option(None, "--lr", min=0.0, panel=OPTIMIZER, semantic=True,
                                        help="Learning rate of the matrices (default 0.02 Muon, 0.004 AdamW).")
    embedding_lr: float = option(0.2, "--embedding-lr", min=0.0, panel=OPTIMIZER, semantic=True,
                                 help="AdamW lr of the embedding, at width 768.")
    unembedding_lr: float = option(0.004, "--head-lr", min=0.0, panel=OPTIMIZER, semantic=True,
                                   help="AdamW lr of the output head, at width 768.")
    weight_decay: float = option(0.0, "--weight-decay", min=0.0, panel=OPTIMIZER, semantic=True,
                                 help="Weight decay of the matrices.")
    grad_clip: float = option(0.0, "--grad-clip", min=0.0, panel=OPTIMIZER, semantic=True,
                              help="Clip the gradient norm (0 = off).")
    warmup_steps: int = option(0, "--warmup", min=0, panel=OPTIMIZER, semantic=True, help="Warmup steps.")
    warmdown: float = option(0.2, "--warmdown", min=0.0, max=1.0, panel=OPTIMIZER, semantic=True,
                             help="Share of the run with a linearly decaying lr.")
    final_lr: float = option(0.0, "--final-lr", min=0.0, max=1.0, panel=OPTIMIZER, semantic=True,
                             help="lr multiplier reached at the end.")
    device: str = option("auto", "--device", panel=DEVICE, help="auto, cpu, cuda, cuda:N or mps.")
    dtype: str = option("auto", "--dtype", panel=DEVICE,
                        help="auto (bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16.")
    compile: bool = option(False, "--compile", panel=DEVICE, help="torch.compile the model.")
    threads: Optional[int] = option(None, "--threads", min=1, panel=DEVICE,
                                    help="CPU threads for torch (default: all cores).")
    log_every: int = option(10, "--log-every", min=0, panel=LOGGING, help="Print and record every N steps.")
    eval_every: int = option(0, "--eval-every", min=0, panel=LOGGING,
                             help="Validate every N steps (0 = at the end only).")
    eval_tokens: str = option("512k", "--eval-tokens", panel=LOGGING, parse=count,
                              help="Validation tokens per evaluation.")
    sample_every: int = option(0, "--sample-every", min=0, panel=LOGGING,
                               help="Print samples every N steps (0 = never).")
    sample_prompts: Optional[list[str]] = option(None, "--prompt", panel=LOGGING,
                                                 help="Seed prompt for the samples (repeatable).")
    ckpt_every: int = option(0, "--ckpt-every", min=0, panel=LOGGING,
                             help="Checkpoint every N steps (always at the end and on Ctrl-C).")
    resume: bool = option(False, "--resume", panel=LOGGING, saved=False,
                          help="Continue the run in the output folder exactly, with its settings (a longer "
                          "budget, other logging or another device may be given).")
    dry_run: bool = option(False, "--dry-run", saved=False,
                           help="Print the plan (size, tokens, steps, FLOPs, memory, time) and exit without "
                           "training.")
    force: bool = shared(ForceOpt, False)
    json: bool = shared(JsonOpt, False)
    quiet: bool = shared(QuietOpt, False)
    verbose: bool = shared(VerboseOpt, False)
    # which options were given on the command line (None: those that differ from their default)
    given: Optional[frozenset] = field(default=None, repr=False)

    def __post_init__(self):
        if self.given is None:
            self.given = frozenset(f.name for f in option_fields(type(self))
                                   if f.default is MISSING or getattr(self, f.name) != f.default)

    # ------------------------------------------------------------ reading the options

    def parsed(self, name: str):
        """The value of option `name` as the run uses it (counts and durations parsed)."""
        f = _field(type(self), name)
        value = getattr(self, name)
        parse = f.metadata.get("parse")
        return parse(value, flag(type(self), name)) if parse and value is not None else value

    def train_config(self, **resolved):
        """A TrainConfig from the options of the same names (parsed; None keeps TrainConfig's
        default), then `resolved`: the values the stage worked out itself."""
        from llmtool.train.loop import TrainConfig

        mine = {f.name for f in option_fields(type(self))}
        kw = {}
        for f in fields(TrainConfig):
            if f.name in mine and getattr(self, f.name) is not None:
                v = self.parsed(f.name)
                kw[f.name] = tuple(v) if isinstance(v, list) else v
        kw.update(resolved)
        return TrainConfig(**kw)

    def semantic_names(self) -> set[str]:
        return {f.name for f in option_fields(type(self)) if f.metadata["semantic"]}

    def settings(self) -> dict:
        """The run's settings as plain values, for train_state.pt (read back by apply_checkpoint_settings)."""
        out = {}
        for f in option_fields(type(self)):
            if not f.metadata["saved"]:
                continue
            v = self.parsed(f.name)
            if f.metadata["path"] and isinstance(v, str) and v != "-":
                v = os.path.abspath(v)
            elif f.metadata["path"] and isinstance(v, (list, tuple)):  # several inputs (sft DATA...)
                v = [os.path.abspath(x) if isinstance(x, str) and x != "-" else x for x in v]
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def option_fields(cls) -> list:
    return [f for f in fields(cls) if "typer" in f.metadata]


def _field(cls, name: str):
    for f in fields(cls):
        if f.name == name:
            return f
    raise KeyError(name)


def flag(cls, name: str) -> str:
    """The command-line name of option `name` (its first long flag; an argument's upper-case name)."""
    try:
        f = _field(cls, name)
    except KeyError:
        return name
    flags = f.metadata.get("flags") or ()
    return next((x for x in flags if x.startswith("--")), flags[0] if flags else name.upper())


# ---------------------------------------------------------------- the typer command


def command(options_cls, fn):
    """The typer command of a stage: one parameter per option field (stage's own fields first,
    then the shared ones), calling `fn(options)`; `fn`'s docstring is the help."""
    hints = get_type_hints(options_cls)
    own = set(options_cls.__dict__.get("__annotations__", {}))
    ordered = sorted(option_fields(options_cls), key=lambda f: f.name not in own)  # stable sort
    # typer passes its context to a parameter annotated typer.Context: it says which options were typed
    params = [inspect.Parameter("typer_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    for f in ordered:
        default = inspect.Parameter.empty if f.default is MISSING else f.default
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[hints[f.name], f.metadata["typer"]]))

    def run(typer_context: typer.Context | None = None, **kw: Any) -> None:
        given = None
        if typer_context is not None:
            sources = {k: typer_context.get_parameter_source(k) for k in kw}
            given = frozenset(k for k, src in sources.items()
                              if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT"))
        return fn(options_cls(**kw, given=given))

    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {}
    run.__doc__ = fn.__doc__
    run.__name__ = fn.__name__.lstrip("_")
    run.__module__ = fn.__module__
    return run


# ---------------------------------------------------------------- errors with flag names


@contextmanager
def flag_errors(options_cls):
    """Library errors tagged with the settings they concern (llmtool.train.errors.about) get the
    stage's flag names appended: '...; lower the micro-batch ... (see --micro-batch, --context)'."""
    try:
        yield
    except LlmtoolError as e:
        tags = getattr(e, "settings", ())
        names = {f.name for f in option_fields(options_cls)}
        flags = [flag(options_cls, t) for t in tags if t in names]
        if not flags:
            raise
        new = type(e)(f"{e} (see {', '.join(flags)})")
        new.settings = ()
        raise new from None


# ---------------------------------------------------------------- outputs


def default_output(source: str, stage: str) -> str:
    """INPUT.STAGE beside the input (data.bin -> data.pretrain/, base/ -> base.sft/), or in the
    current folder when the input's folder is not writable."""
    from llmtool.io.run import strip_suffix

    p = Path(str(source).rstrip("/") or ".")
    folder = p.parent if os.access(p.parent, os.W_OK) else Path(".")
    return str(folder / f"{strip_suffix(p.name)}.{stage}")


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
        if resume:
            raise UsageError(f"--resume: {out} is not a checkpoint folder (nothing to resume)")
        if any(p.iterdir()):
            raise UsageError(f"{out} is a non-empty folder that is not a checkpoint; refusing to replace it")
        return
    if resume or force:
        return
    prov = {}
    if (p / "provenance.json").exists():
        try:
            prov = json.loads((p / "provenance.json").read_bytes())
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            prov = {}
    if not isinstance(prov, dict):
        prov = {}
    if prov.get("complete", True) is False:
        raise UsageError(f"{out} holds an unfinished run (step {prov.get('step', '?')}); continue it with "
                         "--resume, or start over with --force")
    raise UsageError(f"{out} holds a model trained with other settings or data; replace it with --force "
                     "or choose another -o")


# ---------------------------------------------------------------- tokenizer


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
    check_vocab(tf, tok, data_path)
    return tok


def check_vocab(tf, tok, data_path: str) -> None:
    """The token file must be made with `tok` and fit its vocabulary."""
    tf.check_tokenizer(tok.fingerprint, f"tokenizer {tok.name}")
    if tf.header.vocab_size > tok.vocab_size:
        raise BadInputError(f"{data_path}: vocab size {tf.header.vocab_size} is larger than tokenizer "
                            f"{tok.name}'s ({tok.vocab_size}); retokenize or pass the matching --tokenizer")


# ---------------------------------------------------------------- checkpoints as a start


def resume_state(folder) -> dict:
    """The train state of a checkpoint, checked: a damaged one is one line, exit 3."""
    from llmtool.model import checkpoint
    from llmtool.train.loop import check_train_state

    return check_train_state(checkpoint.load_train_state(folder), f"{folder}/train_state.pt")


@dataclass
class Start:
    """A checkpoint as the start of a new run (sft from base/, rl from sft/)."""

    folder: str
    model: Any
    tokenizer: Any
    config: dict                 # config.json: architecture, model kind, tokenizer fingerprint
    train_config: dict           # the TrainConfig it was trained with ({} if unknown)
    settings: dict               # its stage's options ({} if unknown)
    step: int | None = None
    added: list = field(default_factory=list)  # special tokens added by start_chat
    chat: Any = None                           # its ChatFormat (start_chat)


def start_from(folder, device="cpu") -> Start:
    """Load a checkpoint's model (train mode), tokenizer and training configuration."""
    from llmtool.model import checkpoint

    cfg = checkpoint.read_config(folder)
    tok = checkpoint.load_tokenizer(folder)
    fp = cfg.get("tokenizer_fingerprint")
    if fp and fp[:32] != tok.fingerprint[:32]:
        raise BadInputError(f"{folder}: tokenizer.json is not the tokenizer the model was trained with")
    model = checkpoint.load_model(folder, device).train()
    state = resume_state(folder) if (Path(folder) / "train_state.pt").exists() else {}
    return Start(str(folder), model, tok, cfg, dict(state.get("train_config") or {}),
                 dict(state.get("settings") or {}), state.get("step"))


def start_chat(folder, device="cpu") -> Start:
    """`start_from`, with the chat tokens (llmtool.tokenizer.chat) on the model and tokenizer:
    a base model gets them added (embedding and head grow; new rows at the mean row) and
    `start.added` lists them; a model that has them keeps its ids. `start.chat` renders."""
    from llmtool.model import checkpoint
    from llmtool.tokenizer.chat import CHAT_TOKENS, ChatFormat

    s = start_from(folder, device)
    before = set(s.tokenizer.special_tokens)
    s.tokenizer = checkpoint.add_special_tokens(s.model, s.tokenizer, list(CHAT_TOKENS))
    s.added = [t for t in CHAT_TOKENS if t not in before]
    s.chat = ChatFormat(s.tokenizer)
    return s


def checkpoint_settings(options_cls, state: dict) -> dict:
    """A train state's saved settings; a checkpoint from before they were saved gives the
    TrainConfig fields that are options of this stage."""
    if state.get("settings"):
        return dict(state["settings"])
    names = {f.name for f in option_fields(options_cls) if f.metadata["saved"]}
    return {k: v for k, v in (state.get("train_config") or {}).items() if k in names}


def apply_checkpoint_settings(o: TrainOptions, saved: dict) -> list[str]:
    """A resumed run takes its settings from the checkpoint. An option given again with another
    value is an error when the option is `fixed`, and is applied (and listed in the returned
    notes) when it may `change`. A budget given anew replaces the whole saved budget."""
    cls = type(o)
    new_budget = any(b in o.given for b in BUDGET)
    notes = []
    for f in option_fields(cls):
        name = f.name
        if not f.metadata["saved"] or name not in saved:
            continue
        old = saved[name]
        if name not in o.given:
            if new_budget and name in BUDGET:
                setattr(o, name, None)
            else:
                setattr(o, name, old)
            continue
        new = o.parsed(name)
        if _same(f, new, old):
            continue
        shown = f"{flag(cls, name)} {_show(new)}"
        if f.metadata["resume"] == "fixed":
            raise UsageError(f"--resume: {shown} contradicts the checkpoint, which was trained with "
                             f"{_show(old)}; leave it out to continue the run as it was, or start a new run "
                             "(another -o, or --force)")
        notes.append(f"{shown} (the checkpoint had {_show(old)})")
    return notes


def _same(f, new, old) -> bool:
    if f.metadata["path"] and isinstance(new, str) and isinstance(old, str):
        if os.path.realpath(new) == os.path.realpath(old):
            return True
        same = f.metadata.get("same")
        return bool(same and same(new, old))
    if isinstance(new, (list, tuple)) or isinstance(old, (list, tuple)):
        if f.metadata["path"]:
            new, old = ([os.path.realpath(x) for x in v or []] for v in (new, old))
        return list(new or []) == list(old or [])
    if isinstance(new, float) or isinstance(old, float):
        return new is not None and old is not None and math.isclose(new, old, rel_tol=1e-12)
    return new == old


def _show(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v)) or "none"
    return str(v)
