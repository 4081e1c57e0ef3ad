"""Benchmark: llmtool bpe-train vs HF tokenizers vs rustbpe; llmtool tokenize vs bare tiktoken.

    python bench/bench_tokenizer.py          (or: make bench / python -m bench tokenizer)

1. bpe-train, vocab 32768 (32512 merges for every tool) on the public-domain books in
   ../shared/data/text: the first 90% of each book trains, the last 10% is held out.
   Each tool runs in its own subprocess: wall time of the training call (best of
   BENCH_REPEATS), peak RSS of the process plus its worker processes, held-out
   bytes/token, and agreement of llmtool's merges with rustbpe's (same pattern).
2. Scaling: the same at about 10x the data (the books x6 plus 30 MB of real web text
   from ../shared/data/dedup): unique chunks, time, docs/s, memory.
3. tokenize: a Parquet table of real documents (web text + book paragraphs, ~38 MB) to a
   token file with llmtool, vs reading the same Parquet and a bare tiktoken
   encode_ordinary_batch loop, both with the same number of threads (all cores); MB/s.
4. Compression on the held-out book text: our 32k vs tiktoken gpt2 and cl100k_base.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
VOCAB_MERGES = 32512  # 32768 ranks: rustbpe's vocab 32768 has no specials
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>"]


def books() -> tuple[list[str], list[str]]:
    train, held = [], []
    for p in sorted((DATA / "text").glob("*.txt")):
        t = p.read_text(encoding="utf-8", errors="replace")
        cut = t.find("\n", int(len(t) * 0.9))
        cut = cut if cut > 0 else int(len(t) * 0.9)
        train.append(t[:cut])
        held.append(t[cut:])
    return train, held


def web_docs() -> list[str]:
    with gzip.open(DATA / "dedup" / "near_dup_corpus.part0.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def corpus(scale: str) -> list[str]:
    train, _ = books()
    if scale == "1x":
        return train
    return train * 6 + web_docs()


# ------------------------------------------------------------------ children (one tool each)


def child_train(tool: str, scale: str) -> dict:
    texts = corpus(scale)
    held = books()[1]
    from llmtool.tokenizer.bpe import GPT4

    t0 = time.perf_counter()
    if tool == "llmtool":
        from llmtool.tokenizer.bpe import train_tokenizer

        tok = train_tokenizer(texts, VOCAB_MERGES + 256 + len(SPECIALS), special_tokens=SPECIALS,
                              workers=os.cpu_count() or 1)
        seconds = time.perf_counter() - t0
        ranks = tok.mergeable_ranks
        unique = tok.extra["unique_chunks"]
    elif tool == "rustbpe":
        import rustbpe

        r = rustbpe.Tokenizer()
        r.train_from_iterator(iter(texts), VOCAB_MERGES + 256, pattern=GPT4)
        seconds = time.perf_counter() - t0
        ranks = {bytes(b): i for b, i in r.get_mergeable_ranks()}
        unique = None
    elif tool == "hf":
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT4), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=VOCAB_MERGES + 256 + 1, show_progress=False, min_frequency=0,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=["<|endoftext|>"])
        tk.train_from_iterator(texts, trainer)
        seconds = time.perf_counter() - t0
        ranks = None
        unique = None
    else:
        raise SystemExit(f"unknown tool {tool}")
    held_bytes = sum(len(t.encode()) for t in held)
    if tool == "hf":
        ntok = sum(len(e.ids) for e in tk.encode_batch(held))
        vocab = tk.get_vocab_size()
    else:
        import tiktoken

        enc = tiktoken.Encoding("b", pat_str=GPT4, mergeable_ranks=ranks, special_tokens={})
        ntok = sum(len(x) for x in enc.encode_ordinary_batch(held))
        vocab = len(ranks)
    out = {"tool": tool, "scale": scale, "seconds": seconds, "docs": len(texts),
           "chars": sum(map(len, texts)), "vocab": vocab, "heldout_bytes_per_token": held_bytes / ntok,
           "unique_chunks": unique,
           "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if ranks is not None and scale == "1x":
        out["ranks_b64"] = None  # not sent back: compared in the parent via a file
        path = os.environ.get("BENCH_RANKS_OUT")
        if path:
            import base64

            Path(path).write_text(json.dumps(sorted((i, base64.b64encode(t).decode()) for t, i in ranks.items())))
    return out


def child_tokenize(tool: str, parquet: str, out_dir: str) -> dict:
    import pyarrow.parquet as pq

    threads = os.cpu_count() or 1
    if tool == "llmtool":
        from llmtool.tokenizer.file import load_tokenizer
        from llmtool.tokenizer.pipeline import tokenize_to_file

        tok = load_tokenizer("gpt2")
        _ = tok.encoding  # build outside the timed part, like the baseline
        t0 = time.perf_counter()
        stats = tokenize_to_file([parquet], tok, os.path.join(out_dir, "bench.bin"), tok.eot_id, {}, workers=threads)
        seconds = time.perf_counter() - t0
        ntok = stats["tokens"] - stats["docs"]  # without separators
        nbytes = sum(len(t.encode()) for t in pq.read_table(parquet).column("text").to_pylist() if t)
    else:
        from llmtool.tokenizer.file import load_tokenizer

        enc = load_tokenizer("gpt2").encoding  # the same tiktoken object, built from the same ranks
        t0 = time.perf_counter()
        texts = [t for t in pq.read_table(parquet, columns=["text"]).column("text").to_pylist() if t]
        ids = enc.encode_ordinary_batch(texts, num_threads=threads)
        seconds = time.perf_counter() - t0
        ntok = sum(map(len, ids))
        nbytes = sum(len(t.encode()) for t in texts)
    return {"tool": tool, "seconds": seconds, "tokens": ntok, "bytes": nbytes,
            "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ------------------------------------------------------------------ parent


def run_child(*args, env=None) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    if p.returncode:
        raise SystemExit(f"child {args} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    r = min(runs, key=lambda x: x["seconds"])
    r = dict(r)
    r["peak_mb"] = max(x["rss_self_mb"] + x.get("rss_children_mb", 0) for x in runs)
    return r


def bench_train(tmp: str) -> None:
    print(f"## bpe-train: {VOCAB_MERGES} merges (vocab 32768 + specials) on the books, best of {REPEATS}")
    res = {}
    for tool in ("llmtool", "rustbpe", "hf"):
        n = REPEATS if tool != "hf" else max(1, min(REPEATS, 2))
        runs = [run_child("train", tool, "1x", env={"BENCH_RANKS_OUT": os.path.join(tmp, f"{tool}.json")})
                for _ in range(n)]
        res[tool] = best(runs)
    mine = json.loads(Path(tmp, "llmtool.json").read_text())
    theirs = json.loads(Path(tmp, "rustbpe.json").read_text())
    same = sum(1 for a, b in zip(mine, theirs) if a == b)
    r0 = res["llmtool"]
    print(f"corpus: {r0['docs']} docs, {r0['chars'] / 1e6:.1f} M chars, {r0['unique_chunks']:,} unique chunks")
    print(f"{'tool':10} {'seconds':>8} {'peak MB':>8} {'held-out B/tok':>15} {'vocab':>7}")
    for tool, r in res.items():
        print(f"{tool:10} {r['seconds']:8.2f} {r['peak_mb']:8.0f} {r['heldout_bytes_per_token']:15.4f} {r['vocab']:7}")
    print(f"time ratio llmtool/hf: {r0['seconds'] / res['hf']['seconds']:.2f} (target <= 1.0); "
          f"llmtool/rustbpe: {r0['seconds'] / res['rustbpe']['seconds']:.2f} (target <= 2.0)")
    print(f"memory ratio llmtool/hf: {r0['peak_mb'] / res['hf']['peak_mb']:.2f} (target <= 1.0); "
          f"llmtool/rustbpe: {r0['peak_mb'] / res['rustbpe']['peak_mb']:.2f}")
    print(f"correctness: {same}/{len(theirs)} ranks identical to rustbpe's, in the same order "
          f"({'all' if same == len(theirs) == len(mine) else 'NOT all'})")

    print("\n## scaling: ~10x the data (books x6 + 30 MB web text), one run each")
    big = {tool: best([run_child("train", tool, "10x")]) for tool in ("llmtool", "rustbpe", "hf")}
    print(f"{'tool':10} {'M chars':>8} {'docs':>6} {'seconds':>8} {'docs/s':>8} {'MB/s':>6} {'peak MB':>8} {'vs 1x time':>10}")
    for tool, r in big.items():
        print(f"{tool:10} {r['chars'] / 1e6:8.1f} {r['docs']:6} {r['seconds']:8.2f} {r['docs'] / r['seconds']:8.0f} "
              f"{r['chars'] / 1e6 / r['seconds']:6.1f} {r['peak_mb']:8.0f} {r['seconds'] / res[tool]['seconds']:9.1f}x")
    print(f"unique chunks at 10x (llmtool): {big['llmtool']['unique_chunks']:,}")
    print(f"time ratio at 10x llmtool/hf: {big['llmtool']['seconds'] / big['hf']['seconds']:.2f}; "
          f"llmtool/rustbpe: {big['llmtool']['seconds'] / big['rustbpe']['seconds']:.2f}")


def bench_tokenize(tmp: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    train, held = books()
    docs = [d for t in train + held for d in t.split("\n\n\n") if d.strip()] + web_docs()
    parquet = os.path.join(tmp, "docs.parquet")
    pq.write_table(pa.table({"text": docs}), parquet, row_group_size=1000, compression="zstd")
    threads = os.cpu_count() or 1
    print(f"\n## tokenize (gpt2): {len(docs)} docs, {sum(map(len, docs)) / 1e6:.1f} M chars of Parquet, "
          f"{threads} threads, best of {REPEATS}")
    res = {tool: best([run_child("tokenize", tool, parquet, tmp) for _ in range(REPEATS)])
           for tool in ("llmtool", "tiktoken")}
    print(f"{'tool':28} {'seconds':>8} {'MB/s':>7} {'tokens':>10}")
    names = {"llmtool": "llmtool tokenize -> .bin", "tiktoken": "bare tiktoken batch (no file)"}
    for tool, r in res.items():
        print(f"{names[tool]:28} {r['seconds']:8.2f} {r['bytes'] / 1e6 / r['seconds']:7.1f} {r['tokens']:10}")
    ratio = (res["llmtool"]["bytes"] / res["llmtool"]["seconds"]) / (res["tiktoken"]["bytes"] / res["tiktoken"]["seconds"])
    print(f"throughput ratio llmtool/tiktoken: {ratio:.2f} (target >= 0.90); "
          f"same token count: {res['llmtool']['tokens'] == res['tiktoken']['tokens']}")


def bench_compression() -> None:
    from llmtool.tokenizer.bpe import train_tokenizer
    from llmtool.tokenizer.file import load_tokenizer

    train, held = books()
    held_bytes = sum(len(t.encode()) for t in held)
    ours = train_tokenizer(train, 32768, workers=os.cpu_count() or 1)
    print("\n## compression on held-out book text (last 10% of each book)")
    print(f"{'tokenizer':28} {'vocab':>7} {'bytes/token':>12}")
    rows = [("llmtool 32k (trained on books)", ours)]
    os.environ.setdefault("LLMTOOL_TIKTOKEN_DIR", str(DATA / "tiktoken"))
    for name in ("gpt2", "cl100k_base"):
        rows.append((f"tiktoken {name}", load_tokenizer(name)))
    for label, tok in rows:
        ntok = sum(len(x) for x in tok.encode_batch(held))
        print(f"{label:28} {tok.vocab_size:7} {held_bytes / ntok:12.3f}")


def main() -> None:
    if not (DATA / "text").exists():
        raise SystemExit(f"shared data not found at {DATA}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_train(tmp)
        bench_tokenize(tmp)
    bench_compression()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = child_train(*rest) if kind == "train" else child_tokenize(*rest)
        print(json.dumps(result))
    else:
        main()
