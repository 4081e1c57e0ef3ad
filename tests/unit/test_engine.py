"""The generation engine: greedy output must not depend on the cache or on the batch a prompt
shares (longer or shorter prompts, n samples, waiting for a free row, past the context);
one prefill per prompt; seeded requests; stop tokens; log-probs; forced tokens; streaming."""

from __future__ import annotations

import pytest
import torch

from llmtool.errors import UsageError
from llmtool.model.engine import Engine, Request
from llmtool.model.generate import KVCache
from llmtool.model.gpt import GPT, GPTConfig

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18, 19]]


def _model(context=64, seed=3):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=61, n_layer=2, n_embd=32, n_head=2, n_kv_head=1, context=context))
    with torch.no_grad():  # the real init zeroes the output layers: randomise so tokens vary
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


def _greedy(m, prompts, max_tokens=20, n=1, **kw):
    reqs = [Request(p, n=n, max_tokens=max_tokens, temperature=0) for p in prompts]
    return [[c.tokens for c in r] for r in Engine(m, **kw).generate(reqs)]


def _alone(m, prompts, max_tokens=20):
    return [_greedy(m, [p], max_tokens)[0][0] for p in prompts]


@pytest.mark.parametrize("context", [64, 16])  # 16: every row outgrows the context and slides
def test_greedy_is_the_same_alone_in_a_batch_and_without_cache(context):
    m = _model(context)
    alone = _alone(m, PROMPTS)
    assert len({tuple(a) for a in alone}) == len(PROMPTS) and all(len(set(a)) > 3 for a in alone)
    together = [r[0] for r in _greedy(m, PROMPTS)]
    assert together == alone
    # with longer and shorter prompts on either side, in another order
    mixed = [r[0] for r in _greedy(m, [PROMPTS[1], PROMPTS[0], PROMPTS[3], PROMPTS[2]])]
    assert mixed == [alone[1], alone[0], alone[3], alone[2]]
    assert [r[0] for r in _greedy(m, PROMPTS, use_cache=False)] == alone


def test_n_greedy_samples_of_one_prompt_equal_the_single_one():
    m = _model()
    alone = _alone(m, PROMPTS[:2])
    out = _greedy(m, PROMPTS[:2], n=5)
    assert out == [[alone[0]] * 5, [alone[1]] * 5]


def test_rows_waiting_for_room_give_the_same_tokens():
    m = _model()
    alone = _alone(m, PROMPTS)
    # max_batch 3: 4 prompts × 2 samples are admitted as rows finish (requests split too)
    assert _greedy(m, PROMPTS, n=2, max_batch=3) == [[a, a] for a in alone]


def test_one_prefill_per_prompt():
    m = _model()
    calls = []
    real = m.hidden

    def spy(idx, cache=None):
        calls.append(tuple(idx.shape))
        return real(idx, cache)

    m.hidden = spy
    Engine(m).generate([Request(PROMPTS[1], n=8, max_tokens=5, seed=1), Request(PROMPTS[3], n=3, max_tokens=5)])
    prefills = [c for c in calls if c[1] > 1]
    assert prefills == [(1, len(PROMPTS[1])), (1, len(PROMPTS[3]))]  # once each, not per sample
    assert all(c == (11, 1) for c in calls if c[1] == 1)  # then all 11 rows step together


def test_seeded_request_samples_do_not_depend_on_the_batch():
    m = _model()
    kw = dict(max_tokens=25, temperature=0.9, top_k=20, top_p=0.95)
    alone = Engine(m).generate([Request(PROMPTS[0], n=3, seed=7, **kw)])[0]
    batch = Engine(m).generate([Request(PROMPTS[1], n=2, seed=1, **kw), Request(PROMPTS[0], n=3, seed=7, **kw),
                                Request(PROMPTS[2], seed=2, max_tokens=4)])[1]
    assert [c.tokens for c in batch] == [c.tokens for c in alone]
    assert len({tuple(c.tokens) for c in alone}) == 3  # the n samples differ from each other
    other = Engine(m).generate([Request(PROMPTS[0], n=3, seed=8, **kw)])[0]
    assert [c.tokens for c in other] != [c.tokens for c in alone]
    nocache = Engine(m, use_cache=False).generate([Request(PROMPTS[0], n=3, seed=7, **kw)])[0]
    assert [c.tokens for c in nocache] == [c.tokens for c in alone]


