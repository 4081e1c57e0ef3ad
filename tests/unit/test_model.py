"""The GPT: rotary, attention, soft-cap and KV cache against straightforward references; checkpoints."""

from __future__ import annotations

import json
import math
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmtool.errors import BadInputError, UsageError
from llmtool.model import checkpoint
from llmtool.model.generate import KVCache
from llmtool.model.gpt import GPT, GPTConfig, SoftCap, apply_rotary, rms_norm, rotary_tables


def _model(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=97, n_layer=2, n_embd=32, n_head=4, n_kv_head=4, context=24)
    cfg.update(kw)
    m = GPT(GPTConfig(**cfg))
    with torch.no_grad():  # the real init zeroes the output layers: randomise so tests see signal
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m.eval()


def test_from_depth_follows_nanochat_sizing():
    c = GPTConfig.from_depth(20, vocab_size=65536, context=2048)
    assert (c.n_layer, c.n_embd, c.n_head, c.head_dim) == (20, 1280, 10, 128)
    c = GPTConfig.from_depth(2, vocab_size=1000)
    assert c.n_embd == 128 and c.n_embd % c.n_head == 0
    assert c.padded_vocab == 1024 and GPTConfig.from_dict(c.to_dict()) == c


def test_bad_configs_are_usage_errors():
    with pytest.raises(UsageError):
        GPTConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(UsageError):
        GPTConfig(vocab_size=10, n_embd=32, n_head=4, n_kv_head=3)
    with pytest.raises(BadInputError):
        GPTConfig.from_dict({"architecture": "llama", "vocab_size": 10})


def test_rotary_matches_explicit_rotation_and_real_path():
    T, H, D = 7, 2, 8
    x = torch.randn(1, T, H, D)
    rot = rotary_tables(T, D, 10000.0)
    got = apply_rotary(x, rot)
    # reference: rotate each pair (x[2i], x[2i+1]) by angle pos * base^(-2i/D)
    ref = np.empty_like(x.numpy())
    xn = x.numpy()
    for t in range(T):
        for i in range(D // 2):
            a = t * 10000.0 ** (-2 * i / D)
            c, s = math.cos(a), math.sin(a)
            x0, x1 = xn[0, t, :, 2 * i], xn[0, t, :, 2 * i + 1]
            ref[0, t, :, 2 * i] = x0 * c - x1 * s
            ref[0, t, :, 2 * i + 1] = x0 * s + x1 * c
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)
    with mock.patch.object(torch.compiler, "is_compiling", return_value=True):
        real = apply_rotary(x, rot)
    torch.testing.assert_close(real, got)
    # relative positions: <rot(q, m), rot(k, n)> depends only on m - n
    q, k = torch.randn(D), torch.randn(D)
    def dot(m, n):
        qs = apply_rotary(q.expand(1, T, 1, D).contiguous(), rot)[0, m, 0]
        ks = apply_rotary(k.expand(1, T, 1, D).contiguous(), rot)[0, n, 0]
        return float(qs @ ks)
    assert dot(5, 3) == pytest.approx(dot(3, 1), abs=1e-4)


def _reference_forward(m: GPT, idx: torch.Tensor) -> torch.Tensor:
    """The same network written out with explicit softmax attention, per head, no SDPA."""
    c = m.config
    B, T = idx.shape
    rot = m.rot[:T]
    x = rms_norm(m.wte.weight[idx])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for blk in m.blocks:
        a = blk.attn
        h = rms_norm(x)
        qkv = h @ a.c_qkv.weight.T
        H, Hkv, D = c.n_head, c.n_kv_head, c.head_dim
        q = qkv[..., : H * D].view(B, T, H, D)
        k = qkv[..., H * D:(H + Hkv) * D].view(B, T, Hkv, D)
        v = qkv[..., (H + Hkv) * D:].view(B, T, Hkv, D)
        q, k = rms_norm(apply_rotary(q, rot)), rms_norm(apply_rotary(k, rot))
        out = torch.empty(B, T, H, D)
        for head in range(H):
            kv = head // (H // Hkv)
            s = q[:, :, head] @ k[:, :, kv].transpose(1, 2) / math.sqrt(D)
            s = s.masked_fill(~causal, float("-inf"))
            out[:, :, head] = s.softmax(-1) @ v[:, :, kv]
        x = x + out.reshape(B, T, -1) @ a.c_proj.weight.T
        x = x + (F.relu(rms_norm(x) @ blk.mlp.c_fc.weight.T) ** 2) @ blk.mlp.c_proj.weight.T
    logits = rms_norm(x) @ m.lm_head.weight.T
    logits = logits[..., : c.vocab_size]
    return c.softcap * torch.tanh(logits / c.softcap)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_forward_matches_reference_incl_gqa(kv_heads):
    m = _model(n_kv_head=kv_heads)
    idx = torch.randint(0, 97, (2, 11))
    torch.testing.assert_close(m(idx), _reference_forward(m, idx), atol=1e-4, rtol=1e-4)


def test_loss_is_cross_entropy_and_ignores_minus_one():
    m = _model()
    idx = torch.randint(0, 97, (2, 9))
    tgt = torch.randint(0, 97, (2, 9))
    tgt[0, :4] = -1
    logits = m(idx)
    keep = tgt.view(-1) >= 0
    ref = F.cross_entropy(logits.view(-1, 97)[keep], tgt.view(-1)[keep])
    torch.testing.assert_close(m(idx, tgt), ref)


