"""One Trainer for every kind of training: sources and losses other than pretrain's, written
against llmtool.train without touching the loop (issue 11 §2).

- a masked-loss source (sft's shape: the loss on the answer tokens only),
- a ranking loss with a reward head (rm-train's shape: pairs, accuracy, an extra parameter),
- an on-policy source (rl's shape: rollouts from the current weights in begin_step, its own
  random state saved in the checkpoint so that a resume stays exact).
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from llmtool.model import checkpoint
from llmtool.model.gpt import GPT, GPTConfig
from llmtool.train.batch import Batch, lm_loss
from llmtool.train.device import setup
from llmtool.train.loop import TrainConfig, Trainer
from llmtool.train.report import Reporter

V, T = 16, 12
PROMPT = 8  # the first PROMPT tokens are random (no loss), the rest is the answer


def _model(seed=0, context=T):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, n_layer=1, n_embd=32, n_head=2, n_kv_head=2, context=context))


def _quiet():
    rep = Reporter("test")
    rep.quiet = True
    return rep


def _metrics(folder) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


class MaskedSource:
    """Random prompts, then always the same answer. The prompt's targets are -1: no loss there
    (an sft source does this with the chat template's user turns)."""

    def __init__(self, seed=0):
        self.seed = seed

    def batch(self, step, micro, micro_batch, n_micro=1, rank=0, world=1, device=None):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 1009 + rank * 31 + micro)
        seq = torch.randint(6, V, (micro_batch, T + 1), generator=g)
        seq[:, PROMPT:] = torch.arange(1, 2 + T - PROMPT)  # a marker (1), then the answer 2 3 4 5
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, :PROMPT] = -1
        return Batch(x, y)


def answer_accuracy(model, batch):
    loss, _ = lm_loss(model, batch)
    with torch.no_grad():
        pred = model(batch.inputs).argmax(-1)
        keep = batch.targets >= 0
        acc = (pred[keep] == batch.targets[keep]).float().mean()
    return loss, {"answer_acc": acc}


def test_masked_loss_source_trains_the_answer_only(tmp_path):
    out = tmp_path / "sft"
    cfg = TrainConfig(context=T, micro_batch=8, total_batch=2 * 8 * T, max_steps=10, optimizer="adamw",
                      matrix_lr=0.01, unembedding_lr=0.2, log_every=5)
    t = Trainer(_model(), cfg, setup("cpu"), MaskedSource(), out, loss_fn=answer_accuracy, reporter=_quiet(),
                stage="sft")
    s = t.run()
    rows = [r for r in _metrics(out) if "loss" in r]
    # the loss is on the answer only: it falls from ln(16) (a uniform first guess) to near 0,
    # which the random prompt tokens (2/3 of the targets) would forbid if they counted (ln 10)
    assert rows[0]["loss"] > 2.0 and rows[-1]["loss"] < 0.1, rows
    assert rows[-1]["answer_acc"] == 1.0 and s["metrics"]["answer_acc"] == 1.0
    assert s["steps"] == 10 and checkpoint.read_config(out)["model_kind"] == "chat"


def test_weights_and_ignored_targets_give_the_same_loss():
    m = _model()
    b = MaskedSource().batch(0, 0, 4)
    full = b.inputs.roll(-1, dims=1)  # any targets for the prompt part: their weight is 0
    full[:, PROMPT:] = b.targets[:, PROMPT:]
    weights = (b.targets >= 0).float()
    a, _ = lm_loss(m, b)
    w, _ = lm_loss(m, Batch(b.inputs, full, weights))
    assert torch.allclose(a, w, rtol=1e-5)


class PairSource:
    """Pairs of sequences: the chosen one ends in token 3, the rejected one in token 4."""

    def __init__(self, seed=0):
        self.seed = seed

    def pairs(self, g, n):
        both = torch.randint(5, V, (2, n, T), generator=g)
        both[0, :, -1], both[1, :, -1] = 3, 4
        return both

    def batch(self, step, micro, micro_batch, n_micro=1, rank=0, world=1, device=None):
        g = torch.Generator().manual_seed(self.seed * 7919 + step * 101 + micro)
        chosen, rejected = self.pairs(g, micro_batch)
        return Batch(torch.cat([chosen, rejected]), extra={"pairs": micro_batch})


class RewardHead:
    """rm-train's shape: a scalar reward from the last hidden state and a trained vector."""

    def __init__(self, n_embd):
        self.w = torch.nn.Parameter(torch.zeros(n_embd))

    def rewards(self, model, x):
        return model.hidden(x)[:, -1] @ self.w

    def loss(self, model, batch):
        r = self.rewards(model, batch.inputs)
        n = batch.extra["pairs"]
        margin = r[:n] - r[n:]
        return -F.logsigmoid(margin).mean(), {"accuracy": (margin > 0).float().mean(), "margin": margin.mean()}

    def held_out(self, model, env):
        chosen, rejected = PairSource().pairs(torch.Generator().manual_seed(12345), 64)
        with torch.no_grad():
            acc = (self.rewards(model, chosen) > self.rewards(model, rejected)).float().mean()
        return {"val_accuracy": float(acc)}


