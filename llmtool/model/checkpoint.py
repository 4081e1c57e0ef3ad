"""Checkpoint folders (DESIGN §2): written whole and atomically, loaded without running code.

    base/
      config.json        architecture (+ what kind of model, the tokenizer's fingerprint)
      model.safetensors  weights (fp32)
      tokenizer.json     the tokenizer file
      train_state.pt     optimizer states, step, RNG, data position: for exact --resume
      metrics.jsonl      one JSON object per logged step / evaluation
      provenance.json    written last: how the folder was made (and whether training finished)

    >>> model, tok = load("base/")          # doctest: +SKIP
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


def _write(folder, model, tokenizer, train_state, metrics, provenance, config, tensors) -> None:
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
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


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise BadInputError(f"{folder}: no such checkpoint folder")
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).exists():
            raise BadInputError(f"{folder}: not a checkpoint (missing {name})")


def read_config(folder) -> dict:
    folder = Path(folder)
    _check_folder(folder)
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BadInputError(f"{folder}/config.json: unreadable ({e})")


def load_tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(Path(folder) / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise BadInputError(f"{folder}/model.safetensors: corrupt or truncated ({e})")


def load_model(folder, device="cpu") -> GPT:
    """The GPT of a checkpoint, in eval mode, on `device` (weights only: never runs code)."""
    cfg = GPTConfig.from_dict(read_config(folder))
    tensors = load_tensors(folder)
    model = GPT(cfg)
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    if missing or any(tensors[k].shape != own[k].shape for k in own):
        raise BadInputError(f"{folder}: weights do not match config.json "
                            f"({'missing ' + missing[0] if missing else 'shape mismatch'})")
    model.load_state_dict({k: tensors[k] for k in own})
    return model.to(device).eval()


def load_tokenizer(folder):
    """The checkpoint's tokenizer (tokenizer.json)."""
    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        raise BadInputError(f"{folder}: the checkpoint has no tokenizer.json")
    from llmtool.tokenizer.file import load_tokenizer as load_tok

    return load_tok(str(path))


def load(folder, device="cpu"):
    """(model, tokenizer) of a checkpoint folder."""
    return load_model(folder, device), load_tokenizer(folder)


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
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def describe(path) -> dict:
    """`llmtool info FOLDER`: architecture, size, training progress, last metrics, lineage."""
    folder = Path(path)
    cfg = read_config(folder)
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
        info["parameters"] = f"{params:,} ({params - V * n_embd:,} without the embedding)"
    except Exception as e:  # a foreign config: still show what we can
        info["architecture"] = f"unrecognised ({e})"
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    info["size_bytes"] = size
    info["files"] = sorted(f.name for f in folder.iterdir() if f.is_file())
    metrics = read_metrics(folder)
    steps = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "val_loss" in m]
    prov = None
    if (folder / "provenance.json").exists():
        try:
            prov = json.loads((folder / "provenance.json").read_text())
        except json.JSONDecodeError:
            prov = None
    if prov:
        info["finished"] = bool(prov.get("complete", True))
    if steps:
        last = steps[-1]
        info["trained"] = f"step {last.get('step')}, {last.get('tokens', 0):,} tokens, loss {last['loss']:.4f}"
    if evals:
        e = evals[-1]
        bpb = f", bits/byte {e['val_bpb']:.4f}" if e.get("val_bpb") is not None else ""
        info["validation"] = f"step {e.get('step')}: loss {e['val_loss']:.4f}{bpb}"
    if (folder / "tokenizer.json").exists():
        try:
            tok = json.loads((folder / "tokenizer.json").read_text())
            info["tokenizer"] = f"{tok.get('name', '?')} (fingerprint {cfg.get('tokenizer_fingerprint', '?')[:12]})"
        except (json.JSONDecodeError, OSError):
            info["tokenizer"] = "unreadable tokenizer.json"
    info["provenance"] = prov
    return info


def is_checkpoint(path) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))
