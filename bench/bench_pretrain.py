"""Benchmark: llmtool's GPT and training loop vs Hugging Face transformers' GPT2LMHeadModel, CPU.

Same data, tokenizer, width, depth, heads, context and batch, in one run:

1. training throughput (tokens/s), measured in alternating rounds: llmtool with AdamW (the
   like-for-like figure), llmtool with Muon (its default), GPT-2 with AdamW;
2. quality: validation bits per byte on a held-out book after the same wall-clock budget
   of training each (llmtool with its defaults; GPT-2 with the nanoGPT recipe);
3. sampling: greedy tokens/s with llmtool's KV cache vs transformers' `generate` (which
   also caches), and agreement of llmtool's cached and uncached greedy decoding;
4. only where CUDA is available: a ~90M-parameter model in bf16 + torch.compile for a
   minute (tokens/s, MFU) and its first losses against fp32 on the CPU.

    python bench/bench_pretrain.py            # ~5-6 minutes on 2 cores
    BENCH_BUDGET=30 python bench/bench_pretrain.py

Environment: BENCH_BUDGET (seconds of training per model for the quality test, default 120),
BENCH_THREADS (torch threads, default: 1 when the machine is already busy, else all cores),
BENCH_HF_LR (GPT-2's peak learning rate, default 1e-3), GPU_SECONDS (part 4, default 60).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
BOOKS = DATA / "text"
TRAIN_BOOKS = ["moby_dick.txt", "HP_lovecraft_completed_works.txt", "edgar_allen_poe_completed_works.txt"]
VAL_BOOK = "pride_and_prejudice.txt"

VOCAB, DEPTH, WIDTH, HEADS, CONTEXT, BATCH = 4096, 4, 256, 4, 256, 16
BUDGET = float(os.environ.get("BENCH_BUDGET", "120"))
HF_LR = float(os.environ.get("BENCH_HF_LR", "1e-3"))  # nanoGPT's lr for small models


def llmtool(*args) -> None:
    subprocess.run([sys.executable, "-m", "llmtool", *map(str, args), "-q"], check=True, cwd=ROOT)


def prepare(tmp: Path) -> tuple[Path, Path, Path]:
    tok = tmp / "tok.json"
    train, val = tmp / "train.bin", tmp / "val.bin"
    llmtool("bpe-train", *[BOOKS / b for b in TRAIN_BOOKS], "-V", VOCAB, "-o", tok)
    llmtool("tokenize", *[BOOKS / b for b in TRAIN_BOOKS], "-t", tok, "-o", train)
    llmtool("tokenize", BOOKS / VAL_BOOK, "-t", tok, "-o", val)
    return tok, train, val


def threads() -> int:
    if os.environ.get("BENCH_THREADS"):
        return int(os.environ["BENCH_THREADS"])
    cores = len(os.sched_getaffinity(0))
    # On a machine already busy, several OpenMP threads per process wait on each other at
    # every operator; one thread then gives both tools stabler (and faster) figures.
    return 1 if os.getloadavg()[0] > 0.5 * cores else cores


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up even when piped to a file
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from llmtool.io.tokfile import TokenFile
    from llmtool.model.generate import generate
    from llmtool.model.gpt import GPT, GPTConfig
    from llmtool.tokenizer.file import load_tokenizer
    from llmtool.train import optim
    from llmtool.train.data import TokenWindows
    from llmtool.train.device import setup
    from llmtool.train.evaluate import evaluate, token_byte_lengths
    from llmtool.train.loop import TrainConfig, Trainer
    from llmtool.train.report import Reporter

    hf_logging.set_verbosity_error()
    nthreads = threads()
    torch.set_num_threads(nthreads)
    env = setup("cpu")  # also flushes denormals, for both models
    tmp = Path(tempfile.mkdtemp(prefix="bench_pretrain."))
    t0 = time.perf_counter()
    tok_path, train_path, val_path = prepare(tmp)
    tok = load_tokenizer(tok_path)
    n_train, n_val = len(TokenFile(train_path)), len(TokenFile(val_path))
    print(f"data: {n_train:,} training tokens ({', '.join(TRAIN_BOOKS)}), {n_val:,} held-out tokens ({VAL_BOOK}); "
          f"BPE vocab {VOCAB} (prepared in {time.perf_counter() - t0:.0f}s)")
    print(f"shape: {DEPTH} layers, width {WIDTH}, {HEADS} heads, context {CONTEXT}, batch {BATCH} sequences "
          f"({BATCH * CONTEXT} tokens/step); CPU, {nthreads} torch thread(s)")
    src = TokenWindows(train_path, CONTEXT, seed=0)
    val = TokenWindows(val_path, CONTEXT)
    token_bytes = token_byte_lengths(tok, VOCAB)

    def ours(seed=0):
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=DEPTH, n_embd=WIDTH, n_head=HEADS,
                             n_kv_head=HEADS, context=CONTEXT))

    def gpt2(seed=0):
        torch.manual_seed(seed)
        cfg = GPT2Config(vocab_size=tok.vocab_size, n_positions=CONTEXT, n_embd=WIDTH, n_layer=DEPTH, n_head=HEADS,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tok.bos_id,
                         eos_token_id=tok.eot_id)
        cfg._attn_implementation = "sdpa"
        return GPT2LMHeadModel(cfg)

    def hf_loss(model, x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))

    # ------------------------------------------------------------ 1. throughput
    def stepper(kind):
        if kind == "gpt2":
            m = gpt2()
            opts = [torch.optim.AdamW(m.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)]
            loss_fn = hf_loss
        else:
            m = ours()
            opts = optim.build_optimizers(m, "adamw" if kind == "llmtool-adamw" else "muon")
            loss_fn = lambda mm, x, y: mm(x, y)  # noqa: E731
        m.train()
        state = {"step": 0}

        def step():
            x, y = src.batch(state["step"], 0, BATCH)
            loss_fn(m, x, y).backward()
            for o in opts:
                o.step()
                o.zero_grad(set_to_none=True)
            state["step"] += 1
        return step

    kinds = ["llmtool-adamw", "gpt2", "llmtool-muon"]
    steppers = {k: stepper(k) for k in kinds}
    for k in kinds:  # warm up allocators and caches
        steppers[k]()
    speeds = {k: [] for k in kinds}
    for _ in range(3):
        for k in kinds:
            n = 4
            t = time.perf_counter()
            for _ in range(n):
                steppers[k]()
            speeds[k].append(n * BATCH * CONTEXT / (time.perf_counter() - t))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    del steppers
    print("\n1. training throughput (median of 3 alternating rounds)")
    for k in kinds:
        print(f"   {k:15s} {med[k]:8.0f} tokens/s")
    print(f"   ratio llmtool/GPT-2: {med['llmtool-adamw'] / med['gpt2']:.2f}x with AdamW (like for like), "
          f"{med['llmtool-muon'] / med['gpt2']:.2f}x with Muon (target >= 1.2x)")

    # ------------------------------------------------------------ 2. quality after the same time
    def hf_eval(m):
        m.eval()
        lsum, bsum, nsum = 0.0, 0, 0
        with torch.no_grad():
            for x, y in val.sequential(1 << 16, BATCH):
                logits = m(input_ids=x).logits.float()
                losses = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
                nb = token_bytes[y.reshape(-1)]
                lsum += float(losses[nb > 0].sum())
                bsum += int(nb.sum())
                nsum += y.numel()
        return lsum / (math.log(2) * bsum)

    torch.manual_seed(0)
    cfg = TrainConfig(context=CONTEXT, micro_batch=BATCH, total_batch=BATCH * CONTEXT, max_time=BUDGET,
                      log_every=0, seed=0)
    rep = Reporter("bench", master=True)
    rep.quiet = True
    m_ours = ours()
    trainer = Trainer(m_ours, cfg, env, src, tmp / "ours", tokenizer=tok, reporter=rep)
    res = trainer.run()
    ours_bpb = evaluate(m_ours, val.sequential(1 << 16, BATCH), env, token_bytes)["val_bpb"]

    m_hf = gpt2()
    m_hf.train()
    opt = torch.optim.AdamW(m_hf.parameters(), lr=HF_LR, betas=(0.9, 0.95), weight_decay=0.1)
    warm, elapsed, hf_steps = 20, 0.0, 0
    while elapsed < BUDGET:  # nanoGPT's recipe: warmup, then decay to 10% over the (time) budget
        t = time.perf_counter()
        frac = elapsed / BUDGET
        lr_mult = (hf_steps + 1) / warm if hf_steps < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = HF_LR * lr_mult
        x, y = src.batch(hf_steps, 0, BATCH)
        hf_loss(m_hf, x, y).backward()
        torch.nn.utils.clip_grad_norm_(m_hf.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        hf_steps += 1
        elapsed += time.perf_counter() - t
    hf_bpb = hf_eval(m_hf)
    print(f"\n2. held-out bits per byte after {BUDGET:.0f}s of training each (lower is better)")
    print(f"   llmtool (Muon)   {ours_bpb:.4f}  ({res['steps']} steps, {res['tokens']:,} tokens)")
    print(f"   GPT-2 (AdamW)    {hf_bpb:.4f}  ({hf_steps} steps, {hf_steps * BATCH * CONTEXT:,} tokens, lr {HF_LR:g})")
    print(f"   difference: {hf_bpb - ours_bpb:+.4f} bits/byte in llmtool's favour (target > 0)")

    # ------------------------------------------------------------ 3. sampling
    prompt = tok.encode("It was a dark and stormy night; the rain fell in torrents")
    prompt = [tok.bos_id] + prompt
    new = 200
    m_ours.eval()
    m_hf.eval()

    def ours_gen():
        return generate(m_ours, [prompt], new, temperature=0)[0]

    def hf_gen():
        with torch.no_grad():
            out = m_hf.generate(torch.tensor([prompt]), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                use_cache=True, pad_token_id=tok.eot_id)
        return out[0, len(prompt):].tolist()

    ours_gen(), hf_gen()
    times = {"llmtool": [], "gpt2": []}
    for _ in range(3):
        for name, f in (("llmtool", ours_gen), ("gpt2", hf_gen)):
            t = time.perf_counter()
            toks = f()
            times[name].append(len(toks) / (time.perf_counter() - t))
    cached = ours_gen()
    uncached = generate(m_ours, [prompt], new, temperature=0, use_cache=False)[0]
    agree = sum(a == b for a, b in zip(cached, uncached)) / new
    s_ours, s_hf = statistics.median(times["llmtool"]), statistics.median(times["gpt2"])
    print(f"\n3. greedy sampling, batch 1, {len(prompt)}-token prompt, {new} new tokens (median of 3)")
    print(f"   llmtool KV cache      {s_ours:8.1f} tokens/s")
    print(f"   transformers generate {s_hf:8.1f} tokens/s")
    print(f"   ratio: {s_ours / s_hf:.2f}x (target >= 1.5x); cached vs uncached greedy agreement {100 * agree:.1f}%")
    print(f"   llmtool sample: {tok.decode(cached[:40])!r}")
    if torch.cuda.is_available():
        gpu_check(train_path, tok)
    else:
        print("\n4. CUDA path: skipped (no GPU here)")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    return 0


def gpu_check(train_path: Path, tok, device: str = "cuda", depth: int = 12, seconds: float | None = None) -> None:
    """On a GPU: a ~100M-parameter model (depth 12) in bf16 with torch.compile for GPU_SECONDS;
    tokens/s, MFU, and the first losses against the same model and batches in fp32 on the CPU."""
    import torch

    from llmtool.model.gpt import GPT, GPTConfig
    from llmtool.train.data import TokenWindows
    from llmtool.train.device import setup
    from llmtool.train.loop import TrainConfig, Trainer
    from llmtool.train.report import Reporter

    seconds = seconds or float(os.environ.get("GPU_SECONDS", "60"))
    ctx, short, first = 1024, 256, 3

    def run(dev, micro, train_ctx, total, steps=None, max_time=None, compile_=False):
        env = setup(dev)
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_depth(depth, tok.vocab_size, context=ctx))
        cfg = TrainConfig(context=train_ctx, micro_batch=micro, total_batch=total, max_steps=steps,
                          max_time=max_time, log_every=1, seed=0, compile=compile_, warmdown=0.0)
        rep = Reporter("bench", master=True)
        rep.quiet = True
        out = Path(tempfile.mkdtemp(prefix="bench_gpu.")) / dev
        Trainer(model, cfg, env, TokenWindows(train_path, train_ctx, seed=0), out, reporter=rep).run()
        return [m for m in rep.metrics if "loss" in m], model.num_params()

    # the same 8 short sequences per step: one micro-batch on the GPU (bf16), two on the CPU (fp32)
    gpu_rows, params = run(device, 8, short, 8 * short, steps=first)
    cpu_rows, _ = run("cpu", 4, short, 8 * short, steps=first)
    rows, _ = run(device, 16, ctx, 16 * ctx, max_time=seconds, compile_=True)
    late = rows[len(rows) // 2:] or rows  # after compilation and warm-up
    tps = statistics.median(r["tok_per_s"] for r in late)
    mfus = [r["mfu"] for r in late if r.get("mfu")]
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    print(f"\n4. {name}: {params / 1e6:.0f}M parameters, context {ctx}, 16k tokens/step, bf16 autocast + compile, "
          f"{seconds:.0f}s")
    print(f"   {tps:,.0f} tokens/s" + (f", MFU {100 * statistics.median(mfus):.1f}%" if mfus else ""))
    print("   first losses, GPU bf16 / CPU fp32: " + ", ".join(
        f"{g['loss']:.4f}/{c['loss']:.4f}" for g, c in zip(gpu_rows, cpu_rows)))


if __name__ == "__main__":
    sys.exit(main())