def test_ranking_loss_with_a_reward_head(tmp_path):
    out = tmp_path / "rm"
    model = _model()
    head = RewardHead(model.config.n_embd)
    cfg = TrainConfig(context=T, micro_batch=8, total_batch=8 * T, max_steps=30, optimizer="adamw",
                      unembedding_lr=0.05, log_every=5)
    t = Trainer(model, cfg, setup("cpu"), PairSource(), out, loss_fn=head.loss, evaluate_fn=head.held_out,
                extra_params={"reward_head": head.w}, reporter=_quiet(), stage="rm")
    s = t.run()
    rows = _metrics(out)
    steps = [r for r in rows if "loss" in r]
    assert steps[0]["loss"] == round(math.log(2), 6)  # zero head: every margin is 0
    assert steps[-1]["accuracy"] == 1.0 and steps[-1]["loss"] < 0.3
    assert rows[-1]["val_accuracy"] == 1.0 and s["eval"]["val_accuracy"] == 1.0
    saved = checkpoint.load_tensors(out)
    assert torch.equal(saved["reward_head"], head.w.detach())  # the extra parameter is in the checkpoint
    assert checkpoint.load_model(out).config.n_layer == 1  # and the model loads as usual


class RolloutSource:
    """rl's shape: before every step, sample continuations of random prompts from the current
    weights (its own generator: state saved in the checkpoint); reward = share of sampled
    tokens equal to 7; the batch weights every sampled token by its sequence's advantage."""

    def __init__(self, seed=0, k=4):
        self.g = torch.Generator().manual_seed(seed)
        self.k = k
        self.rollout = None
        self.calls = []

    def begin_step(self, step, model, env):
        assert not model.training and not torch.is_grad_enabled()  # current weights, no autograd
        self.calls.append(step)
        seq = torch.randint(0, V, (self.k, 4), generator=self.g)
        for _ in range(T + 1 - 4):
            p = torch.softmax(model(seq)[:, -1], -1)
            seq = torch.cat([seq, torch.multinomial(p, 1, generator=self.g)], 1)
        reward = (seq[:, 4:] == 7).float().mean(1)
        adv = reward - reward.mean()
        self.rollout = (seq, adv)
        return {"reward": reward.mean()}

    def batch(self, step, micro, micro_batch, n_micro=1, rank=0, world=1, device=None):
        seq, adv = self.rollout
        y = seq[:, 1:].clone()
        y[:, :3] = -1  # the prompt is not the policy's doing
        return Batch(seq[:, :-1], y, extra={"advantage": adv})

    def state_dict(self):
        return {"generator": self.g.get_state()}

    def load_state_dict(self, state):
        self.g.set_state(state["generator"])


def policy_gradient(model, batch):
    logp = -model(batch.inputs, batch.targets, reduction="none")  # (k, T)
    mask = (batch.targets >= 0).float()
    per_seq = (logp * mask).sum(1) / mask.sum(1)
    return -(batch.extra["advantage"] * per_seq).mean(), {}


def _rl(out, stop_at=None, resume=False):
    cfg = TrainConfig(context=T, micro_batch=4, total_batch=4 * T, max_steps=8, optimizer="adamw",
                      matrix_lr=0.02, unembedding_lr=0.5, log_every=1, seed=5)
    if resume:
        model, state = checkpoint.load_model(out).train(), checkpoint.load_train_state(out)
        rep = Reporter("test", metrics=checkpoint.read_metrics(out))
        rep.quiet = True
    else:
        model, state, rep = _model(3, context=T + 1), None, _quiet()
    src = RolloutSource()
    Trainer(model, cfg, setup("cpu"), src, out, loss_fn=policy_gradient, reporter=rep, stage="rl").run(
        state, stop_at=stop_at)
    return [(r["loss"], r["reward"]) for r in rep.metrics if "loss" in r], src, model


def test_on_policy_source_resumes_exactly(tmp_path):
    full, src, m_full = _rl(tmp_path / "a")
    assert src.calls == list(range(8))
    half, _, _ = _rl(tmp_path / "b", stop_at=4)
    assert "generator" in checkpoint.load_train_state(tmp_path / "b")["data"]["source"]
    resumed, src2, m_res = _rl(tmp_path / "b", resume=True)
    assert src2.calls == [4, 5, 6, 7]
    assert len(half) == 4 and resumed == full  # losses and rewards, step for step
    for a, b in zip(m_full.parameters(), m_res.parameters()):
        assert torch.equal(a, b)
    assert len({r for _, r in full}) > 1  # the rollouts follow the changing weights
