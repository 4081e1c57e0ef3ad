"""Byte-level BPE training: split with a regex, count unique chunks once, merge incrementally.

    >>> from llmtool.tokenizer.bpe import train_tokenizer
    >>> tok = train_tokenizer(["hello hello world"] * 10, vocab_size=262, special_tokens=[])
    >>> tok.decode(tok.encode("hello world"))
    'hello world'

The algorithm (the same decisions as rustbpe / nanochat, checked in the tests):

1. Split every document with the pattern (GPT-4's by default) and count each distinct
   chunk once; chunks never merge across each other. This runs in a process pool; long
   documents are cut into pieces at places where the built-in patterns cannot have a
   chunk boundary that depends on what follows, so the counts equal a one-process run.
2. Every chunk starts as its UTF-8 bytes (ids 0..255). Repeat: merge the pair with the
   highest count over all chunk occurrences, ties broken by the smallest pair (a, b);
   occurrences are merged left to right without overlap; the new token gets id 256 + k.
   Only chunks containing the merged pair are visited, and pair counts are updated from
   the local change around each merged position (C extension `_bpe`, or the slow
   pure-Python `merge_loop_py` when the extension is not built).
3. Special tokens get the ids right after the last merge.
"""

from __future__ import annotations

import collections
import heapq
import os
from collections.abc import Iterable, Iterator

from llmtool.errors import BadInputError, UsageError

# GPT-4 (cl100k_base) split pattern, exactly as tiktoken has it.
GPT4 = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
        r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
# nanochat's variant: numbers split into groups of at most 2 digits (better for small vocabs).
GPT4_DIGITS2 = GPT4.replace(r"\p{N}{1,3}+", r"\p{N}{1,2}+")
# GPT-2 (r50k_base), tiktoken's faster equivalent of the original.
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
PATTERNS = {"gpt4": GPT4, "gpt4-digits2": GPT4_DIGITS2, "gpt2": GPT2}
DEFAULT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"]

# Each worker task holds about this many characters (big enough to amortise pickling).
_TASK_CHARS = 1 << 20
# Pieces of long documents; cut only at "non-space, newline | letter", where none of the
# built-in patterns can match across the cut or see past it (lookahead / `$`).
_PIECE_CHARS = 1 << 18


def resolve_pattern(pattern: str) -> str:
    """A pattern name (gpt4, gpt4-digits2, gpt2) or a custom regex, checked to compile."""
    pat = PATTERNS.get(pattern, pattern)
    if not pat:
        raise UsageError("--pattern: empty regex")
    import regex

    try:
        regex.compile(pat)
    except regex.error as e:
        raise UsageError(f"--pattern: invalid regex ({e})")
    # tiktoken compiles patterns with Rust's fancy-regex, which knows less than `regex`
    import tiktoken

    try:
        tiktoken.Encoding("pattern-check", pat_str=pat, mergeable_ranks={bytes([i]): i for i in range(256)},
                          special_tokens={})
    except ValueError as e:
        raise UsageError(f"--pattern: tiktoken cannot use this regex ({e})")
    return pat


def _cut_pieces(text: str, cut_re) -> Iterator[str]:
    if len(text) <= _PIECE_CHARS or cut_re is None:
        yield text
        return
    i = 0
    while len(text) - i > _PIECE_CHARS:
        m = cut_re.search(text, i + _PIECE_CHARS)
        if not m:
            break
        yield text[i:m.start()]
        i = m.start()
    yield text[i:]


# ------------------------------------------------------------------ counting (process pool)

_worker_re = None


def _init_worker(pat: str) -> None:
    # runs in each worker, or in this process with one worker: it must not touch signal
    # handling (llmtool.io.pool sets up the workers' own)
    global _worker_re
    import regex

    _worker_re = regex.compile(pat)


def _count_task(texts: list[str]) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for t in texts:
        c.update(_worker_re.findall(t))
    return c


def _tasks(texts: Iterable[str], cut_re, stats: dict) -> Iterator[list[str]]:
    batch, size = [], 0
    for t in texts:
        stats["docs"] += 1
        stats["chars"] += len(t)
        for piece in _cut_pieces(t, cut_re):
            batch.append(piece)
            size += len(piece)
            if size >= _TASK_CHARS:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def count_chunks(texts: Iterable[str], pattern: str, workers: int = 1) -> tuple[collections.Counter, dict]:
    """Count the distinct chunks of all texts: (Counter[str], {"docs", "chars"})."""
    import regex

    cut_re = regex.compile(r"(?<=\S\n)(?=\p{L})") if pattern in PATTERNS.values() else None
    stats = {"docs": 0, "chars": 0}
    total: collections.Counter = collections.Counter()
    tasks = _tasks(texts, cut_re, stats)
    from llmtool.io.pool import WorkerPool

    # fork: workers start in milliseconds and need nothing from the parent but the regex;
    # the pool pulls tasks lazily from the reader (a bounded number in flight)
    with WorkerPool(_count_task, workers, init=_init_worker, initargs=(pattern,)) as pool:
        for c in pool.map(tasks):
            total.update(c)
    return total, stats


# ------------------------------------------------------------------ the merge loop


