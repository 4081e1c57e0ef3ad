"""Generation building blocks: the KV cache, temperature / top-k / top-p sampling, and the
one-call `generate` / `stream` helpers (thin wrappers over `llmtool.model.engine.Engine`).

The KV cache keeps every row at its own position: rows whose prompts differ in length
share one batch without padding, each token rotated by its true position, each query
masked to its own row's keys. So a prompt gives the same tokens alone or in any batch.

    >>> import torch
    >>> from llmtool.model.gpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig.from_depth(1, vocab_size=100, context=32)).eval()
    >>> out = generate(model, [[1, 2, 3], [4]], max_tokens=5, temperature=0)
    >>> [len(o) for o in out]
    [5, 5]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class KVCache:
    """Keys and values of every layer for a batch of rows, each row at its own length.

    The model calls `positions(T)` once per forward (which positions the T new tokens of
    each row take, and the attention mask that follows), `update(layer, k, v)` per layer,
    and `advance(T)` at the end. Slots a row has not written are masked out; they start
    at zero, because a masked key still multiplies its value by 0 and 0·NaN would be NaN.
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, length: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layer, batch, n_kv_head, length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = length
        self.lengths = [0] * batch  # host copy: deciding shapes never waits for the device
        self._lengths_t: torch.Tensor | None = None  # device copy, built when rows differ
        self._write: int | torch.Tensor = 0
        self._end = 0
        self.causal, self.mask = True, None

    @classmethod
    def for_model(cls, model, batch: int, length: int | None = None) -> KVCache:
        c = model.config
        p = next(model.parameters())
        return cls(c.n_layer, batch, c.n_kv_head, length or c.context, c.head_dim, p.device, p.dtype)

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def pos(self) -> int:
        """The longest row's length (all rows' length when they are equal)."""
        return max(self.lengths, default=0)

    def _lengths_tensor(self) -> torch.Tensor:
        if self._lengths_t is None:
            self._lengths_t = torch.tensor(self.lengths, device=self.k.device)
        return self._lengths_t

    def positions(self, T: int) -> tuple[int | torch.Tensor, int]:
        """Positions of T new tokens per row (an int if the rows are level, else (B, T)) and the
        length of the longest row after them; also sets `causal` / `mask` for the layers."""
        lo, hi = min(self.lengths), max(self.lengths)
        end = hi + T
        if end > self.length:
            from llmtool.errors import UsageError

            raise UsageError(f"the KV cache holds {self.length} tokens; {end} do not fit")
        self._end = end
        dev = self.k.device
        if lo == hi:
            self._write = lo
            if lo == 0:  # a prompt from scratch: plain causal attention
                self.causal, self.mask = T > 1, None
            elif T == 1:  # one new token sees every cached one
                self.causal, self.mask = False, None
            else:  # a chunk after a prefix: query i sees keys up to lo + i
                self.causal = False
                self.mask = torch.ones(T, end, dtype=torch.bool, device=dev).tril(diagonal=lo)
            return lo, end
        pos = self._lengths_tensor()[:, None] + torch.arange(T, device=dev)  # (B, T)
        self._write = pos
        if T == 1:  # decoding: one slot per (row, head), as rows of the (B·H·L, D) cache view
            B, H = self.k.shape[1:3]
            heads = torch.arange(B * H, device=dev).view(B, H)
            self._write = (heads * self.length + pos).view(-1)
        self.causal = False
        # row b's query t sees its slots 0 .. lengths[b] + t; other slots are stale or unused.
        # An additive float mask, made once here: SDPA would convert a boolean one per layer.
        hidden = torch.arange(end, device=dev) > pos[..., None]
        self.mask = torch.zeros(hidden.shape, dtype=self.k.dtype, device=dev).masked_fill_(
            hidden, float("-inf"))[:, None]  # (B, 1, T, S)
        return pos, end

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, H, T, D); return the keys/values to attend to."""
        w = self._write
        ck, cv = self.k[layer], self.v[layer]
        if isinstance(w, int):  # narrow + copy_: cheaper than slice assignment, every step counts
            ck.narrow(2, w, k.size(2)).copy_(k)
            cv.narrow(2, w, v.size(2)).copy_(v)
        elif w.dim() == 1:  # one token per row, each at its own slot
            D = k.size(-1)
            ck.view(-1, D).index_copy_(0, w, k.reshape(-1, D).to(ck.dtype))
            cv.view(-1, D).index_copy_(0, w, v.reshape(-1, D).to(cv.dtype))
        else:  # a chunk per row, each at its own slots: index (row, slot) pairs
            rows = torch.arange(k.size(0), device=k.device)[:, None]
            self.k[layer, rows, :, w] = k.transpose(1, 2).to(self.k.dtype)
            self.v[layer, rows, :, w] = v.transpose(1, 2).to(self.v.dtype)
        return ck.narrow(2, 0, self._end), cv.narrow(2, 0, self._end)

    def advance(self, n: int) -> None:
        self.lengths = [x + n for x in self.lengths]
        if self._lengths_t is not None:
            self._lengths_t += n

    def reset(self) -> None:
        self.lengths = [0] * self.batch
        self._lengths_t = None

    # ------------------------------------------------------------------ row surgery (the engine)

    def set_rows(self, rows: list[int] | slice, k: torch.Tensor, v: torch.Tensor) -> None:
        """Put the keys/values (n_layer, 1 or len(rows), H, n, D) of a prefill into `rows`,
        which then hold n tokens: one prompt's prefill is shared by all its samples."""
        n = k.size(3)
        self.k[:, rows, :, :n] = k
        self.v[:, rows, :, :n] = v
        idx = range(self.batch)[rows] if isinstance(rows, slice) else rows
        for r in idx:
            self.lengths[r] = n
        self._lengths_t = None

    def set_length(self, row: int, n: int) -> None:
        """Row `row` now holds its first n tokens only."""
        self.lengths[row] = n
        self._lengths_t = None

    def keep_rows(self, rows: list[int]) -> None:
        """Drop every row not in `rows` (finished samples), keeping this order."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.k.device)
        self.k, self.v = self.k.index_select(1, idx), self.v.index_select(1, idx)
        self.lengths = [self.lengths[r] for r in rows]
        self._lengths_t = None

    def add_rows(self, n: int) -> None:
        """Append n empty rows (a request admitted while others run)."""
        shape = list(self.k.shape)
        shape[1] = n
        pad = torch.zeros(shape, device=self.k.device, dtype=self.k.dtype)
        self.k, self.v = torch.cat([self.k, pad], 1), torch.cat([self.v, pad.clone()], 1)
        self.lengths += [0] * n
        self._lengths_t = None


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
    return draw(warp(logits, temperature, top_k, top_p), generator)


def warp(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None) -> torch.Tensor:
    """The sampling distribution (B, V): temperature, then top-k, then top-p, then softmax."""
    logits = logits.float() / temperature
    logits = top_k_mask(logits, top_k or 0)
    logits = top_p_mask(logits, top_p if top_p is not None else 1.0)
    return logits.softmax(-1)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None,
         u: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row of `probs` (B, V) by inverting the cumulative distribution at a
    uniform number per row (`u`, (B,), else drawn from `generator`).

    One random number per row: torch.multinomial draws V exponentials per row, which is
    most of a small model's decoding step on a CPU. Tokens of probability 0 are never
    drawn (their interval of the CDF is empty)."""
    cdf = probs.cumsum(-1)
    if u is None:
        u = torch.rand(probs.size(0), generator=generator, device=probs.device)
    u = u.to(cdf.dtype)[:, None] * cdf[:, -1:]
    # right=True: the first token whose cumulative mass exceeds u; the clamp guards rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=probs.size(-1) - 1)


