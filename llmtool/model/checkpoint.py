"""Checkpoint folders (docs/design.md §2): written whole and atomically, loaded without running code.

    base/
      config.json        architecture (+ what kind of model, the tokenizer's fingerprint)
      model.safetensors  weights (fp32)
      tokenizer.json     the tokenizer file
      train_state.pt     optimizer states, step, RNG, data position: for exact --resume
      metrics.jsonl      one JSON object per logged step / evaluation
      provenance.json    written last: how the folder was made (and whether training finished)

    >>> model, tok = load("base/")          # doctest: +SKIP
    >>> chat_tok = add_special_tokens(model, tok, ["<|im_start|>", "<|im_end|>"])  # doctest: +SKIP
    >>> save("chat/", model, chat_tok)      # doctest: +SKIP

Loading never trusts config.json: its values are type- and range-checked, and the weights
file's table of contents must match it, before anything the size of the model is allocated.
The folder and its files get ordinary permissions (0755 / 0644 under the usual umask).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from llmtool.errors import BadInputError, LlmtoolError
from llmtool.io.atomic import atomic_dir
from llmtool.model.gpt import GPT, GPTConfig

FILES = ("config.json", "model.safetensors", "tokenizer.json", "train_state.pt", "metrics.jsonl",
         "provenance.json")


def save(folder, model: GPT, tokenizer=None, train_state: dict | None = None,
         metrics: list[dict] | None = None, provenance: dict | None = None,
         extra_config: dict | None = None, extra_tensors: dict | None = None) -> Path:
    """Write the whole folder; the old one (if any) stays complete until the rename."""
    folder = Path(folder)
    config = {**model.config.to_dict(), **(extra_config or {})}
    if tokenizer is not None:
        config.setdefault("tokenizer_fingerprint", tokenizer.fingerprint)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().contiguous().cpu() for k, v in (extra_tensors or {}).items()})
    try:
        _write(folder, model, tokenizer, train_state, metrics, provenance, config, tensors)
    except OSError as e:
        raise LlmtoolError(f"cannot write the checkpoint {folder}: {e.strerror or e} "
                           "(check the space and permissions there, or choose another -o)")
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(folder, model, tokenizer, train_state, metrics, provenance, config, tensors) -> None:
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        # the temporary folder is made 0700 and safetensors writes 0600: give the checkpoint
        # the permissions of every other output, before it is renamed into place
        os.chmod(tmp, 0o777 & ~_umask())
        (tmp / "config.json").write_text(json.dumps(config, indent=1) + "\n")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "producer": "llmtool"})
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer.json")
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        with open(tmp / "metrics.jsonl", "w") as f:
            for m in metrics or []:
                f.write(json.dumps(m) + "\n")
        if provenance is not None:  # last: its presence marks a finished write
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1, default=str) + "\n")
        for f in tmp.iterdir():
            if f.is_file():
                os.chmod(f, 0o666 & ~_umask())


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise BadInputError(f"{folder}: no such checkpoint folder")
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).exists():
            raise BadInputError(f"{folder}: not a checkpoint (missing {name})")


def read_config(folder) -> dict:
    """config.json as a dict (not yet checked: `config` does that)."""
    folder = Path(folder)
    _check_folder(folder)
    try:
        d = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or bad UTF-8
        raise BadInputError(f"{folder}/config.json: unreadable ({' '.join(str(e).split())[:200]})")
    if not isinstance(d, dict):
        raise BadInputError(f"{folder}/config.json: expected a JSON object, not {type(d).__name__}")
    return d


def config(folder) -> GPTConfig:
    """The checked architecture of a checkpoint: bad types or absurd sizes are bad input."""
    try:
        return GPTConfig.from_dict(read_config(folder))
    except BadInputError as e:
        msg = str(e)
        raise BadInputError(f"{folder}/{msg}" if msg.startswith("config.json") else msg)


def check_weights(folder, cfg: GPTConfig) -> None:
    """The weights file's table of contents (read from its header, not its data) must match
    the config: a config.json claiming 10⁶ layers fails here, not after allocating them."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / "model.safetensors"
    try:
        with safe_open(str(path), "pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise BadInputError(f"{path}: corrupt or truncated ({' '.join(str(e).split())[:200]})")
    for name, shape in cfg.param_shapes().items():
        if have.get(name) != shape:
            found = "missing" if name not in have else f"{list(have[name])}"
            raise BadInputError(f"{folder}: weights do not match config.json ({name}: {found} in "
                                f"model.safetensors, {list(shape)} by config.json)")


def load_tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(Path(folder) / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise BadInputError(f"{folder}/model.safetensors: corrupt or truncated ({e})")


def load_model(folder, device="cpu") -> GPT:
    """The GPT of a checkpoint, in eval mode, on `device` (weights only: never runs code)."""
    from llmtool.model.gpt import rotary_tables

    cfg = config(folder)
    check_weights(folder, cfg)
    tensors = load_tensors(folder)
    with torch.device("meta"):  # no time spent on a random init of weights about to be replaced
        model = GPT(cfg)
    # moving off the meta device makes new Parameters: keep the attributes the model set on
    # its own (Muon's muon_split on the fused q|k|v matrices)
    extras = {n: dict(p.__dict__) for n, p in model.named_parameters() if p.__dict__}
    model.load_state_dict({k: tensors[k] for k in cfg.param_shapes()}, assign=True)
    for n, p in model.named_parameters():
        p.__dict__.update(extras.get(n, {}))
    model.register_buffer("rot", rotary_tables(cfg.context, cfg.head_dim, cfg.rope_base), persistent=False)
    return model.to(device).eval()


def load_tokenizer(folder):
    """The checkpoint's tokenizer (tokenizer.json)."""
    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        raise BadInputError(f"{folder}: the checkpoint has no tokenizer.json")
    from llmtool.tokenizer.file import load_tokenizer as load_tok

    return load_tok(str(path))


def load(folder, device="cpu"):
    """(model, tokenizer) of a checkpoint folder; they must belong together."""
    tok = load_tokenizer(folder)
    cfg = config(folder)
    want = read_config(folder).get("tokenizer_fingerprint")
    if isinstance(want, str) and want and want != tok.fingerprint:
        raise BadInputError(f"{folder}: tokenizer.json is not the tokenizer the model was trained with "
                            "(its fingerprint differs from config.json's)")
    if tok.vocab_size > cfg.vocab_size:
        raise BadInputError(f"{folder}: tokenizer.json has {tok.vocab_size} tokens but the model only "
                            f"{cfg.vocab_size}")
    return load_model(folder, device), tok


def add_special_tokens(model: GPT, tokenizer, names: list[str]):
    """Give a trained model and its tokenizer new special tokens (sft's chat markers).

    Returns the extended tokenizer (new fingerprint; names it already has keep their ids).
    The model's embedding and output rows grow in place to the new vocabulary (tied weights
    stay tied); each new token's rows start at the mean of the existing tokens' rows, an
    "average" token rather than noise. Build optimizers after this; `save` then writes the
    new tokenizer.json and its fingerprint into config.json.
    """
    from llmtool.tokenizer.file import add_special_tokens as extend

    new_tok = extend(tokenizer, list(names))
    added = sorted(i for n, i in new_tok.special_tokens.items() if n not in tokenizer.special_tokens)
    if not added:
        return new_tok
    old = tokenizer.vocab_size
    model.resize_vocab(max(model.config.vocab_size, new_tok.vocab_size))
    with torch.no_grad():  # ids the model already had rows for (unused ones) start at the mean too
        for w in {id(p): p for p in (model.wte.weight, model.lm_head.weight)}.values():
            w[added] = w[:old].mean(0)
    return new_tok


def load_train_state(folder) -> dict:
    path = Path(folder) / "train_state.pt"
    if not path.exists():
        raise BadInputError(f"{folder}: no train_state.pt to resume from (was it written by llmtool?)")
    try:
        # weights_only: a checkpoint never executes code when loaded
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadInputError(f"{path}: unreadable train state ({type(e).__name__}: {e})")


def read_metrics(folder) -> list[dict]:
    path = Path(folder) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    # A damaged line (bad JSON or UTF-8, absurd nesting, not an object) is skipped: metrics are a
    # record of the run, and resume must not fail on a hand-edited or cut-off log line.
    for line in path.read_bytes().splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # ValueError covers bad UTF-8 too
                continue
            if isinstance(row, dict):
                out.append(row)
    return out


def describe(path) -> dict:
    """`llmtool info FOLDER`: architecture, size, training progress, last metrics, lineage.

    Numbers stay numbers (for `info --json`); hand-edited files with wrong types show as
    unknown values rather than crashing, and a truncated model.safetensors means the
    checkpoint is not finished, whatever provenance.json says.
    """
    from numbers import Real

    def num(v):
        return v if isinstance(v, Real) and not isinstance(v, bool) else None

    def read_json(name: str):
        try:
            return json.loads((folder / name).read_text())
        except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or bad UTF-8
            return None

    def weights_problem() -> str | None:
        """Why model.safetensors cannot be whole: its header promises more bytes than it has."""
        f = folder / "model.safetensors"
        try:
            size = f.stat().st_size
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if size < 8 + n:
                    return f"model.safetensors is truncated ({size} bytes)"
                header = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (OSError, ValueError, RecursionError, TypeError, KeyError, IndexError, AttributeError):
            return "model.safetensors is unreadable"
        expected = 8 + n + max(ends, default=0)
        if size != expected:
            return f"model.safetensors is truncated or corrupt ({size} bytes, its header promises {expected})"
        return None

    folder = Path(path)
    cfg = read_config(folder)
    if not isinstance(cfg, dict):
        raise BadInputError(f"{folder}/config.json: not a JSON object")
    info: dict = {"kind": f"checkpoint ({cfg.get('model_kind', 'base')})", "path": str(folder)}
    try:
        gc = GPTConfig.from_dict(cfg)
        # count from the config rather than building the model: info stays instant
        n_embd, V, L = gc.n_embd, gc.padded_vocab, gc.n_layer
        kv = gc.n_kv_head * gc.head_dim
        per_layer = n_embd * n_embd * 2 + 2 * n_embd * kv + 2 * gc.mlp_ratio * n_embd * n_embd
        params = 2 * V * n_embd + L * per_layer
        info["architecture"] = (f"{L} layers, width {n_embd}, {gc.n_head} heads "
                                f"({gc.n_kv_head} kv), context {gc.context}, vocab {gc.vocab_size}")
        info["parameters"] = int(params)
        info["parameters_without_embedding"] = int(params - V * n_embd)
    except Exception as e:  # a foreign config: still show what we can
        info["architecture"] = f"unrecognised ({' '.join(str(e).split())})"
    files = [f for f in folder.iterdir() if f.is_file()]
    info["size_bytes"] = sum(f.stat().st_size for f in files)
    info["files"] = sorted(f.name for f in files)
    try:
        metrics = [m for m in read_metrics(folder) if isinstance(m, dict)]
    except (OSError, ValueError, RecursionError):
        metrics = []
    steps = [m for m in metrics if num(m.get("loss")) is not None]
    evals = [m for m in metrics if num(m.get("val_loss")) is not None]
    prov = read_json("provenance.json") if (folder / "provenance.json").exists() else None
    prov = prov if isinstance(prov, dict) else None
    broken = weights_problem()
    if prov or broken:
        info["finished"] = bool(prov.get("complete", True)) and not broken if prov else False
    if broken:
        info["problem"] = broken
    if steps:
        last = steps[-1]
        info["trained"] = {"step": num(last.get("step")), "tokens": num(last.get("tokens")), "loss": last["loss"]}
    if evals:
        e = evals[-1]
        info["validation"] = {"step": num(e.get("step")), "loss": e["val_loss"], "bits_per_byte": num(e.get("val_bpb"))}
    if (folder / "tokenizer.json").exists():
        tok = read_json("tokenizer.json")
        if isinstance(tok, dict):
            info["tokenizer"] = {"name": str(tok.get("name", "?")),
                                 "fingerprint": str(cfg.get("tokenizer_fingerprint", "?"))}
        else:
            info["tokenizer"] = "unreadable tokenizer.json"
    info["provenance"] = prov
    return info


def is_checkpoint(path) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))
