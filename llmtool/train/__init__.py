"""The one training loop (device, precision, DDP, data, optimizers, schedule, eval, checkpoints)
shared by pretrain, sft, rm-train and rl: `loop.Trainer` + `batch` (Batch, loss_fn, the
data-source protocol). Stage recipes (options, output naming, plans) live in llmtool.stages."""