def stream(model, prompts: list[list[int]], max_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, stop_ids: tuple[int, ...] = (),
           generator: torch.Generator | None = None, use_cache: bool = True,
           autocast: Callable | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row (a (B,) tensor), step by step; a row that has hit a
    stop id keeps yielding it. Stops early once every row has stopped. Prompts may differ
    in length; all rows share `generator`."""
    from llmtool.model.engine import Engine, Request

    reqs = [Request(p, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    stop=tuple(stop_ids), generator=generator) for p in prompts]
    last = [0] * len(prompts)
    gen = Engine(model, autocast=autocast, use_cache=use_cache, logprobs=False).stream(reqs)
    for step in gen:
        for t in step:
            last[t.request] = t.token
        yield torch.tensor(last)


def generate(model, prompts: list[list[int]], max_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, stop_ids: tuple[int, ...] = (),
             generator: torch.Generator | None = None, use_cache: bool = True,
             autocast: Callable | None = None) -> list[list[int]]:
    """The generated tokens of every prompt (without the prompt), ending with the stop id if one
    was drawn. Prompts may differ in length; all rows share `generator`."""
    from llmtool.model.engine import Engine, Request

    reqs = [Request(p, max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    stop=tuple(stop_ids), generator=generator) for p in prompts]
    done = Engine(model, autocast=autocast, use_cache=use_cache, logprobs=False).generate(reqs)
    return [r[0].tokens for r in done]
