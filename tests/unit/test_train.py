"""The training loop: schedule, Muon, the token-window loader, bits per byte, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llmtool.errors import BadInputError, UsageError
from llmtool.io.tokfile import TokenFileWriter
from llmtool.model import checkpoint
from llmtool.model.gpt import GPT, GPTConfig
from llmtool.train import optim
from llmtool.train.data import TokenWindows
from llmtool.train.device import resolve_device, setup
from llmtool.train.evaluate import evaluate
from llmtool.train.loop import TrainConfig, Trainer, make_plan
from llmtool.train.report import Reporter


@pytest.fixture(scope="module")
def bytes_bin(tmp_path_factory, books):
    """Moby-Dick's first 200 KB as byte tokens (vocab 256), one document per paragraph."""
    text = (books / "moby_dick.txt").read_bytes()[:200_000]
    path = tmp_path_factory.mktemp("tok") / "bytes.bin"
    with TokenFileWriter(path, vocab_size=256) as w:
        for para in text.split(b"\n\n"):
            w.add_document(np.frombuffer(para + b"\n\n", dtype=np.uint8))
    return path


def test_schedule_warmup_constant_warmdown():
    lr = optim.lr_multiplier
    assert lr(0.0, 0, warmup_steps=4) == 0.25 and lr(0.0, 3, warmup_steps=4) == 1.0
    assert lr(0.5, 50, warmdown=0.2) == 1.0
    assert lr(0.9, 90, warmdown=0.2) == pytest.approx(0.5)
    assert lr(1.0, 100, warmdown=0.2, final=0.1) == pytest.approx(0.1)
    assert lr(0.95, 95, warmdown=0.0) == 1.0
    assert optim.muon_momentum(0) == 0.85 and optim.muon_momentum(300) == pytest.approx(0.95)


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32)])
def test_newton_schulz_is_close_to_orthogonal_factor(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape)
    x = optim.newton_schulz(g)
    s = torch.linalg.svdvals(x)
    # Muon's iteration squashes singular values into ~[0.7, 1.2]; only the few tiniest ones
    # (a random square matrix has some near 0) cannot be lifted in five steps
    assert s.max() < 1.3 and (s > 0.6).float().mean() > 0.9
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cos = (x * (u @ vh)).sum() / (x.norm() * (u @ vh).norm())
    assert cos > 0.95


def test_muon_splits_fused_qkv_and_adam_takes_the_rest():
    m = GPT(GPTConfig.from_depth(1, 100, 16))
    adam, muon = optim.build_optimizers(m, "muon")
    muon_params = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(m.blocks[0].attn.c_qkv.weight) in muon_params
    assert id(m.wte.weight) not in muon_params and id(m.lm_head.weight) not in muon_params
    (adam_only,) = optim.build_optimizers(m, "adamw")
    assert sum(len(g["params"]) for g in adam_only.param_groups) == len(list(m.parameters()))
    with pytest.raises(UsageError):
        optim.build_optimizers(m, "sgd")


def test_windows_are_deterministic_and_split_like_one_batch(bytes_bin):
    src = TokenWindows(bytes_bin, context=32, seed=3)
    x1, y1 = src.batch(step=5, micro=0, micro_batch=8)
    x2, y2 = src.batch(step=5, micro=0, micro_batch=8)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    # 2 ranks × 2 micro-batches of 2 = the same 8 sequences as one micro-batch of 8
    parts = [src.batch(5, m, 2, n_micro=2, rank=r, world=2)[0] for r in range(2) for m in range(2)]
    assert torch.equal(torch.cat(parts), x1)
    assert not torch.equal(src.batch(6, 0, 8)[0], x1)
    docs = TokenWindows(bytes_bin, context=32, seed=3, windows="docs")
    starts = set(np.asarray(docs.file.doc_starts).tolist())
    assert set(docs.starts(0, 50).tolist()) <= starts


def test_window_longer_than_data_is_bad_input(tmp_path):
    p = tmp_path / "small.bin"
    with TokenFileWriter(p, vocab_size=256) as w:
        w.add_document(np.arange(10))
    with pytest.raises(BadInputError, match="context"):
        TokenWindows(p, context=10)


