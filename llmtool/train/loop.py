"""The one training loop of llmtool: pretrain, sft, rm-train and rl differ only in their data
source and loss (`llmtool.train.batch`), never in how a step is taken, logged, checkpointed
or resumed.

    trainer = Trainer(model, TrainConfig(context=256, micro_batch=8, max_steps=100), env,
                      source=TokenWindows("data.bin", 256), out_dir="base/", tokenizer=tok,
                      provenance=run.provenance)
    summary = trainer.run()

A step: the source's `begin_step` (on-policy sources generate with the current weights
there), then for each micro-batch the source's Batch, `loss_fn(model, batch) -> (loss,
metrics)` under autocast and backward (DDP syncs gradients on the last one only),
optional clipping, every optimizer steps, learning rates follow the warmup / constant /
warmdown schedule. The train state holds optimizer moments, step, RNG, elapsed time, the
source's own state and the run's settings, so a resume continues exactly where the
checkpoint left off. SIGINT/SIGTERM finish the current step (saying so at once), write a
checkpoint, and exit 130; a second signal stops at once.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch

from llmtool.errors import BadInputError, LlmtoolError, UsageError
from llmtool.model import checkpoint
from llmtool.train import optim
from llmtool.train.batch import Batch, as_batch, lm_loss
from llmtool.train.device import Env, memory_available
from llmtool.train.errors import about, out_of_memory
from llmtool.train.evaluate import evaluate, token_byte_lengths
from llmtool.train.report import Reporter, fmt_count, fmt_duration

DEFAULT_PROMPTS = ("The", "Once upon a time", "In the beginning")

__all__ = ["Batch", "DEFAULT_PROMPTS", "Plan", "TrainConfig", "Trainer", "check_fits", "check_train_state",
           "lm_loss", "make_plan"]

# config.json's model_kind by the stage that trained it: what `sample`, `chat` and `serve` expect
MODEL_KINDS = {"pretrain": "base", "sft": "chat", "rl": "chat", "rm-train": "reward"}

# names the loop itself records on every logged step: a loss's metrics may not reuse them
_RESERVED = {"step", "tokens", "loss", "lr", "grad_norm", "tok_per_s", "mfu", "elapsed", "time"}


@dataclass
class TrainConfig:
    context: int = 1024
    micro_batch: int = 8             # sequences per forward/backward on one rank
    total_batch: int | None = None   # tokens per optimizer step over all ranks (default: one micro-batch each)
    optimizer: str = "muon"
    matrix_lr: float | None = None
    embedding_lr: float = optim.EMBEDDING_LR
    unembedding_lr: float = optim.UNEMBEDDING_LR
    weight_decay: float = 0.0
    grad_clip: float = 0.0           # 0 = off
    warmup_steps: int = 0
    warmdown: float = 0.2            # share of the run over which the lr decays linearly
    final_lr: float = 0.0            # lr multiplier at the end of the warmdown
    max_steps: int | None = None
    max_tokens: int | None = None
    max_time: float | None = None    # seconds of training (evaluation excluded)
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0              # 0 = at the end only
    eval_tokens: int = 1 << 19
    sample_every: int = 0            # 0 = never during training
    sample_prompts: tuple[str, ...] = DEFAULT_PROMPTS
    sample_tokens: int = 48
    ckpt_every: int = 0              # 0 = at the end (and on a signal) only
    compile: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_prompts"] = list(self.sample_prompts)
        return d


@dataclass
class Plan:
    """What a run will do, before it does it (--dry-run prints this)."""

    params: int
    params_no_embedding: int
    flops_per_token: float
    tokens_per_step: int
    micro_batch: int
    n_micro: int
    world: int
    steps: int | None
    tokens: int | None
    total_flops: float | None
    memory_bytes: int
    notes: list[str] = field(default_factory=list)
    flops_per_second: float | None = None  # an estimate of this machine's training speed, if known

    @property
    def tokens_per_second(self) -> float | None:
        return self.flops_per_second / self.flops_per_token if self.flops_per_second else None

    @property
    def seconds(self) -> float | None:
        """Estimated training time of the step/token budget (None when unknown)."""
        tps = self.tokens_per_second
        return self.tokens / tps if tps and self.tokens else None

    def lines(self) -> list[str]:
        out = [
            f"model: {self.params:,} parameters ({self.params_no_embedding:,} without the embedding), "
            f"{self.flops_per_token / 1e6:,.1f} MFLOPs/token",
            f"batch: {self.tokens_per_step:,} tokens/step = {self.micro_batch} sequences × "
            f"{self.n_micro} micro-steps × {self.world} rank(s)",
            f"budget: {self.steps if self.steps is not None else '?'} steps, "
            f"{fmt_count(self.tokens) if self.tokens else '?'} tokens, "
            f"{self.total_flops:.3g} FLOPs" if self.total_flops else
            f"budget: {self.steps if self.steps is not None else '?'} steps (time-limited)",
            f"memory: ~{self.memory_bytes / 2**30:.2f} GiB per rank (weights, gradients, optimizer, activations)",
        ]
        if self.tokens_per_second:
            took = f"~{fmt_duration(self.seconds)} at " if self.seconds else ""
            out.append(f"time: {took}~{fmt_count(self.tokens_per_second)} tokens/s (estimated)")
        return out + self.notes


def make_plan(model, cfg: TrainConfig, world: int = 1, dtype: str = "fp32") -> Plan:
    c = model.config
    if cfg.context > c.context:
        raise about(UsageError(f"the context ({cfg.context}) is longer than the model's ({c.context})"), "context")
    per_micro = cfg.micro_batch * cfg.context * world
    total = cfg.total_batch or per_micro
    if total % per_micro:
        raise about(UsageError(f"the total batch ({total} tokens) is not a multiple of micro-batch × context × "
                               f"ranks = {cfg.micro_batch} × {cfg.context} × {world} = {per_micro}"),
                    "total_batch", "micro_batch", "context")
    n_micro = total // per_micro
    steps = cfg.max_steps
    if steps is None and cfg.max_tokens:
        steps = -(-cfg.max_tokens // total)
    if steps is None and not cfg.max_time:
        raise about(UsageError("no budget: give a number of steps, of tokens, or a time limit"),
                    "max_steps", "max_tokens", "max_time")
    fpt = model.flops_per_token()
    P = model.num_params()
    # weights + grads + optimizer (Adam 2 moments, Muon 1) in fp32, plus activations of one micro-batch
    opt_bytes = 8 * P if cfg.optimizer == "adamw" else 4 * P + 4 * model.wte.weight.numel()
    act_elem = 2 if dtype == "bf16" else 4
    per_token = c.n_layer * 26 * c.n_embd * act_elem + c.vocab_size * 4 * 3
    mem = 8 * P + opt_bytes + cfg.micro_batch * cfg.context * per_token
    tokens = steps * total if steps is not None else None
    return Plan(P, model.num_params(embedding=False), fpt, total, cfg.micro_batch, n_micro, world, steps,
                tokens, fpt * tokens if tokens else None, int(mem))


def check_fits(plan: Plan, env: Env) -> None:
    free = memory_available(env.device)
    if free is not None and plan.memory_bytes > 0.95 * free:
        raise out_of_memory(env.device, plan.memory_bytes, free)


def check_train_state(state, where="train_state.pt") -> dict:
    """The train state of a checkpoint, checked before use: a damaged or foreign one is bad input
    (exit 3), never a KeyError or TypeError in the middle of a resume."""
    if not isinstance(state, dict):
        raise BadInputError(f"{where}: not a train state (it holds a {type(state).__name__}, not a dict)")
    need = {"step": int, "tokens": int, "elapsed": (int, float), "optimizers": list, "rng": dict}
    for key, kind in need.items():
        if key not in state:
            raise BadInputError(f"{where}: the train state has no {key!r}; it is damaged or was not written "
                                "by llmtool (start the run afresh)")
        if not isinstance(state[key], kind) or (key == "step" and state[key] < 0):
            raise BadInputError(f"{where}: the train state's {key!r} is {state[key]!r}; it is damaged")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise BadInputError(f"{where}: the train state has no torch RNG state; it is damaged")
    for key in ("data", "settings", "train_config"):
        if key in state and not isinstance(state[key], dict):
            raise BadInputError(f"{where}: the train state's {key!r} is not a dict; it is damaged")
    return state


def _loss_and_metrics(out) -> tuple[torch.Tensor, dict]:
    """A loss_fn returns (loss, metrics) or a bare loss."""
    if isinstance(out, tuple):
        loss, metrics = out
        return loss, dict(metrics or {})
    return out, {}


class _LossModule(torch.nn.Module):
    """The loss as a module, so that DDP wraps the whole loss: any loss_fn (hidden states of a
    reward head, several forward passes) runs inside DDP's forward and gets its gradients
    synchronised, extra parameters (a reward head) included."""

    def __init__(self, model, loss_fn: Callable, extra_params: tuple):
        super().__init__()
        self.model = model
        self.extra = torch.nn.ParameterList(extra_params)
        self.loss_fn = loss_fn

    def forward(self, batch: Batch):
        return self.loss_fn(self.model, batch)


class _Stop:
    """SIGINT/SIGTERM during training: say so at once, finish the step, checkpoint, exit 130."""

    def __init__(self, on_first: Callable[[], None] | None = None):
        self.signum = None
        self.on_first = on_first
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        if self.on_first is not None:  # a large step on a CPU takes minutes: don't leave the user guessing
            self.on_first()

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    """Trains `model` on `source` with `loss_fn` (see llmtool.train.batch for the protocols).

    `val` (token windows with `.sequential`) gives the LM validation loss and bits per byte;
    `evaluate_fn(model, env) -> dict` replaces it with a stage's own figures (pairwise
    accuracy of a reward model, say), logged the same way. `extra_params` are trained next
    to the model (AdamW at the head's learning rate); given as a dict {name: Parameter} they
    are also saved in model.safetensors under those names. `settings` (plain values) are
    saved in train_state.pt: a stage reads them back on resume (llmtool.stages.training).
    """

    def __init__(self, model, cfg: TrainConfig, env: Env, source, out_dir, *, val=None,
                 evaluate_fn: Callable | None = None, tokenizer=None, provenance: dict | None = None,
                 loss_fn: Callable = lm_loss, stage: str = "pretrain", extra_config: dict | None = None,
                 extra_params=(), reporter: Reporter | None = None, settings: dict | None = None,
                 chat=None):
        self.model = model
        self.chat = chat  # a ChatFormat: samples are answers to the prompts as user messages
        self.cfg = cfg
        self.env = env
        self.source = source
        self.val = val
        self.evaluate_fn = evaluate_fn
        self.out_dir = out_dir
        self.tokenizer = tokenizer
        self.provenance = provenance or {}
        self.loss_fn = loss_fn
        self.stage = stage
        self.extra_config = extra_config or {}
        self.named_params = dict(extra_params) if isinstance(extra_params, dict) else {}
        self.extra_params = tuple(extra_params.values() if isinstance(extra_params, dict) else extra_params)
        self.settings = dict(settings or {})
        self.report = reporter or Reporter(stage, env.master)
        self.plan = make_plan(model, cfg, env.world, env.dtype)
        self.step = 0
        self.tokens = 0
        self.elapsed = 0.0  # training seconds over all runs (evaluation and checkpoints excluded)
        self._token_bytes = None

    # ---------------------------------------------------------------- state

    def _train_state(self, opts) -> dict:
        st = {
            "step": self.step, "tokens": self.tokens, "elapsed": self.elapsed,
            "optimizers": [o.state_dict() for o in opts],
            "rng": {"torch": torch.get_rng_state()},
            "data": {"seed": self.cfg.seed, "next_step": self.step},
            "train_config": self.cfg.to_dict(), "world": self.env.world, "settings": self.settings,
        }
        if hasattr(self.source, "state_dict"):
            st["data"]["source"] = self.source.state_dict()
        if torch.cuda.is_available():
            st["rng"]["cuda"] = torch.cuda.get_rng_state_all()
        return st

    def _load_state(self, state: dict, opts) -> None:
        check_train_state(state)
        if len(state["optimizers"]) != len(opts):
            raise about(UsageError("the checkpoint was trained with another optimizer; resume with the same "
                                   "one or start afresh"), "optimizer")
        for o, s in zip(opts, state["optimizers"]):
            try:
                o.load_state_dict(s)
            except (ValueError, KeyError, TypeError) as e:
                raise BadInputError(f"the checkpoint's optimizer state does not fit this model ({e})")
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.elapsed = float(state["elapsed"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            try:
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            except RuntimeError:
                pass  # another GPU count: CUDA RNG is not used by training itself
        source_state = state.get("data", {}).get("source")
        if source_state is not None and hasattr(self.source, "load_state_dict"):
            self.source.load_state_dict(source_state)

    def save(self, opts, complete: bool) -> None:
        # never write a checkpoint trained on data that has not been verified yet
        self._check_data(wait=True)
        if not self.env.master:
            return
        prov = dict(self.provenance)
        if not complete:
            # an intermediate checkpoint is never "up to date": only a finished run is
            prov.update(key=None, complete=False)
        prov["step"] = self.step
        checkpoint.save(self.out_dir, self._raw, self.tokenizer, self._train_state(opts), self.report.metrics,
                        prov, {"model_kind": self.stage_kind(), **self.extra_config},
                        self.extra_tensors())

    def stage_kind(self) -> str:
        return MODEL_KINDS.get(self.stage, self.stage)

    def extra_tensors(self) -> dict:
        return dict(self.named_params)

    def _check_data(self, wait: bool = False) -> None:
        for src in (self.source, self.val):
            check = getattr(src, "check", None)
            if check is not None:
                check(wait)

    # ---------------------------------------------------------------- budget

    def progress(self) -> float:
        c = self.cfg
        fr = []
        if self.plan.steps:
            fr.append(self.step / self.plan.steps)
        if c.max_time:
            fr.append(self.elapsed / c.max_time)
        return min(1.0, max(fr)) if fr else 0.0

    def done(self) -> bool:
        if self.plan.steps is not None and self.step >= self.plan.steps:
            return True
        return bool(self.cfg.max_time and self.elapsed >= self.cfg.max_time)

    def eta(self, step_time: float) -> float | None:
        c = self.cfg
        left = []
        if self.plan.steps is not None:
            left.append((self.plan.steps - self.step) * step_time)
        if c.max_time:
            left.append(c.max_time - self.elapsed)
        return max(0.0, min(left)) if left else None

    # ---------------------------------------------------------------- pieces

    def evaluate(self) -> dict | None:
        if self.evaluate_fn is not None:
            return self.evaluate_fn(self._raw, self.env)
        if self.val is None:
            return None
        if self._token_bytes is None and self.tokenizer is not None:
            self._token_bytes = token_byte_lengths(self.tokenizer, self._raw.config.vocab_size)
        batches = self.val.sequential(self.cfg.eval_tokens, self.cfg.micro_batch, self.env.rank, self.env.world)
        return evaluate(self._raw, batches, self.env, self._token_bytes)

    def samples(self) -> None:
        if self.tokenizer is None or not self.env.master or not self.cfg.sample_prompts:
            return
        from llmtool.model.generate import generate

        tok = self.tokenizer
        g = torch.Generator(device=self.env.device).manual_seed(self.cfg.seed)
        stop = (tok.eot_id,) if tok.eot_id is not None else ()
        if self.chat is not None:
            stop = self.chat.stop_ids
        was = self._raw.training
        self._raw.eval()
        for p in self.cfg.sample_prompts:
            if self.chat is not None:
                ids = self.chat.prompt([{"role": "user", "content": p}])
            else:
                ids = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(p)
            out = generate(self._raw, [ids], self.cfg.sample_tokens, temperature=0.8, top_k=50, stop_ids=stop,
                           generator=g, autocast=self.env.autocast)[0]
            text = tok.decode([t for t in out if t not in stop])
            self.report.text(f"  {p!r} -> {text!r}")
        self._raw.train(was)

    # ---------------------------------------------------------------- the loop

    def run(self, resume_state: dict | None = None, stop_at: int | None = None) -> dict:
        """Train until the budget is spent (or `stop_at` steps, for tests); return a summary.

        Running out of memory is an OutOfMemory error (exit 4), like the estimate before the run."""
        try:
            return self._run(resume_state, stop_at)
        except torch.OutOfMemoryError:
            raise out_of_memory(self.env.device) from None
        except MemoryError:
            raise out_of_memory(self.env.device) from None
        except RuntimeError as e:  # the CPU allocator reports a failed allocation as a RuntimeError
            if "DefaultCPUAllocator" in str(e) or "not enough memory" in str(e):
                raise out_of_memory(self.env.device) from None
            raise

    def _run(self, resume_state: dict | None, stop_at: int | None) -> dict:
        env, cfg, plan = self.env, self.cfg, self.plan
        torch.manual_seed(cfg.seed)
        self._raw = self.model.to(env.device)
        self._raw.train()
        opts = optim.build_optimizers(self._raw, cfg.optimizer, cfg.matrix_lr, cfg.embedding_lr,
                                      cfg.unembedding_lr, cfg.weight_decay, extra_params=self.extra_params)
        if resume_state is not None:
            self._load_state(resume_state, opts)
        model = torch.compile(self._raw) if cfg.compile else self._raw
        ddp = None
        if env.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(_LossModule(model, self.loss_fn, self.extra_params),
                      device_ids=[env.device.index] if env.device.type == "cuda" else None)
        begin_step = getattr(self.source, "begin_step", None)
        params = [p for p in self._raw.parameters() if p.requires_grad] + list(self.extra_params)
        peak = env.peak_flops()
        start_step, start_elapsed = self.step, self.elapsed
        last = {"loss": None, "val": None, "metrics": {}}
        t_log, steps_since = time.perf_counter(), 0
        if self.step == 0 and cfg.eval_every:
            last["val"] = self._eval_and_log()
        with _Stop(lambda: self.report.urgent("stopping after this step (Ctrl-C again to stop at once, "
                                              "without a checkpoint)")) as stop:
            while not self.done() and (stop_at is None or self.step < stop_at):
                t0 = time.perf_counter()
                optim.set_lr(opts, optim.lr_multiplier(self.progress(), self.step, cfg.warmup_steps,
                                                       cfg.warmdown, cfg.final_lr),
                             optim.muon_momentum(self.step) if cfg.optimizer == "muon" else None)
                sums: dict[str, torch.Tensor] = {}  # metrics of this step, summed over micro-batches
                if begin_step is not None:  # on-policy: the source sees the current weights
                    self._raw.eval()
                    with torch.no_grad():
                        figures = begin_step(self.step, self._raw, env) or {}
                    self._raw.train()
                    for k, v in figures.items():
                        sums[k] = torch.as_tensor(v, dtype=torch.float32, device=env.device) * plan.n_micro
                loss_sum = torch.zeros((), device=env.device)
                for m in range(plan.n_micro):
                    batch = as_batch(self.source.batch(self.step, m, cfg.micro_batch, plan.n_micro, env.rank,
                                                       env.world, env.device)).to(env.device)
                    sync = nullcontext() if (ddp is None or m == plan.n_micro - 1) else ddp.no_sync()
                    with sync:
                        with env.autocast():
                            loss, metrics = _loss_and_metrics(ddp(batch) if ddp is not None
                                                              else self.loss_fn(model, batch))
                        (loss / plan.n_micro).backward()
                    loss_sum += loss.detach()
                    for k, v in metrics.items():
                        v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                        sums[k] = sums[k] + v if k in sums else torch.as_tensor(v, device=env.device)
                log_now = cfg.log_every and ((self.step + 1) % cfg.log_every == 0 or self.step == start_step)
                gnorm = None
                if cfg.grad_clip > 0:
                    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                elif log_now:
                    gnorm = torch.linalg.vector_norm(
                        torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                for o in opts:
                    o.step()
                for o in opts:
                    o.zero_grad(set_to_none=True)
                self.step += 1
                self.tokens += plan.tokens_per_step
                steps_since += 1
                if log_now:
                    env.synchronize()  # so the step's time is the GPU's, not just the launches'
                now = time.perf_counter()
                self.elapsed += now - t0
                self._check_data()  # a background verification may have found a corrupt file
                # one view of time and signals on every rank: with --max-time, ranks must agree
                # on the last step, or some would wait forever in the next all-reduce
                stopping = self._sync(stop)
                if log_now or self.done():
                    loss_val, figures = self._reduce(loss_sum, sums)
                    if not math.isfinite(loss_val):
                        raise about(LlmtoolError(f"training diverged at step {self.step} (loss {loss_val}); "
                                                 "lower the learning rates or clip the gradient norm (at 1)"),
                                    "matrix_lr", "grad_clip")
                    dt = now - t_log  # since the last log line; evaluations reset t_log
                    tps = steps_since * plan.tokens_per_step / max(dt, 1e-9)
                    mfu = tps * plan.flops_per_token / (peak * env.world) if peak else None
                    lr_now = opts[0].param_groups[0]["lr"] / opts[0].param_groups[0]["initial_lr"]
                    gn = float(gnorm) if gnorm is not None else None
                    self.report.record(step=self.step, tokens=self.tokens, loss=round(loss_val, 6),
                                       lr=round(lr_now, 6), grad_norm=round(gn, 5) if gn is not None else None,
                                       tok_per_s=round(tps, 1), mfu=round(mfu, 4) if mfu else None,
                                       elapsed=round(self.elapsed, 3),
                                       **{k: round(v, 6) for k, v in figures.items()})
                    last["loss"], last["metrics"] = loss_val, figures
                    eta = self.eta(dt / steps_since)
                    total = f"/{plan.steps}" if plan.steps else ""
                    parts = [f"step {self.step}{total}", f"loss {loss_val:.4f}"]
                    parts += [f"{k.replace('_', ' ')} {v:.4g}" for k, v in figures.items()]
                    parts.append(f"lr {lr_now:.2f}")
                    if gn is not None:
                        parts.append(f"grad {gn:.3f}")
                    parts.append(f"{fmt_count(tps)} tok/s")
                    if mfu:
                        parts.append(f"mfu {100 * mfu:.1f}%")
                    parts.append(f"eta {fmt_duration(eta)}")
                    self.report.line(" | ".join(parts))
                    t_log, steps_since = time.perf_counter(), 0
                if cfg.eval_every and self.step % cfg.eval_every == 0 and not self.done():
                    last["val"] = self._eval_and_log()
                    t_log = time.perf_counter()
                if cfg.sample_every and self.step % cfg.sample_every == 0 and not self.done():
                    self.samples()
                    t_log = time.perf_counter()
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and not self.done():
                    self.save(opts, complete=False)
                    env.barrier()
                    t_log = time.perf_counter()
                if stopping:
                    self.save(opts, complete=False)
                    self.report.line(f"interrupted at step {self.step}: checkpoint saved to {self.out_dir}; "
                                     "continue with --resume")
                    raise KeyboardInterrupt
            finished = self.done()
            if self.step > start_step or finished:
                if stop_at is None or finished:
                    last["val"] = self._eval_and_log() or last["val"]
                    if cfg.sample_every:
                        self.samples()
                self.save(opts, complete=finished)
                env.barrier()
        val = last["val"] or {}
        return {"steps": self.step, "tokens": self.tokens, "loss": last["loss"],
                "val_loss": val.get("val_loss"), "val_bpb": val.get("val_bpb"),
                "metrics": last["metrics"], "eval": val,
                "train_seconds": round(self.elapsed, 2),
                "tok_per_s": round((self.step - start_step) * plan.tokens_per_step
                                   / max(self.elapsed - start_elapsed, 1e-9)) if self.step > start_step else None}

    def _reduce(self, loss_sum: torch.Tensor, sums: dict) -> tuple[float, dict]:
        """The step's mean loss and metrics over micro-batches and ranks (one all-reduce)."""
        names = sorted(sums)
        clash = _RESERVED.intersection(names)
        if clash:
            raise ValueError(f"metric names {sorted(clash)} are reserved for the training loop; rename them")
        n = self.plan.n_micro
        vec = torch.stack([loss_sum.float()] + [sums[k].float().reshape(()) for k in names]) / n
        vals = self.env.all_reduce_mean(vec).tolist()
        return vals[0], dict(zip(names, vals[1:]))

    def _sync(self, stop: _Stop) -> bool:
        """Whether to stop for a signal; under DDP also adopt the largest elapsed time of all ranks."""
        flag = stop.signum is not None
        if self.env.ddp:
            t = torch.tensor([1.0 if flag else 0.0, self.elapsed], dtype=torch.float64, device=self.env.device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag, self.elapsed = bool(t[0].item() > 0), float(t[1].item())
        return flag

    def _eval_and_log(self) -> dict | None:
        r = self.evaluate()
        if not r:
            return None
        figures = {k: v for k, v in r.items() if isinstance(v, (int, float)) and v is not None}
        self.report.record(step=self.step, tokens=self.tokens,
                           **{k: round(float(v), 6) for k, v in figures.items() if k != "val_tokens"})
        names = {"val_loss": "val loss", "val_bpb": "bits/byte"}
        parts = [f"step {self.step}"] + [f"{names.get(k, k.replace('_', ' '))} {float(v):.4f}"
                                         for k, v in figures.items() if k != "val_tokens"]
        self.report.line(" | ".join(parts), style="green")
        return r
