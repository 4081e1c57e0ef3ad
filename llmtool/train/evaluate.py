"""Validation loss and bits per byte.

Bits per byte divides the summed cross-entropy (in bits) by the UTF-8 bytes of the target
tokens, so it compares models with different tokenizers; special tokens (no bytes of text)
are left out of both sums, as nanochat does.

    bpb = sum(loss_nats[t] for t with bytes) / (ln 2 × sum(bytes[t]))
"""

from __future__ import annotations

import math

import torch


def token_byte_lengths(tokenizer, vocab_size: int) -> torch.Tensor:
    """UTF-8 length of every token id (0 for special tokens and ids beyond the tokenizer)."""
    lengths = torch.zeros(vocab_size, dtype=torch.int64)
    specials = set(tokenizer.special_tokens.values())
    for tok, i in tokenizer.mergeable_ranks.items():
        if i < vocab_size and i not in specials:
            lengths[i] = len(tok)
    return lengths


@torch.no_grad()
def evaluate(model, batches, env, token_bytes: torch.Tensor | None = None) -> dict:
    """Mean loss (nats/token) and bits per byte over `batches` of (inputs, targets), all ranks."""
    was_training = model.training
    model.eval()
    dev = env.device
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss sum, tokens, loss sum w/ bytes, bytes
    tb = token_bytes.to(dev) if token_bytes is not None else None
    for x, y in batches:
        x, y = x.to(dev), y.to(dev)
        with env.autocast():
            losses = model(x, y, reduction="none").view(-1).double()
        yf = y.reshape(-1)
        valid = yf >= 0
        sums[0] += losses[valid].sum()
        sums[1] += valid.sum()
        if tb is not None:
            nbytes = tb[yf.clamp(min=0)] * valid
            counted = nbytes > 0
            sums[2] += losses[counted].sum()
            sums[3] += nbytes.sum()
    env.all_reduce_sum(sums)
    model.train(was_training)
    loss, n, lb, nb = sums.tolist()
    out = {"val_loss": loss / max(n, 1), "val_tokens": int(n)}
    out["val_bpb"] = (lb / (math.log(2) * nb)) if nb > 0 else None
    return out
