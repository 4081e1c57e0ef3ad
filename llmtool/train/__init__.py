"""The one training loop (device, precision, DDP, data, optimizers, schedule, eval, checkpoints)
shared by pretrain, sft, rm-train and rl."""
