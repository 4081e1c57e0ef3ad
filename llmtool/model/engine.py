"""The generation engine: many prompts, many samples each, in one batch, token by token.

Each distinct prompt is run through the model once (prefill); its keys and values are then
copied into the KV-cache rows of all its samples. Rows of different lengths decode
together, each at its own position (no padding), so a prompt's greedy tokens do not depend
on what else shares the batch. Finished rows leave the batch at once and waiting requests
take their place (at most `max_batch` rows run together).

Every token comes with the model's log-probability of it (the full distribution at
temperature 1, before top-k / top-p: the quantity a trainer recomputes) and whether it
was sampled or forced (`Generation.force`, e.g. a tool's output fed back in).

    >>> import torch
    >>> from llmtool.model.gpt import GPT, GPTConfig
    >>> model = GPT(GPTConfig.from_depth(1, vocab_size=100, context=64)).eval()
    >>> engine = Engine(model)
    >>> out = engine.generate([Request([1, 2, 3], n=2, max_tokens=4, seed=0),
    ...                        Request([5], max_tokens=3, temperature=0, stop=(7,))])
    >>> [len(c.tokens) for c in out[0]], out[0][0].finish
    ([4, 4], 'length')
    >>> gen = engine.stream([Request([1, 2], max_tokens=2, seed=1)])   # streaming
    >>> [[(t.index, t.sampled) for t in step] for step in gen]
    [[(0, True)], [(0, True)]]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from llmtool.errors import UsageError
from llmtool.model.generate import KVCache, draw, warp


@dataclass
class Request:
    """One prompt and how to continue it. `seed` (or an explicit `generator`) makes this
    request's samples reproducible whatever else runs in the batch; requests that share one
    generator draw from it together, and with neither they use torch's global RNG."""

    prompt: Sequence[int]
    n: int = 1
    max_tokens: int = 256  # tokens per completion, forced ones included
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    stop: Sequence[int] = ()  # a sampled stop token ends the completion (and is kept in it)
    seed: int | None = None
    generator: torch.Generator | None = None


@dataclass
class Completion:
    """One sample of one request: parallel lists, one entry per token."""

    request: int
    index: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)  # False: forced in, not drawn
    finish: str | None = None  # "stop" | "length"; None while running


@dataclass(frozen=True)
class Token:
    """A streamed token of request `request`, sample `index`; `finish` is set on its last one."""

    request: int
    index: int
    token: int
    logprob: float | None
    sampled: bool
    finish: str | None = None


class _Row:
    """A running sample: its tokens so far (`history`, from the prompt window on), where the
    window the model sees starts in it (moved on when the row outgrows the context), and
    the tokens queued to be forced in."""

    __slots__ = ("req", "comp", "history", "start", "forced")

    def __init__(self, req: int, comp: Completion, history: list[int], forced: deque):
        self.req, self.comp, self.history, self.start, self.forced = req, comp, history, 0, forced


class Engine:
    """Generation for one model. `autocast` is a context-manager factory (bf16 on GPUs);
    `use_cache=False` recomputes every row from scratch at every step (a reference);
    `logprobs=False` skips the log-probabilities (Completion.logprobs stays empty, Token.logprob
    is None), which saves a pass over the logits per step when only the tokens matter."""

    def __init__(self, model, autocast: Callable | None = None, max_batch: int = 64, use_cache: bool = True,
                 logprobs: bool = True):
        if max_batch < 1:
            raise UsageError("max_batch must be at least 1")
        self.model = model
        self.device = next(model.parameters()).device
        self.autocast = autocast or (lambda: torch.autocast(self.device.type, enabled=False))
        self.max_batch = max_batch
        self.use_cache = use_cache
        self.logprobs = logprobs

    def stream(self, requests: Sequence[Request]) -> Generation:
        """An iterator over steps: each step is the list of Tokens the running rows produced."""
        return Generation(self, list(requests))

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """All completions: one list per request, `n` Completions each."""
        gen = self.stream(requests)
        for _ in gen:
            pass
        return gen.completions


