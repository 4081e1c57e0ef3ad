"""`llmtool pretrain`: train a GPT from scratch on a token file; the output is a checkpoint folder.

    llmtool pretrain data.bin --val val.bin --depth 4 --context 256 --max-time 3m -o base/
    llmtool pretrain data.bin --depth 20 --device cuda --compile -o base/
    torchrun --nproc_per_node 8 -m llmtool pretrain data.bin --depth 20 -o base/
    llmtool pretrain data.bin --depth 20 --dry-run
    llmtool pretrain data.bin -o base/ --resume          # after Ctrl-C or a crash
    llmtool sample base/ "Once upon a time"
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.stages.common import ForceOpt, JsonOpt, QuietOpt, VerboseOpt

NO_ARGS_HELP = True
STAGE_VERSION = 1

_M = "Model"
_B = "Batch and budget"
_O = "Optimizer"
_D = "Device"
_L = "Logging and checkpoints"


def run(
    data: Annotated[str, typer.Argument(help="Token file (.bin) made by `llmtool tokenize`.")],
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", help="Checkpoint folder to write (default: DATA.pretrain/ beside the input).")] = None,
    val: Annotated[Optional[str], typer.Option(
        "--val", help="Validation token file: loss and bits-per-byte every --eval-every steps.")] = None,
    val_split: Annotated[float, typer.Option(
        "--val-split", min=0.0, max=0.5, help="Hold out this share of DATA's tokens (its end) for validation "
        "instead of --val.")] = 0.0,
    tokenizer: Annotated[Optional[str], typer.Option(
        "--tokenizer", help="Tokenizer file or name (default: the one DATA was made with); must match DATA.")] = None,
    depth: Annotated[Optional[int], typer.Option(
        "--depth", min=1, rich_help_panel=_M, help="Layers; width = 64 × depth, heads of 128 dims, batch "
        "and learning rates follow (nanochat's sizing). Default 12.")] = None,
    n_embd: Annotated[Optional[int], typer.Option("--width", min=8, rich_help_panel=_M,
                                                  help="Override the width.")] = None,
    n_head: Annotated[Optional[int], typer.Option("--heads", min=1, rich_help_panel=_M,
                                                  help="Override the number of attention heads.")] = None,
    n_kv_head: Annotated[Optional[int], typer.Option(
        "--kv-heads", min=1, rich_help_panel=_M, help="Key/value heads (< heads: grouped-query attention).")] = None,
    context: Annotated[Optional[int], typer.Option("--context", min=2, rich_help_panel=_M,
                                                   help="Sequence length in tokens (default 1024).")] = None,
    softcap: Annotated[float, typer.Option("--softcap", min=0.0, rich_help_panel=_M,
                                           help="Logit soft-cap (0 = off).")] = 15.0,
    micro_batch: Annotated[Optional[int], typer.Option(
        "--micro-batch", min=1, rich_help_panel=_B, help="Sequences per forward pass and rank "
        "(default: 32 on CUDA, 16 elsewhere, less if memory is short).")] = None,
    total_batch: Annotated[Optional[str], typer.Option(
        "--total-batch", rich_help_panel=_B, help="Tokens per optimizer step over all ranks, e.g. 512k "
        "(gradient accumulation makes up the difference; default from --depth on GPUs, "
        "one micro-batch on CPUs).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, rich_help_panel=_B)] = None,
    max_tokens: Annotated[Optional[str], typer.Option(
        "--max-tokens", rich_help_panel=_B, help="Training tokens, e.g. 200M (default: 20 × parameters, "
        "Chinchilla, when no budget is given).")] = None,
    max_time: Annotated[Optional[str], typer.Option(
        "--max-time", rich_help_panel=_B, help="Training time, e.g. 90s, 5m, 2h (evaluation excluded).")] = None,
    windows: Annotated[str, typer.Option(
        "--windows", rich_help_panel=_B, help="random: windows start anywhere; docs: at document starts.")] = "random",
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=_B)] = 0,
    optimizer: Annotated[str, typer.Option("--optimizer", rich_help_panel=_O,
                                           help="muon (Muon for matrices, AdamW for the rest) or adamw.")] = "muon",
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, rich_help_panel=_O, help="Learning rate of the matrices (default 0.02 Muon, 0.004 AdamW).")] = None,
    embedding_lr: Annotated[float, typer.Option("--embedding-lr", min=0.0, rich_help_panel=_O,
                                                help="AdamW lr of the embedding, at width 768.")] = 0.2,
    unembedding_lr: Annotated[float, typer.Option("--head-lr", min=0.0, rich_help_panel=_O,
                                                  help="AdamW lr of the output head, at width 768.")] = 0.004,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0, rich_help_panel=_O)] = 0.0,
    grad_clip: Annotated[float, typer.Option("--grad-clip", min=0.0, rich_help_panel=_O,
                                             help="Clip the gradient norm (0 = off).")] = 0.0,
    warmup: Annotated[int, typer.Option("--warmup", min=0, rich_help_panel=_O, help="Warmup steps.")] = 0,
    warmdown: Annotated[float, typer.Option("--warmdown", min=0.0, max=1.0, rich_help_panel=_O,
                                            help="Share of the run with a linearly decaying lr.")] = 0.2,
    final_lr: Annotated[float, typer.Option("--final-lr", min=0.0, max=1.0, rich_help_panel=_O,
                                            help="lr multiplier reached at the end.")] = 0.0,
    device: Annotated[str, typer.Option("--device", rich_help_panel=_D, help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", rich_help_panel=_D,
                                       help="auto (bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", rich_help_panel=_D, help="torch.compile the model.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, rich_help_panel=_D, help="CPU threads for torch (default: all cores).")] = None,
    log_every: Annotated[int, typer.Option("--log-every", min=0, rich_help_panel=_L)] = 10,
    eval_every: Annotated[int, typer.Option("--eval-every", min=0, rich_help_panel=_L,
                                            help="Validate every N steps (0 = at the end only).")] = 0,
    eval_tokens: Annotated[str, typer.Option("--eval-tokens", rich_help_panel=_L,
                                             help="Validation tokens per evaluation.")] = "512k",
    sample_every: Annotated[int, typer.Option("--sample-every", min=0, rich_help_panel=_L,
                                              help="Print samples every N steps (0 = never).")] = 0,
    prompts: Annotated[Optional[list[str]], typer.Option(
        "--prompt", rich_help_panel=_L, help="Seed prompt for the samples (repeatable).")] = None,
    ckpt_every: Annotated[int, typer.Option("--ckpt-every", min=0, rich_help_panel=_L,
                                            help="Checkpoint every N steps (always at the end and on Ctrl-C).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=_L,
                                         help="Continue exactly from the checkpoint in the output folder.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (size, tokens, steps, FLOPs, memory) "
                                          "and exit without training.")] = False,
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Pretrain a GPT (RoPE, RMSNorm, QK-norm, ReLU², soft-capped logits) on a token file.

    Writes a checkpoint folder: config.json, model.safetensors, tokenizer.json, train_state.pt,
    metrics.jsonl, provenance.json. Under torchrun, trains on every GPU with DDP.

    Examples:

      llmtool pretrain data.bin --val-split 0.02 --depth 4 --context 256 --max-time 3m -o base/

      llmtool pretrain data.bin --val val.bin --depth 20 --device cuda --compile -o base/

      torchrun --nproc_per_node 8 -m llmtool pretrain data.bin --depth 20 -o base/

      llmtool pretrain data.bin -o base/ --resume
    """
    from llmtool.io.run import Opts
    from llmtool.train.pretrain import PretrainArgs, pretrain

    args = PretrainArgs(
        data=data, output=output, val=val, val_split=val_split, tokenizer=tokenizer, depth=depth,
        n_embd=n_embd, n_head=n_head, n_kv_head=n_kv_head, context=context, softcap=softcap,
        micro_batch=micro_batch, total_batch=total_batch, max_steps=max_steps, max_tokens=max_tokens,
        max_time=max_time, windows=windows, seed=seed, optimizer=optimizer, lr=lr, embedding_lr=embedding_lr,
        unembedding_lr=unembedding_lr, weight_decay=weight_decay, grad_clip=grad_clip, warmup=warmup,
        warmdown=warmdown, final_lr=final_lr, device=device, dtype=dtype, compile=compile_model, threads=threads,
        log_every=log_every, eval_every=eval_every, eval_tokens=eval_tokens, sample_every=sample_every,
        prompts=prompts, ckpt_every=ckpt_every, resume=resume, dry_run=dry_run)
    pretrain(args, Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose), STAGE_VERSION)
