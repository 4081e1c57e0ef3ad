"""Conversations into windows (llmtool.train.sft_data): fitting, packing, masks, loss normalisation."""

import random

import pytest
import torch

from llmtool.tokenizer.chat import Rendered
from llmtool.train import sft_data
from llmtool.train.sft_data import ConversationWindows, fit, pack, prepare


def _conv(rng, turns=None):
    """A rendered conversation of random turn lengths (user spans unsupervised)."""
    ids, mask, spans = [1], [False], []
    for _ in range(turns or rng.randint(1, 4)):
        for supervised in (False, True):
            head = [2, 3]
            body = [rng.randrange(4, 50) for _ in range(rng.randint(1, 12))] + [3]
            ids += head
            mask += [False, False]
            spans.append((len(ids), len(ids) + len(body)))
            ids += body
            mask += [supervised] * len(body)
    return Rendered(ids, mask, spans)


def _reference_best_fit(sizes, limit):
    """Best-fit decreasing written the plain way: scan every bin for the least room that fits."""
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    bins, room = [], []
    for i in order:
        best = None
        for b in range(len(bins)):
            if sizes[i] <= room[b] and (best is None or room[b] < room[best]):
                best = b
        if best is None:
            bins.append([])
            room.append(limit)
            best = len(bins) - 1
        bins[best].append(i)
        room[best] -= sizes[i]
    return bins


def test_pack_matches_a_reference_best_fit_on_random_sizes():
    rng = random.Random(1)
    for _ in range(100):
        limit = rng.randint(8, 64)
        exs = [Rendered([0] * rng.randint(1, limit), [True], []) for _ in range(rng.randint(1, 60))]
        bins = pack(exs, limit)
        sizes = [len(e.ids) for e in exs]
        assert sorted(i for b in bins for i in b) == list(range(len(exs)))  # each exactly once
        assert all(sum(sizes[i] for i in b) <= limit for b in bins)
        assert len(bins) == len(_reference_best_fit(sizes, limit))
        # the bins hold the same sets (ties between equal rooms may pick another bin index)
        assert sorted(sorted(sizes[i] for i in b) for b in bins) == \
            sorted(sorted(sizes[i] for i in b) for b in _reference_best_fit(sizes, limit))


def test_fit_cuts_only_at_turn_boundaries():
    rng = random.Random(2)
    for _ in range(300):
        r = _conv(rng)
        limit = rng.randint(3, len(r.ids) + 3)
        f = fit(r, limit)
        if f is None:  # not even the first assistant message fits
            first = next(e for s, e in r.spans if r.mask[s])
            assert first > limit
            continue
        assert len(f.ids) <= limit and f.ids == r.ids[:len(f.ids)] and f.mask == r.mask[:len(f.mask)]
        if f is not r:
            assert f.mask[-1] and any(e == len(f.ids) for _, e in f.spans)  # ends where an answer ends
            # and nothing longer would have fitted: the next answer's end is past the limit
            later = [e for s, e in r.spans if r.mask[s] and e > len(f.ids)]
            assert not later or later[0] > limit


def test_prepare_counts_what_was_cut_and_left_out():
    a = Rendered([1, 2, 3, 4, 5, 6, 7, 8], [False, True, True, False, False, True, True, True], [(1, 3), (5, 8)])
    too_long = Rendered([1, 2, 3, 4, 5, 6], [False, False, False, False, True, True], [(4, 6)])
    p = prepare([a, too_long], context=4)  # windows of 5 tokens
    assert p.truncated == 1 and p.dropped == 1 and len(p.examples) == 1
    assert p.examples[0].ids == [1, 2, 3] and p.supervised == 2 and p.tokens == 3


def test_windows_targets_are_the_supervised_next_tokens():
    rng = random.Random(3)
    exs = [fit(_conv(rng), 33) for _ in range(40)]
    exs = [e for e in exs if e is not None]
    w = ConversationWindows(exs, context=32, seed=0, pad_id=0)
    b = w.windows(torch.arange(len(w)))
    assert b.inputs.shape == (len(w), 32)
    keep = b.targets >= 0
    assert int(keep.sum()) == sum(e.n_supervised for e in exs) - sum(e.mask[0] for e in exs)
    assert torch.equal(b.targets[keep], w.tokens[:, 1:][keep])  # a target is the next token itself


def test_scale_normalises_by_the_supervised_tokens_of_the_whole_step():
    """Every supervised token of a step weighs 1/N, however micro-batches and ranks split it."""
    rng = random.Random(4)
    exs = [e for e in (fit(_conv(rng), 17) for _ in range(80)) if e is not None]
    w = ConversationWindows(exs, context=16, seed=1)
    mb, n_micro, world = 3, 2, 2
    for step in range(5):
        weights = []
        for micro in range(n_micro):
            for rank in range(world):
                b = w.batch(step, micro, mb, n_micro, rank, world)
                # the loop divides each micro-batch's loss by n_micro; DDP averages the ranks
                weights.append(int((b.targets >= 0).sum()) * b.extra["scale"] / n_micro / world)
        assert sum(weights) == pytest.approx(1.0)


def test_epochs_visit_every_window_once_in_a_seeded_order():
    rng = random.Random(5)
    exs = [e for e in (fit(_conv(rng), 17) for _ in range(50)) if e is not None]
    w = ConversationWindows(exs, context=16, seed=7)
    per_step = 4
    steps = w.steps_per_epoch(per_step)
    seen = torch.cat([w.step_windows(s, per_step) for s in range(steps)])[:len(w)]
    assert sorted(seen.tolist()) == list(range(len(w)))
    nxt = torch.cat([w.step_windows(s, per_step) for s in range(steps, 2 * steps)])[:len(w)]
    assert not torch.equal(seen, nxt)  # a new order each epoch
    again = ConversationWindows(exs, context=16, seed=7)
    assert torch.equal(again.step_windows(3, per_step), w.step_windows(3, per_step))


def test_sft_loss_over_micro_batches_equals_the_mean_over_all_supervised_tokens():
    from llmtool.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(1, vocab_size=64, context=16))
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.5)  # a zero head would give every token the same loss
    rng = random.Random(6)
    exs = [e for e in (fit(_conv(rng), 17) for _ in range(30)) if e is not None]
    w = ConversationWindows(exs, context=16, seed=0)
    mb, n_micro = 2, 3
    with torch.no_grad():
        accumulated = sum(float(sft_data.sft_loss(model, w.batch(0, m, mb, n_micro))[0]) / n_micro
                          for m in range(n_micro))
        full = w.windows(w.step_windows(0, mb * n_micro))
        ref = torch.nn.functional.cross_entropy(model(full.inputs).flatten(0, 1).float(), full.targets.flatten(),
                                                ignore_index=-1)
    assert accumulated == pytest.approx(float(ref), rel=1e-4)
