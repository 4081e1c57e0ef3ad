"""How training code reports a problem with a setting without knowing the command line.

Library code names settings in words ("the micro-batch") and tags the error with the
setting names it concerns; a stage that knows its flags appends them
(`llmtool.stages.training.flag_errors`), so `pretrain` says `--micro-batch` while a
notebook user sees plain words.

    raise about(UsageError("the context (2048) is longer than the model's (1024)"), "context")
"""

from __future__ import annotations

from llmtool.errors import EnvironmentProblem, LlmtoolError


def about(err: LlmtoolError, *settings: str) -> LlmtoolError:
    """Tag `err` with the names of the settings (TrainConfig fields, model sizes) it is about."""
    err.settings = tuple(settings)
    return err


class OutOfMemory(EnvironmentProblem):
    """The run needs more memory than the device has: exit 4, whether the estimate says so
    before training or the allocator fails during it (other settings or a bigger machine fix it)."""


def out_of_memory(device, needed: float | None = None, free: float | None = None) -> OutOfMemory:
    sizes = f": ~{needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free" if needed and free else ""
    err = OutOfMemory(f"the model does not fit on {device}{sizes}; lower the micro-batch (gradient "
                      "accumulation keeps the total batch), the context or the model size")
    return about(err, "micro_batch", "context", "depth")