def merge_loop_py(words: list[bytes], counts: list[int], n_merges: int) -> list[tuple[int, int, int]]:
    """The merge loop in pure Python (slow twin of `_bpe.train`, same results)."""
    seqs = [list(w) for w in words]
    pair_count: dict[tuple[int, int], int] = collections.defaultdict(int)
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for wi, s in enumerate(seqs):
        c = counts[wi]
        if not c:
            continue
        for p in zip(s, s[1:]):
            pair_count[p] += c
            where[p].add(wi)
    # max-heap via negated counts; on a tie heapq pops the smallest pair, as required
    heap = [(-c, p) for p, c in pair_count.items() if c > 0]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        cur = pair_count.get(pair, 0)
        if cur <= 0:
            continue
        if cur != -negc:
            heapq.heappush(heap, (-cur, pair))
            continue
        a, b = pair
        nid = 256 + len(merges)
        merges.append((a, b, cur))
        touched = set()
        for wi in where.pop(pair, ()):
            s, c = seqs[wi], counts[wi]
            out = []
            i, n = 0, len(s)
            while i < n:
                if i + 1 < n and s[i] == a and s[i + 1] == b:
                    if out:
                        x = out[-1]
                        pair_count[(x, a)] -= c
                        pair_count[(x, nid)] += c
                        where[(x, nid)].add(wi)
                        touched.add((x, nid))
                    pair_count[(a, b)] -= c
                    if i + 2 < n:
                        y = s[i + 2]
                        pair_count[(b, y)] -= c
                        pair_count[(nid, y)] += c
                        where[(nid, y)].add(wi)
                        touched.add((nid, y))
                    out.append(nid)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[wi] = out
        for p in touched:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
    return merges


def merge_loop(words: list[bytes], counts: list[int], n_merges: int) -> list[tuple[int, int, int]]:
    try:
        from llmtool.tokenizer import _bpe
    except ImportError:
        from llmtool.io.console import warn

        warn("the C extension llmtool.tokenizer._bpe is not built (pip install -e .); "
             "training with the slow pure-Python merge loop")
        return merge_loop_py(words, counts, n_merges)
    return _bpe.train(words, counts, n_merges)


def ranks_from_merges(merges: list[tuple[int, int, int]]) -> dict[bytes, int]:
    """Token bytes -> rank. A merge that repeats an existing byte string keeps its id unused."""
    vocab = [bytes([i]) for i in range(256)]
    for a, b, _ in merges:
        vocab.append(vocab[a] + vocab[b])
    ranks: dict[bytes, int] = {}
    for i, t in enumerate(vocab):
        ranks.setdefault(t, i)
    return ranks


def train_tokenizer(texts: Iterable[str], vocab_size: int, pattern: str = "gpt4",
                    special_tokens: list[str] | None = None, workers: int = 1, name: str = "bpe",
                    on_counted=None):
    """Train a Tokenizer on texts; `.extra` records corpus size, merges and an early stop.

    Raises BadInputError for an empty corpus, UsageError for a vocab too small to hold the
    256 bytes and the special tokens.
    """
    from llmtool.tokenizer.file import Tokenizer

    specials = list(DEFAULT_SPECIALS if special_tokens is None else special_tokens)
    if len(set(specials)) != len(specials):
        raise UsageError("--special: a special token is given twice")
    if any(not s for s in specials):
        raise UsageError("--special: empty special token")
    floor = 256 + len(specials)
    if vocab_size < floor:
        raise UsageError(f"--vocab-size {vocab_size} is too small: it must hold the 256 byte tokens and "
                         f"{len(specials)} special tokens (at least {floor})")
    pat = resolve_pattern(pattern)
    counter, stats = count_chunks(texts, pat, workers)
    if not counter:
        raise BadInputError("empty corpus: no text to train on")
    if on_counted:
        on_counted(stats, len(counter))
    words = [s.encode("utf-8", errors="surrogatepass") for s in counter]
    counts = list(counter.values())
    del counter
    wanted = vocab_size - floor
    merges = merge_loop(words, counts, wanted)
    ranks = ranks_from_merges(merges)
    top = 256 + len(merges)
    spec_ids = {s: top + i for i, s in enumerate(specials)}
    extra = {"docs": stats["docs"], "chars": stats["chars"], "unique_chunks": len(words),
             "merges": len(merges), "merges_wanted": wanted,
             "last_merge_count": merges[-1][2] if merges else None,
             "stopped_early": len(merges) < wanted, "pattern_name": pattern if pattern in PATTERNS else "custom"}
    return Tokenizer(name, pat, ranks, spec_ids, extra=extra)


def bytes_per_token(tok, texts: Iterable[str], max_chars: int = 2_000_000) -> float | None:
    """UTF-8 bytes per token over (the first `max_chars` of) texts; None when empty."""
    nbytes = ntok = seen = 0
    batch = []
    for t in texts:
        t = t[: max_chars - seen]
        seen += len(t)
        batch.append(t)
        if seen >= max_chars:
            break
    for ids, t in zip(tok.encode_batch(batch, num_threads=os.cpu_count() or 1), batch):
        nbytes += len(t.encode("utf-8", errors="surrogatepass"))
        ntok += len(ids)
    return nbytes / ntok if ntok else None
