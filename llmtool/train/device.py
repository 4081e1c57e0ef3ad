"""Where training runs: device choice, precision, the DDP process group, peak FLOPs.

    >>> env = setup("cpu")            # doctest: +SKIP
    >>> env.device, env.rank, env.world
    (device(type='cpu'), 0, 1)

Under `torchrun` (WORLD_SIZE > 1) every process joins one process group (NCCL on CUDA,
gloo on CPU), takes the GPU of its LOCAL_RANK, and only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from llmtool.errors import EnvironmentProblem, UsageError

# Dense bf16 peak FLOP/s of common accelerators, for MFU (substring of the device name).
PEAK_FLOPS = [
    ("H200", 989e12), ("H100", 989e12), ("H800", 989e12), ("GH200", 989e12), ("B200", 2250e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12), ("A6000", 155e12),
    ("A10G", 125e12), ("A10", 125e12), ("L4", 121e12), ("4090", 165e12), ("3090", 71e12),
    ("V100", 125e12), ("T4", 65e12),
]


@dataclass
class Env:
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world: int = 1
    dtype: str = "fp32"  # compute precision under autocast: fp32 | bf16

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world > 1

    def autocast(self):
        """bf16 autocast on CUDA (weights and optimizer stay fp32); a no-op elsewhere."""
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def peak_flops(self) -> float | None:
        if self.device.type != "cuda" or self.dtype == "fp32":
            return None
        name = torch.cuda.get_device_name(self.device)
        return next((f for key, f in PEAK_FLOPS if key in name), None)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def barrier(self) -> None:
        if self.ddp:
            torch.distributed.barrier()

    def all_reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.ddp:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
            t /= self.world
        return t

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.ddp:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def close(self) -> None:
        if self.ddp and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; an explicit device that is missing is an exit-4 error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build of PyTorch" if torch.version.cuda is None else "no visible GPU"
            raise EnvironmentProblem(f"--device {name}: CUDA is not available ({build}); "
                                     "use --device cpu, or install a CUDA build of torch on a GPU machine")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise EnvironmentProblem("--device mps: Apple's Metal backend is not available here; use --device cpu")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps")


def pick_dtype(device: torch.device, requested: str = "auto") -> str:
    requested = (requested or "auto").lower()
    # fp16 would need loss scaling (GradScaler) to train safely; bf16 has fp32's range and does not
    if requested not in ("auto", "fp32", "bf16"):
        raise UsageError(f"--dtype {requested!r}: expected auto, fp32 or bf16")
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise EnvironmentProblem("--dtype bf16: this GPU does not support bfloat16; use --dtype fp32")
        return requested
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"  # CPU autocast to bf16 is slower than fp32 on most CPUs


def setup(device: str = "auto", dtype: str = "auto", threads: int | None = None) -> Env:
    """Pick the device, join the torchrun process group if there is one, set fast-math flags."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if dev.type == "cpu":
        # Denormal floats make tiny CPU models 10-40x slower after a few hundred steps.
        torch.set_flush_denormal(True)
        if threads:
            torch.set_num_threads(threads)
    env = Env(dev, rank, local_rank, world, pick_dtype(dev, dtype))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kw = {"device_id": dev} if dev.type == "cuda" else {}
        torch.distributed.init_process_group(backend=backend, **kw)
    return env


def memory_available(device: torch.device) -> int | None:
    """Free bytes for training on the device (None when unknown)."""
    try:
        if device.type == "cuda":
            return torch.cuda.mem_get_info(device)[0]
        if device.type == "cpu":
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError):
        return None
    return None