def test_softcap_gradient():
    x = torch.randn(5, 7, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: SoftCap.apply(t, 3.0), (x,))
    torch.testing.assert_close(SoftCap.apply(x, 3.0), 3.0 * torch.tanh(x / 3.0))


def test_kv_cache_decoding_matches_full_forward():
    m = _model(n_kv_head=2)
    idx = torch.randint(0, 97, (3, 20))
    full = m(idx)
    cache = KVCache.for_model(m, 3)
    parts = [m(idx[:, :6], cache=cache)]            # prefill
    parts += [m(idx[:, t:t + 1], cache=cache) for t in range(6, 12)]  # one token at a time
    parts.append(m(idx[:, 12:], cache=cache))       # a chunk after a prefix (masked)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)


def test_context_overflow_is_refused():
    m = _model()
    with pytest.raises(UsageError):
        m(torch.zeros(1, 25, dtype=torch.long))


def test_flops_and_params():
    m = GPT(GPTConfig.from_depth(2, vocab_size=1000, context=64))
    c = m.config
    assert m.num_params() == sum(p.numel() for p in m.parameters())
    assert m.flops_per_token() == 6 * (m.num_params() - c.padded_vocab * c.n_embd) + 12 * 2 * c.n_head * c.head_dim * 64


class _Tok:
    """The part of the Tokenizer interface a checkpoint uses."""
    name = "toy"
    fingerprint = "ab" * 16

    def save(self, path):
        path.write_text(json.dumps({"name": self.name}))


def test_checkpoint_round_trip(tmp_path):
    m = _model(n_kv_head=2)
    out = tmp_path / "ck"
    checkpoint.save(out, m, _Tok(), {"step": 3}, [{"step": 1, "loss": 2.5, "tokens": 10}],
                    {"stage": "pretrain", "key": "k"})
    assert sorted(p.name for p in out.iterdir()) == sorted(checkpoint.FILES)
    back = checkpoint.load_model(out)
    assert back.config == m.config
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    idx = torch.randint(0, 97, (1, 8))
    assert torch.equal(back(idx), m(idx))
    assert checkpoint.load_train_state(out) == {"step": 3}
    info = checkpoint.describe(out)
    assert "2 layers" in info["architecture"] and info["trained"]["loss"] == 2.5
    assert info["parameters"] == m.num_params()  # numbers, not display strings (info --json)
    assert json.loads((out / "config.json").read_text())["tokenizer_fingerprint"] == "ab" * 16


def test_checkpoint_corruption_is_bad_input(tmp_path):
    m = _model()
    out = tmp_path / "ck"
    checkpoint.save(out, m)
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError):
        checkpoint.load_model(out)
    with pytest.raises(BadInputError):
        checkpoint.load_model(tmp_path / "missing")
    cfg = json.loads((out / "config.json").read_text())
    cfg["n_layer"] = 3
    checkpoint.save(tmp_path / "ck2", m)
    (tmp_path / "ck2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInputError):
        checkpoint.load_model(tmp_path / "ck2")


@pytest.mark.parametrize("cap", [15.0, 0.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_softcap_cross_entropy_matches_autograd(cap, reduction):
    from llmtool.model.gpt import SoftCapCrossEntropy

    torch.manual_seed(0)
    logits = (torch.randn(37, 53, dtype=torch.double) * 20).requires_grad_()
    tgt = torch.randint(0, 53, (37,))
    tgt[::5] = -1
    ref_in = logits.detach().clone().requires_grad_()
    z = cap * torch.tanh(ref_in / cap) if cap else ref_in
    ref = F.cross_entropy(z, tgt, ignore_index=-1, reduction=reduction)
    got = SoftCapCrossEntropy.apply(logits, tgt, cap, reduction)
    torch.testing.assert_close(got, ref)
    g = torch.randn_like(ref)
    (ref * g).sum().backward()
    (got * g).sum().backward()
    torch.testing.assert_close(logits.grad, ref_in.grad)


def test_rms_norm_matches_torch():
    x = torch.randn(4, 9, 16, requires_grad=True)
    y = rms_norm(x)
    x2 = x.detach().clone().requires_grad_()
    ref = F.rms_norm(x2, (16,), eps=1e-6)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    y.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad)


def test_relu_squared_gradient():
    from llmtool.model.gpt import relu_squared

    x = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(relu_squared, (x,))
    torch.testing.assert_close(relu_squared(x), F.relu(x) ** 2)


def test_compiled_paths_give_the_same_loss():
    """The branches taken under torch.compile (real-valued RoPE, autograd soft-cap) match eager."""
    m = _model(n_kv_head=2)
    idx, tgt = torch.randint(0, 97, (2, 10)), torch.randint(0, 97, (2, 10))
    eager = m(idx, tgt)
    with mock.patch.object(torch.compiler, "is_compiling", return_value=True):
        other = m(idx, tgt)
    torch.testing.assert_close(other, eager)


def test_resize_vocab_keeps_old_tokens():
    m = _model()
    idx = torch.randint(0, 97, (1, 6))
    before = m(idx)
    m.resize_vocab(130)  # past the padded 128 rows: new tensors
    assert m.wte.weight.shape[0] == 192 and m.config.vocab_size == 130
    after = m(idx)
    torch.testing.assert_close(after[..., :97], before)
    torch.testing.assert_close(m.wte.weight[120], m.wte.weight[:97].mean(0))
    m.resize_vocab(131)  # inside the padding: same tensors
    assert m(torch.tensor([[130]])).shape[-1] == 131
    with pytest.raises(UsageError):
        m.resize_vocab(10)