def test_bits_per_byte_matches_manual_computation(bytes_bin):
    class ByteTok:  # every token is one byte, id 0 is "special"
        special_tokens = {"<|x|>": 0}
        mergeable_ranks = {bytes([i]): i for i in range(256)}

    from llmtool.train.evaluate import token_byte_lengths

    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=256, n_layer=1, n_embd=32, n_head=2, n_kv_head=2, context=16))
    with torch.no_grad():
        m.lm_head.weight.normal_(0, 0.5)
    env = setup("cpu")
    src = TokenWindows(bytes_bin, context=16)
    tb = token_byte_lengths(ByteTok(), 256)
    assert tb[0] == 0 and tb[65] == 1
    r = evaluate(m, src.sequential(16 * 10, 4), env, tb)
    losses = []
    for x, y in src.sequential(16 * 10, 4):
        with torch.no_grad():
            losses.append(m(x, y, reduction="none"))
    allx = torch.cat(losses)
    assert r["val_loss"] == pytest.approx(float(allx.mean()), rel=1e-6)
    assert r["val_bpb"] == pytest.approx(float(allx.mean()) / math.log(2), rel=1e-6)  # 1 byte per token


def test_plan_and_budget_errors():
    m = GPT(GPTConfig.from_depth(1, 100, 32))
    p = make_plan(m, TrainConfig(context=32, micro_batch=4, total_batch=512, max_tokens=5000))
    assert (p.n_micro, p.steps, p.tokens_per_step) == (4, 10, 512)
    with pytest.raises(UsageError, match="multiple"):
        make_plan(m, TrainConfig(context=32, micro_batch=4, total_batch=500, max_steps=1))
    with pytest.raises(UsageError, match="budget"):
        make_plan(m, TrainConfig(context=32, micro_batch=4))
    with pytest.raises(UsageError, match="context"):
        make_plan(m, TrainConfig(context=64, micro_batch=4, max_steps=1))


def test_missing_devices_are_environment_errors():
    from llmtool.errors import EnvironmentProblem

    if not torch.cuda.is_available():
        with pytest.raises(EnvironmentProblem, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(UsageError):
        resolve_device("tpu")


def _train(bytes_bin, out, optimizer, stop_at=None, resume=False):
    torch.manual_seed(0)
    cfg = TrainConfig(context=32, micro_batch=4, total_batch=256, optimizer=optimizer, max_steps=8,
                      warmup_steps=2, warmdown=0.5, log_every=1, seed=1)
    env = setup("cpu")
    state = None
    if resume:
        model = checkpoint.load_model(out).train()
        state = checkpoint.load_train_state(out)
        rep = Reporter("test", metrics=checkpoint.read_metrics(out))
    else:
        model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_embd=32, n_head=2, n_kv_head=2, context=32))
        rep = Reporter("test")
    rep.quiet = True
    t = Trainer(model, cfg, env, TokenWindows(bytes_bin, 32, seed=1), out, reporter=rep)
    t.run(state, stop_at=stop_at)
    return [r["loss"] for r in t.report.metrics if "loss" in r], model


@pytest.mark.parametrize("optimizer", ["muon", "adamw"])
def test_resume_is_exact(bytes_bin, tmp_path, optimizer):
    full, m_full = _train(bytes_bin, tmp_path / "a", optimizer)
    half, _ = _train(bytes_bin, tmp_path / "b", optimizer, stop_at=4)
    assert len(half) == 4
    resumed, m_res = _train(bytes_bin, tmp_path / "b", optimizer, resume=True)
    assert len(full) == 8 and full[0] > full[-1]
    assert resumed == full  # bit-identical losses, step for step
    for a, b in zip(m_full.parameters(), m_res.parameters()):
        assert torch.equal(a, b)
    assert checkpoint.load_train_state(tmp_path / "b")["step"] == 8


def test_a_model_that_cannot_fit_is_refused(monkeypatch):
    from llmtool.errors import EnvironmentProblem
    from llmtool.train import loop

    m = GPT(GPTConfig.from_depth(1, 100, 32))
    plan = make_plan(m, TrainConfig(context=32, micro_batch=4, max_steps=1))
    monkeypatch.setattr(loop, "memory_available", lambda dev: plan.memory_bytes // 2)
    with pytest.raises(EnvironmentProblem, match="does not fit"):
        loop.check_fits(plan, setup("cpu"))
    monkeypatch.setattr(loop, "memory_available", lambda dev: plan.memory_bytes * 4)
    loop.check_fits(plan, setup("cpu"))
