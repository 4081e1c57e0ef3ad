"""Checkpoints: malformed or absurd config.json refused (exit 3) before the model is built;
ordinary file permissions; adding special tokens to a trained model and its tokenizer."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import torch

from llmtool.errors import BadInputError, UsageError
from llmtool.model import checkpoint
from llmtool.model.gpt import GPT, GPTConfig
from llmtool.tokenizer.file import Tokenizer


def _tok() -> Tokenizer:
    """A byte-level tokenizer: 256 byte tokens and <|endoftext|>."""
    return Tokenizer("bytes", r"\S+|\s+", {bytes([i]): i for i in range(256)}, {"<|endoftext|>": 256})


def _model(vocab=257, seed=0) -> GPT:
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=vocab, n_layer=2, n_embd=32, n_head=2, context=32))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


@pytest.fixture
def ck(tmp_path):
    out = tmp_path / "ck"
    checkpoint.save(out, _model(), _tok())
    return out


def _edit(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is ...:
            cfg.pop(k)
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes", [
    {"n_head": 0}, {"n_kv_head": 0}, {"n_layer": "2"}, {"n_layer": None}, {"n_layer": 2.5}, {"n_layer": True},
    {"vocab_size": ...}, {"softcap": float("nan")}, {"context": -1},
])
def test_malformed_config_is_bad_input(ck, changes):
    _edit(ck, **changes)
    with pytest.raises(BadInputError, match="config.json"):
        checkpoint.load_model(ck)


def test_config_that_is_not_an_object(ck):
    (ck / "config.json").write_text("[1, 2]")
    with pytest.raises(BadInputError, match="JSON object"):
        checkpoint.load_model(ck)
    (ck / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(BadInputError, match="unreadable"):
        checkpoint.load_model(ck)


@pytest.mark.parametrize("changes", [
    {"n_layer": 10**6}, {"context": 10**9}, {"vocab_size": 10**12},  # beyond the limits
    {"n_layer": 3}, {"n_embd": 4096, "n_head": 32, "n_kv_head": 32}, {"vocab_size": 100_000},  # not the weights'
])
def test_absurd_or_mismatched_sizes_are_refused_before_building_the_model(ck, changes, monkeypatch):
    _edit(ck, **changes)

    def never(*a, **k):
        raise AssertionError("the model was built from a config that does not match its weights")

    monkeypatch.setattr(checkpoint, "GPT", never)
    t0 = time.perf_counter()
    with pytest.raises(BadInputError) as e:
        checkpoint.load_model(ck)
    assert time.perf_counter() - t0 < 2
    assert "config.json" in str(e.value) and "\n" not in str(e.value)


def test_direct_config_errors_stay_usage_errors():
    with pytest.raises(UsageError):
        GPTConfig(vocab_size=10, n_head=0)
    with pytest.raises(UsageError):
        GPTConfig(vocab_size=10, context=10**9)


def test_param_shapes_are_the_models():
    c = GPTConfig(vocab_size=97, n_layer=3, n_embd=48, n_head=4, n_kv_head=2, context=16, mlp_ratio=3)
    assert c.param_shapes() == {k: tuple(v.shape) for k, v in GPT(c).state_dict().items()}


def test_loaded_model_is_the_saved_one(ck):
    m = _model()
    back = checkpoint.load_model(ck)
    assert all(p.requires_grad for p in back.parameters())
    assert back.blocks[0].attn.c_qkv.weight.muon_split == m.blocks[0].attn.c_qkv.weight.muon_split
    idx = torch.randint(0, 257, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(idx), m(idx), rtol=0, atol=0)


def test_checkpoint_permissions_are_ordinary(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "ck"
        checkpoint.save(out, _model(), _tok(), {"step": 1}, [], {"stage": "test"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_load_refuses_a_tokenizer_that_is_not_the_models(ck):
    checkpoint.load(ck)
    Tokenizer("bytes", r"\S+", {bytes([i]): i for i in range(256)}, {"<|endoftext|>": 256}).save(ck / "tokenizer.json")
    with pytest.raises(BadInputError, match="fingerprint"):
        checkpoint.load(ck)


def test_add_special_tokens_to_a_trained_checkpoint(ck, tmp_path):
    model, tok = checkpoint.load(ck)
    idx = torch.tensor([[256, 10, 20, 30]])
    with torch.no_grad():
        before = model(idx)
    new = checkpoint.add_special_tokens(model, tok, ["<|im_start|>", "<|im_end|>", "<|endoftext|>"])
    assert new.special_tokens == {"<|endoftext|>": 256, "<|im_start|>": 257, "<|im_end|>": 258}
    assert new.fingerprint != tok.fingerprint and model.config.vocab_size == 259
    assert model.wte.weight.shape[0] == model.config.padded_vocab >= 259
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[..., :257], before)  # old tokens unchanged
        mean_e, mean_h = model.wte.weight[:257].mean(0), model.lm_head.weight[:257].mean(0)
        for i in (257, 258):
            torch.testing.assert_close(model.wte.weight[i], mean_e)
            torch.testing.assert_close(model.lm_head.weight[i], mean_h)
    assert checkpoint.add_special_tokens(model, new, ["<|im_end|>"]) is new  # nothing new: no change
    out = tmp_path / "chat"
    checkpoint.save(out, model, new)
    model2, tok2 = checkpoint.load(out)
    assert tok2.special_tokens == new.special_tokens and tok2.fingerprint == new.fingerprint
    assert json.loads((out / "config.json").read_text())["tokenizer_fingerprint"] == new.fingerprint
    assert model2.config.vocab_size == 259


def test_resize_vocab_keeps_tied_weights_tied():
    m = _model(vocab=60)
    m.lm_head.weight = m.wte.weight
    with torch.no_grad():
        m.resize_vocab(63)  # inside the padding (64 rows)
        assert m.lm_head.weight is m.wte.weight
        m.resize_vocab(70)  # past it: new tensors, still one
    assert m.lm_head.weight is m.wte.weight and m.wte.weight.shape[0] == 128
    torch.testing.assert_close(m.wte.weight[65], m.wte.weight[:60].mean(0))
