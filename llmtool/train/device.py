"""Where training runs: device choice, precision, the DDP process group, peak FLOPs.

    >>> env = setup("cpu")
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
from llmtool.train.errors import about

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
            raise about(EnvironmentProblem(f"device {name!r}: CUDA is not available ({build}); train on the "
                                           "CPU, or install a CUDA build of torch on a GPU machine"), "device")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise about(EnvironmentProblem("device 'mps': Apple's Metal backend is not available here; "
                                           "train on the CPU"), "device")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise about(UsageError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps"), "device")


def pick_dtype(device: torch.device, requested: str = "auto") -> str:
    requested = (requested or "auto").lower()
    # fp16 would need loss scaling (GradScaler) to train safely; bf16 has fp32's range and does not
    if requested not in ("auto", "fp32", "bf16"):
        raise about(UsageError(f"dtype {requested!r}: expected auto, fp32 or bf16"), "dtype")
    if requested != "auto":
        if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise about(EnvironmentProblem("bf16: this GPU does not support bfloat16; use fp32"), "dtype")
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


# Share of the measured (CPU) or peak (GPU) matmul FLOP/s that a training step reaches.
# CPU: a depth-4 model at context 256 (4096 tokens/step, 1 thread) was estimated at 1.2k
# tokens/s and trained at 1.1-1.3k; on a machine busy with other jobs the estimate is noisy
# (2-3x low with 2 threads at load 6), which is fine for what it decides: hours or minutes.
# GPU: nanochat-style runs reach 35-50 % MFU in bf16 (not measured here).
CPU_TRAIN_EFFICIENCY = 0.4
GPU_TRAIN_EFFICIENCY = 0.35


def training_flops(env: Env) -> float | None:
    """Rough FLOP/s a training step reaches here, for time estimates (None when unknown)."""
    if env.device.type == "cuda":
        peak = env.peak_flops()
        return peak * GPU_TRAIN_EFFICIENCY if peak else None
    if env.device.type == "cpu":
        return _cpu_matmul_flops() * CPU_TRAIN_EFFICIENCY
    return None


def _cpu_matmul_flops(trials: int = 3, seconds: float = 0.03) -> float:
    """fp32 FLOP/s of a 512×512 matmul on this CPU with torch's threads: the best of a few short
    trials (~0.1 s in all), as other jobs on the machine slow some of them down."""
    import time

    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # first call: thread pool start-up
    best = 0.0
    for _ in range(trials):
        k, t0 = 0, time.perf_counter()
        while k < 2 or time.perf_counter() - t0 < seconds:
            a @ b
            k += 1
        best = max(best, 2 * n ** 3 * k / (time.perf_counter() - t0))
    return best