def test_stop_tokens_per_request_and_finish_reasons():
    m = _model()
    a = _alone(m, PROMPTS[:2])
    stop0, stop1 = a[0][4], a[1][6]
    out = Engine(m).generate([Request(PROMPTS[0], max_tokens=30, temperature=0, stop=(stop0,)),
                              Request(PROMPTS[1], max_tokens=30, temperature=0, stop=(stop1,)),
                              Request(PROMPTS[2], max_tokens=7, temperature=0)])
    c0, c1, c2 = out[0][0], out[1][0], out[2][0]
    assert c0.tokens == a[0][: a[0].index(stop0) + 1] and c0.finish == "stop"  # the stop token is kept
    assert c1.tokens == a[1][: a[1].index(stop1) + 1] and c1.finish == "stop"
    assert len(c2.tokens) == 7 and c2.finish == "length"
    assert Engine(m).generate([Request(PROMPTS[0], max_tokens=0)])[0][0].tokens == []


def test_logprobs_are_the_models_and_sampled_mask_marks_forced_tokens():
    m = _model()
    gen = Engine(m).stream([Request(PROMPTS[0], n=2, max_tokens=8, seed=3)])
    steps = []
    for step in gen:
        steps.append(step)
        if len(steps) == 2:
            gen.force(0, 1, [42, 43])  # e.g. a tool's output, fed to sample 1 only
    c0, c1 = gen.completions[0]
    assert c1.tokens[2:4] == [42, 43] and c1.sampled == [True, True, False, False, True, True, True, True]
    assert all(c0.sampled)
    assert [len(s) for s in steps] == [2] * 8 and steps[-1][0].finish == "length"
    # log-probs: the soft-capped distribution of a plain forward pass over the whole sequence
    for c in (c0, c1):
        seq = torch.tensor([PROMPTS[0] + c.tokens])
        with torch.no_grad():
            logp = m(seq)[0].log_softmax(-1)
        want = [float(logp[len(PROMPTS[0]) - 1 + i, t]) for i, t in enumerate(c.tokens)]
        assert c.logprobs == pytest.approx(want, abs=1e-4)


def test_bad_requests_are_usage_errors():
    m = _model()
    for bad in (Request([]), Request([61]), Request([-1]), Request([1], n=0), Request([1], top_k=0)):
        with pytest.raises(UsageError):
            Engine(m).generate([bad])
    gen = Engine(m).stream([Request([1], max_tokens=1)])
    list(gen)
    with pytest.raises(UsageError):
        gen.force(0, 0, [1])  # already finished


def test_prompt_longer_than_the_context_keeps_its_end():
    m = _model(context=16)
    long = list(range(1, 40))
    out = _greedy(m, [long], max_tokens=10)[0][0]
    assert out == _greedy(m, [long[-12:]], max_tokens=10)[0][0]  # the last 3/4 of the context


def test_per_row_kv_cache_matches_full_forward():
    """Rows of different lengths in one cache: each row's logits equal its own forward pass."""
    m = _model()
    seqs = [torch.randint(0, 61, (n,)) for n in (3, 9, 6)]
    cache = KVCache.for_model(m, 3, 32)
    with torch.no_grad():
        for b, s in enumerate(seqs):  # prefill each row alone, then copy it in
            one = KVCache.for_model(m, 1, len(s))
            m.hidden(s[None], one)
            cache.set_rows([b], one.k, one.v)
        nxt = torch.randint(0, 61, (3, 4))
        got = torch.cat([m(nxt[:, t:t + 1], cache=cache) for t in range(4)], 1)
        for b, s in enumerate(seqs):
            full = m(torch.cat([s, nxt[b]])[None])[0, len(s):]
            torch.testing.assert_close(got[b], full, atol=1e-4, rtol=1e-4)


def test_draw_follows_the_distribution_and_never_picks_zero_probability():
    from llmtool.model.generate import draw

    probs = torch.tensor([[0.0, 0.5, 0.3, 0.0, 0.2, 0.0]]).expand(20000, -1).contiguous()
    got = draw(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(got, minlength=6).float() / len(got)
    assert freq[[0, 3, 5]].sum() == 0
    torch.testing.assert_close(freq[[1, 2, 4]], torch.tensor([0.5, 0.3, 0.2]), atol=0.015, rtol=0)
    u = torch.tensor([0.0, 0.4999, 0.5, 0.7999, 0.8, 0.9999999])
    assert draw(probs[:6], u=u).tolist() == [1, 1, 2, 2, 4, 4]
