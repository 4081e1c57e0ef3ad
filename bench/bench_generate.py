"""Benchmark: llmtool's generation engine vs Hugging Face transformers' `generate`, CPU.

Same shape as bench_pretrain (4 layers, width 256, 4 heads, context 256, a 4096-token BPE
trained on tinyshakespeare), random weights (throughput does not depend on training), and
GSM8K questions as prompts (what RL samples from). Both tools sample at temperature 1
with no top-k, exactly 128 new tokens per sample (no early stop), one torch thread count:

1. 16 samples of one prompt: llmtool prefills the prompt once and copies its KV cache to
   the 16 rows; transformers (`num_return_sequences=16`) runs 16 copies of the prompt;
2. 16 different prompts, one sample each: llmtool puts rows of different lengths side by
   side, each at its own position; transformers pads on the left with an attention mask.

Tokens/s = new tokens / wall-clock seconds, median of alternating rounds; also per CPU-second
(steadier than wall-clock on a shared machine; with several threads it counts all of them). Correctness:
greedy agreement of the 16 prompts decoded together vs each alone, and with vs without
the KV cache (both should be 100%).

    python bench/bench_generate.py           # ~1-2 minutes on 2 cores
    BENCH_ROUNDS=5 BENCH_THREADS=1 python bench/bench_generate.py
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
BOOK = DATA / "text" / "tinyshakespeare.txt"
GSM8K = DATA / "post" / "gsm8k" / "train.jsonl.gz"

VOCAB, DEPTH, WIDTH, HEADS, CONTEXT = 4096, 4, 256, 4, 256
SAMPLES, NEW = 16, 128
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def threads() -> int:
    if os.environ.get("BENCH_THREADS"):
        return int(os.environ["BENCH_THREADS"])
    cores = len(os.sched_getaffinity(0))
    # on a machine already busy, one thread gives both tools stabler figures
    return 1 if os.getloadavg()[0] > 0.5 * cores else cores


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from llmtool.model.engine import Engine, Request
    from llmtool.model.gpt import GPT, GPTConfig
    from llmtool.tokenizer.file import load_tokenizer

    hf_logging.set_verbosity_error()
    nthreads = threads()
    torch.set_num_threads(nthreads)
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory(prefix="bench_generate.") as tmp:
        subprocess.run([sys.executable, "-m", "llmtool", "bpe-train", str(BOOK), "-V", str(VOCAB), "-o",
                        f"{tmp}/tok.json", "-q"], check=True, cwd=ROOT)
        tok = load_tokenizer(f"{tmp}/tok.json")
    with gzip.open(GSM8K, "rt") as f:
        questions = [json.loads(line)["question"] for line in f]
    # prompts that leave room for NEW tokens in GPT-2's fixed 256 positions
    prompts = [p for p in ([tok.bos_id] + tok.encode(q) for q in questions) if len(p) + NEW <= CONTEXT]
    prompts = prompts[:SAMPLES]
    V = tok.vocab_size
    print(f"shape: {DEPTH} layers, width {WIDTH}, {HEADS} heads, context {CONTEXT}, vocab {V}; CPU, "
          f"{nthreads} torch thread(s); prompts: GSM8K questions of {min(map(len, prompts))}-"
          f"{max(map(len, prompts))} tokens")

    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=V, n_layer=DEPTH, n_embd=WIDTH, n_head=HEADS, n_kv_head=HEADS,
                         context=CONTEXT))
    with torch.no_grad():  # the real init zeroes the output layers: give them weights
        ours.lm_head.weight.normal_(0, 0.05)
        for b in ours.blocks:
            b.attn.c_proj.weight.normal_(0, 0.02)
            b.mlp.c_proj.weight.normal_(0, 0.02)
    ours.eval()
    cfg = GPT2Config(vocab_size=V, n_positions=CONTEXT, n_embd=WIDTH, n_layer=DEPTH, n_head=HEADS,
                     bos_token_id=tok.bos_id, eos_token_id=tok.eot_id)
    cfg._attn_implementation = "sdpa"
    hf = GPT2LMHeadModel(cfg).eval()
    pad = tok.eot_id
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def ours_one():
        out = Engine(ours).generate([Request(prompts[0], n=SAMPLES, max_tokens=NEW, seed=0)])
        return sum(len(c.tokens) for c in out[0])

    def ours_many():
        out = Engine(ours).generate([Request(p, max_tokens=NEW, seed=i) for i, p in enumerate(prompts)])
        return sum(len(c[0].tokens) for c in out)

    def hf_run(x, m, n):
        with torch.no_grad():
            out = hf.generate(x, attention_mask=m, do_sample=True, top_k=0, num_return_sequences=n,
                              max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=pad)
        return out[:, x.size(1):].numel()

    one = torch.tensor([prompts[0]])
    cases = {
        f"1. {SAMPLES} samples of one {len(prompts[0])}-token prompt":
            (ours_one, lambda: hf_run(one, torch.ones_like(one), SAMPLES)),
        f"2. {len(prompts)} different prompts, one sample each": (ours_many, lambda: hf_run(ids, mask, 1)),
    }
    for title, (f_ours, f_hf) in cases.items():
        f_ours(), f_hf()  # warm up
        wall = {"llmtool": [], "transformers": []}
        cpu = {"llmtool": [], "transformers": []}
        for _ in range(ROUNDS):  # alternate, so both see the same machine load
            for name, f in (("llmtool", f_ours), ("transformers", f_hf)):
                t, c = time.perf_counter(), time.process_time()
                n = f()
                wall[name].append(n / (time.perf_counter() - t))
                cpu[name].append(n / (time.process_time() - c))
        a, b = statistics.median(wall["llmtool"]), statistics.median(wall["transformers"])
        ca, cb = statistics.median(cpu["llmtool"]), statistics.median(cpu["transformers"])
        print(f"\n{title}, {NEW} new tokens each (median of {ROUNDS})")
        print(f"   llmtool engine        {a:8.1f} tokens/s   ({ca:8.1f} per CPU-second)")
        print(f"   transformers generate {b:8.1f} tokens/s   ({cb:8.1f} per CPU-second)")
        print(f"   ratio: {a / b:.2f}x wall-clock, {ca / cb:.2f}x CPU time (target >= 2x)")

    greedy = [Request(p, max_tokens=NEW, temperature=0) for p in prompts]
    batch = [c[0].tokens for c in Engine(ours).generate(greedy)]
    alone = [Engine(ours).generate([r])[0][0].tokens for r in greedy]
    uncached = [c[0].tokens for c in Engine(ours, use_cache=False).generate(greedy[:4])]
    same = sum(x == y for a, b in zip(batch, alone) for x, y in zip(a, b)) / sum(map(len, alone))
    same_nc = sum(x == y for a, b in zip(batch, uncached) for x, y in zip(a, b)) / sum(map(len, uncached))
    print(f"\ngreedy agreement: batch of {len(prompts)} vs each alone {100 * same:.1f}%, "
          f"cached vs uncached (4 prompts) {100 * same_nc:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