class Generation:
    """One run of the engine over a list of requests; iterate it for the tokens as they come."""

    def __init__(self, engine: Engine, requests: list[Request]):
        self.engine = engine
        self.model = engine.model
        cfg = self.model.config
        self.context = cfg.context
        self.keep = max(1, (cfg.context * 3) // 4)  # tokens kept when a row outgrows the context
        self.requests = requests
        self.prompts: list[list[int]] = []
        for i, r in enumerate(requests):
            self.prompts.append(self._check(i, r, cfg.vocab_size))
        self.completions = [[Completion(i, j) for j in range(r.n)] for i, r in enumerate(requests)]
        self._forced = {(i, j): deque() for i, r in enumerate(requests) for j in range(r.n)}
        self._gens = [r.generator if r.generator is not None else
                      torch.Generator(self.engine.device).manual_seed(r.seed) if r.seed is not None else None
                      for r in requests]
        self._pending = deque([i, 0] for i, r in enumerate(requests))  # [request, next sample]
        self._prefills: dict[tuple[int, ...], tuple] = {}
        self._rows: list[_Row] = []
        self._cache: KVCache | None = None
        self._logits: torch.Tensor | None = None  # (rows, V) raw logits of the next token
        self._groups: list[tuple] | None = None
        self._started = False

    @staticmethod
    def _check(i: int, r: Request, vocab: int) -> list[int]:
        prompt = [int(t) for t in r.prompt]
        if not prompt:
            raise UsageError(f"request {i}: empty prompt (start it with at least one token, e.g. BOS)")
        if min(prompt) < 0 or max(prompt) >= vocab:
            raise UsageError(f"request {i}: token ids must be in 0..{vocab - 1}")
        if r.n < 1 or r.max_tokens < 0:
            raise UsageError(f"request {i}: n must be at least 1 and max_tokens at least 0")
        if r.top_k is not None and r.top_k < 1:
            raise UsageError(f"request {i}: top_k must be at least 1")
        return prompt

    # ------------------------------------------------------------------ public

    def force(self, request: int, index: int, tokens: Sequence[int]) -> None:
        """Feed `tokens` as the next tokens of sample `index` of `request` instead of sampling
        (marked sampled=False; they count towards max_tokens and never stop the sample)."""
        comp = self.completions[request][index]
        if comp.finish is not None:
            raise UsageError(f"request {request} sample {index} has already finished ({comp.finish})")
        vocab = self.model.config.vocab_size
        toks = [int(t) for t in tokens]
        if toks and (min(toks) < 0 or max(toks) >= vocab):
            raise UsageError(f"forced token ids must be in 0..{vocab - 1}")
        self._forced[request, index].extend(toks)

    def __iter__(self) -> Iterator[list[Token]]:
        if self._started:
            raise UsageError("a Generation can be iterated only once")
        self._started = True
        return self._run()

    # ------------------------------------------------------------------ the loop

    def _run(self) -> Iterator[list[Token]]:
        nxt: list[int] | None = None
        while True:
            # inference mode and autocast around the engine's work only, never around the
            # caller's code between two steps; entered once per step (it is not free)
            with torch.inference_mode(), self.engine.autocast():
                if nxt is not None:
                    keep = [b for b, row in enumerate(self._rows) if row.comp.finish is None]
                    if len(keep) < len(self._rows):  # finished rows leave the batch at once
                        self._keep(keep)
                        nxt = [nxt[b] for b in keep]
                    if self._rows:
                        self._step(nxt)
                self._admit()
                if not self._rows:
                    return
                nxt, events = self._choose()
            yield events

    def _prompt_window(self, prompt: list[int]) -> list[int]:
        # a prompt longer than the context keeps its most recent tokens, like a full row does
        return prompt if len(prompt) <= self.context else prompt[-self.keep:]

    def _prefill(self, tokens: list[int]) -> tuple:
        """Keys, values and next-token logits of one prompt, computed once for all its samples."""
        key = tuple(tokens)
        if key not in self._prefills:
            cache = KVCache.for_model(self.model, 1, len(tokens))
            h = self.model.hidden(torch.tensor([tokens], device=self.engine.device), cache)
            logits = self.model.logits(h[:, -1], capped=False)
            self._prefills[key] = (cache.k, cache.v, logits)
        return self._prefills[key]

    def _admit(self) -> None:
        """Start waiting requests while there is room (always at least one row)."""
        room = self.engine.max_batch - len(self._rows)
        new: list[tuple[int, int]] = []
        while self._pending and (room > 0 or not self._rows and not new):
            entry = self._pending[0]
            i, j = entry
            r = self.requests[i]
            if r.max_tokens == 0:  # nothing to generate: finished before it starts
                for c in self.completions[i]:
                    c.finish = "length"
                self._pending.popleft()
                continue
            take = min(r.n - j, max(room, 1))
            new += [(i, s) for s in range(j, j + take)]
            room -= take
            entry[1] += take
            if entry[1] == r.n:
                self._pending.popleft()
        if not new:
            return
        if self._cache is None and self.engine.use_cache:
            # long enough for the longest prompt plus its completion (at most the context)
            need = max(len(self._prompt_window(p)) + r.max_tokens for p, r in zip(self.prompts, self.requests))
            self._cache = KVCache.for_model(self.model, 0, min(self.context, need))
        start = len(self._rows)
        logits = []
        if self._cache is not None:
            self._cache.add_rows(len(new))
        for b, (i, j) in enumerate(new):
            window = self._prompt_window(self.prompts[i])
            self._rows.append(_Row(i, self.completions[i][j], list(window), self._forced[i, j]))
            if self.engine.use_cache:
                k, v, lg = self._prefill(window)
                self._cache.set_rows([start + b], k, v)
            else:
                lg = self._full_logits([window])
            logits.append(lg)
            if j == self.requests[i].n - 1:  # last sample of this prompt admitted
                self._prefills.pop(tuple(window), None)
        new_logits = torch.cat(logits)
        self._logits = new_logits if self._logits is None or start == 0 else torch.cat([self._logits, new_logits])
        self._groups = None

    def _plan(self) -> tuple:
        """How this batch draws, recomputed when rows come or go: groups of rows with the same
        settings (None: greedy), each warped and drawn in one go; and the uniform numbers,
        drawn per generator in row order so a seeded request's samples depend only on it."""
        if self._groups is None:
            n, dev = len(self._rows), self.engine.device
            settings: dict = {}
            gens: dict = {}
            for b, row in enumerate(self._rows):
                r = self.requests[row.req]
                key = None if r.temperature <= 0 else (r.temperature, r.top_k, r.top_p)
                settings.setdefault(key, []).append(b)
                if key is not None:
                    g = self._gens[row.req]
                    gens.setdefault(id(g), (g, []))[1].append(b)
            order = [b for _, rows in gens.values() for b in rows]

            def index(rows):
                return slice(None) if rows == list(range(n)) else torch.tensor(rows, device=dev)

            self._groups = ([(key, index(rows)) for key, rows in settings.items()],
                            [(g, len(rows)) for g, rows in gens.values()],
                            None if order == list(range(n)) else torch.tensor(order, device=dev))
        return self._groups

    def _choose(self) -> tuple[list[int], list[Token]]:
        """The next token of every row: forced if one is queued, else drawn; and its log-prob."""
        groups, rands, order = self._plan()
        raw = self._logits
        cap = self.model.config.softcap
        capped = raw
        if cap and (self.engine.logprobs or any(key is not None for key, _ in groups)):
            capped = torch.tanh(raw * (1.0 / cap)) * cap  # the distribution the model was trained on
        n, dev = raw.size(0), raw.device
        u = None
        if rands:
            parts = [torch.rand(k, generator=g, device=dev) for g, k in rands]
            u = parts[0] if len(parts) == 1 else torch.cat(parts)
            if order is not None:
                u = torch.zeros(n, device=dev).index_put_((order,), u)
        if len(groups) == 1 and isinstance(groups[0][1], slice):
            key = groups[0][0]
            tokens = raw.argmax(-1) if key is None else draw(warp(capped, *key), u=u)
        else:
            tokens = torch.empty(n, dtype=torch.long, device=dev)
            for key, rows in groups:
                if key is None:  # greedy; tanh is monotonic: the argmax of the raw logits
                    tokens[rows] = raw[rows].argmax(-1)
                else:
                    tokens[rows] = draw(warp(capped[rows], *key), u=u[rows])
        forced = [(b, row.forced.popleft()) for b, row in enumerate(self._rows) if row.forced]
        for b, t in forced:
            tokens[b] = t
        # log p(token) = logit - logsumexp: a reduction, cheaper than a full log_softmax
        if self.engine.logprobs:
            logprobs = capped.gather(1, tokens[:, None]).squeeze(1) - capped.logsumexp(-1)
        toks = tokens.tolist()
        lps = logprobs.tolist() if self.engine.logprobs else [None] * len(toks)
        was_forced = {b for b, _ in forced}
        events = []
        for b, row in enumerate(self._rows):
            t, c, r = toks[b], row.comp, self.requests[row.req]
            sampled = b not in was_forced
            c.tokens.append(t)
            if lps[b] is not None:
                c.logprobs.append(lps[b])
            c.sampled.append(sampled)
            row.history.append(t)
            if sampled and t in r.stop:
                c.finish = "stop"
            elif len(c.tokens) >= r.max_tokens:
                c.finish = "length"
            events.append(Token(row.req, c.index, t, lps[b], sampled, c.finish))
        return toks, events

    def _keep(self, keep: list[int]) -> None:
        self._rows = [self._rows[i] for i in keep]
        if self._cache is not None:
            self._cache.keep_rows(keep)
        self._logits = self._logits[keep] if keep else None
        self._groups = None

    def _full_logits(self, seqs: list[list[int]]) -> torch.Tensor:
        """Next-token logits of each sequence computed from scratch: no cache."""
        out = []
        for s in seqs:
            idx = torch.tensor([s], device=self.engine.device)
            out.append(self.model.logits(self.model.hidden(idx)[:, -1], capped=False))
        return torch.cat(out)

    def _step(self, nxt: list[int]) -> None:
        """Feed each row its chosen token; the logits of the token after it."""
        if not self.engine.use_cache:
            for row in self._rows:  # the same window the cached path keeps (see _slide)
                if len(row.history) - row.start > self.context:
                    row.start = len(row.history) - self.keep
            self._logits = self._full_logits([row.history[row.start:] for row in self._rows])
            return
        cache = self._cache
        for b, row in enumerate(self._rows):
            if cache.lengths[b] >= cache.length:
                self._slide(b, row.history[:-1])
        idx = torch.tensor(nxt, device=self.engine.device)[:, None]
        self._logits = self.model.logits(self.model.hidden(idx, cache)[:, -1], capped=False)

    def _slide(self, b: int, history: list[int]) -> None:
        """Row b has filled the context: re-encode its most recent tokens (a sliding window).
        The new token then goes in after keep - 1 of them, as if all keep were re-encoded."""
        recent = history[-(self.keep - 1):] if self.keep > 1 else []
        if recent:
            one = KVCache.for_model(self.model, 1, len(recent))
            self.model.hidden(torch.tensor([recent], device=self.engine.device), one)
            self._cache.set_rows([b], one.k, one.v)
        else:
            self._cache.set_length(b, 0)
