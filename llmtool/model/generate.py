"""Generation: a preallocated KV cache, temperature / top-k / top-p sampling, greedy decoding.

The prompt is run once (prefill); then each step feeds one new token and attends to the
cached keys and values, so a step costs O(context) instead of O(context²). When the cache
is full the most recent three quarters of the tokens are re-encoded (a sliding window),
so generation can run past the trained context.

    >>> import torch
    >>> from llmtool.model.gpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig.from_depth(1, vocab_size=100, context=32)).eval()
    >>> out = generate(model, [[1, 2, 3]], max_tokens=5, temperature=0)
    >>> len(out[0])
    5
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class KVCache:
    """Keys and values of every layer for a batch, written in place as tokens arrive."""

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, length: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layer, batch, n_kv_head, length, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0
        self.length = length

    @classmethod
    def for_model(cls, model, batch: int, length: int | None = None) -> KVCache:
        c = model.config
        p = next(model.parameters())
        return cls(c.n_layer, batch, c.n_kv_head, length or c.context, c.head_dim, p.device, p.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values; return all keys/values so far."""
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        self.pos = 0


def top_k_mask(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties at the k-th value kept), the rest -inf."""
    if not k or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_mask(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of top tokens whose probability reaches p (at least one)."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # drop a token when the mass strictly before it already reaches p
    before = probs.cumsum(-1) - probs
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from last-position logits (B, V); temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    logits = top_k_mask(logits, top_k or 0)
    logits = top_p_mask(logits, top_p if top_p is not None else 1.0)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def stream(model, prompts: list[list[int]], max_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, stop_ids: tuple[int, ...] = (),
           generator: torch.Generator | None = None, use_cache: bool = True,
           autocast: Callable | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, step by step; rows that hit a stop id keep yielding it.

    All prompts must have the same length (sample batches the samples of one prompt).
    Stops early once every row has stopped.
    """
    if not prompts or len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts must be non-empty and of equal length")
    ctx_len = model.config.context
    device = next(model.parameters()).device
    seq = torch.tensor(prompts, dtype=torch.long, device=device)
    if seq.size(1) == 0:
        raise ValueError("empty prompt: start it with at least one token (e.g. the BOS token)")
    keep = max(1, (ctx_len * 3) // 4)
    if seq.size(1) > ctx_len:
        seq = seq[:, -keep:]
    ac = autocast or (lambda: torch.autocast(device.type, enabled=False))
    done = torch.zeros(seq.size(0), dtype=torch.bool, device=device)
    stops = torch.tensor(list(stop_ids) or [-1], device=device)
    cache = KVCache.for_model(model, seq.size(0)) if use_cache else None
    capped = temperature > 0  # greedy: tanh is monotonic, the cap cannot change the argmax

    def last_logits(tokens, cache=None):
        return model.logits(model.hidden(tokens, cache)[:, -1], capped)

    with ac():
        logits = last_logits(seq, cache)
    new: list[torch.Tensor] = []  # generated tokens; joined to the prompt only when needed
    for _ in range(max_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        if stop_ids:
            nxt = torch.where(done, stops[0], nxt)
            done |= torch.isin(nxt, stops)
        yield nxt
        if stop_ids and bool(done.all()):
            return
        new.append(nxt[:, None])
        with ac():
            if use_cache and cache.pos < ctx_len:
                logits = last_logits(nxt[:, None], cache)
                continue
            seq = torch.cat([seq, *new], dim=1)[:, -ctx_len:]
            new = []
            if not use_cache:
                logits = last_logits(seq)
            else:  # cache full: slide the window and re-encode the recent tokens
                seq = seq[:, -keep:]
                cache.reset()
                logits = last_logits(seq, cache)


def generate(model, prompts: list[list[int]], max_tokens: int, **kw) -> list[list[int]]:
    """The generated tokens of every row (without the prompt), cut after a stop id."""
    stop_ids = tuple(kw.get("stop_ids", ()))
    rows: list[list[int]] = [[] for _ in prompts]
    finished = [False] * len(prompts)
    for nxt in stream(model, prompts, max_tokens, **kw):
        for i, t in enumerate(nxt.tolist()):
            if not finished[i]:
                rows[i].append(t)
                finished[i] = t in stop_ids
    return rows
