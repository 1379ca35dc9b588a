"""The one runtime choice of device and precision, for training and prediction alike.

`--gpu` means the same in train.py and predict_ensemble.py: which CUDA devices to use, as
torch numbers the visible ones (CUDA_VISIBLE_DEVICES applies first): an index (`0`) or a list
(`0,1`); the process of local rank r (torchrun's LOCAL_RANK, 0 without torchrun) takes the
r-th. Without `--gpu`: cuda:LOCAL_RANK when CUDA is present. `cpu` forces the CPU; a `--gpu` on
a machine without CUDA prints a one-line note and runs on the CPU. Precision: `resolve_runtime`
and `amp_settings` (training configs), `precision_choice` (predict_ensemble.py --precision),
both from runtime/hardware.py's rule of what this machine runs fast.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch

from config.schema import Config
from runtime.hardware import bf16_choice, channels_last_choice
from utils.errors import InputError

__all__ = [
    "PRECISIONS",
    "select_device",
    "resolve_runtime",
    "amp_settings",
    "precision_choice",
    "autocast_context",
    "prediction_workers",
]

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _gpu_indices(gpu: str) -> list[int]:
    parts = [part.strip() for part in gpu.split(",")]
    if not all(part.isdigit() for part in parts):
        raise InputError(f"--gpu expects device indices like 0 or 0,1, or cpu; got {gpu!r}")
    return [int(part) for part in parts]


def select_device(gpu: str | None = None, doing: str = "training") -> torch.device:
    """The device of this process for `--gpu` (module docstring); `doing` words the CPU note."""
    if gpu == "cpu":
        return torch.device("cpu")
    indices = _gpu_indices(gpu) if gpu is not None else None
    if not torch.cuda.is_available():
        if gpu is not None:
            print(f"note: --gpu {gpu} given but CUDA is not available; {doing} on the CPU", file=sys.stderr)
        return torch.device("cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if indices is None:
        return torch.device("cuda", local_rank)
    if local_rank >= len(indices):
        raise InputError(
            f"--gpu {gpu}: {len(indices)} device(s) for local rank {local_rank}; give one per process"
        )
    index = indices[local_rank]
    if index >= torch.cuda.device_count():
        raise InputError(f"--gpu {gpu}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return torch.device("cuda", index)


def resolve_runtime(config: Config, device: torch.device) -> tuple[Config, str]:
    """The config with `cpu_bf16` and `channels_last` decided for this machine, and one line
    saying what was chosen and why (printed by the run and saved atop its config.yaml)."""
    bf16 = bf16_choice(config.cpu_bf16, device)
    layout = channels_last_choice(config.channels_last, device)
    resolved = config.model_copy(update={"cpu_bf16": bf16.value, "channels_last": layout.value})
    dtype, scaler = amp_settings(resolved, device)
    if device.type == "cpu":
        precision = f"{'bf16 autocast' if dtype else 'fp32'} (cpu_bf16 {bf16.reason})"
    else:
        precision = (
            f"{dtype or 'fp32'}{' + GradScaler' if scaler else ''} (fp16: {config.fp16}, {device.type})"
        )
    line = f"precision: {precision}; channels_last: {'on' if layout.value else 'off'} ({layout.reason})"
    return resolved, line.replace("torch.", "")


def amp_settings(config: Config, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed), for a config from resolve_runtime.

    CUDA: fp16 with a GradScaler when `fp16: true` (bf16 without one if amp_dtype says so).
    CPU: bf16 autocast when `cpu_bf16` is on; fp16 autocast on CPU is not worth it.
    """
    if device.type == "cuda" and config.fp16:
        dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        return dtype, dtype == torch.float16
    if device.type == "cpu":
        # An unresolved "auto" (library callers) follows the same rule, without the log line.
        auto = config.cpu_bf16 == "auto"
        if bf16_choice(config.cpu_bf16, device).value if auto else config.cpu_bf16:
            return torch.bfloat16, False
    return None, False


def precision_choice(precision: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype, why). auto: fp16 on CUDA; on a CPU bf16 only where it is native (AMX),
    else fp32; an explicit bf16 on a CPU without it warns (runtime/hardware.py)."""
    if device.type == "cuda":
        dtype = torch.float16 if precision == "auto" else PRECISIONS[precision]
        return dtype, "auto: CUDA" if precision == "auto" else "set explicitly"
    if precision in ("auto", "bf16"):
        choice = bf16_choice("auto" if precision == "auto" else True, device)
        return (torch.bfloat16 if choice.value else None), choice.reason
    return PRECISIONS[precision], "set explicitly"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def prediction_workers(device: torch.device) -> int:
    """DataLoader workers decoding PNGs for a prediction run: 2 on CUDA; on a CPU 0 where the
    process has 2 cores or fewer (a worker there takes a core from the models: every row of
    bench/cpu_infer.py ran faster with 0 than with 1 or 2 on 2 cores, BENCHMARKS.md), else 2."""
    if device.type == "cuda":
        return 2
    return 0 if usable_cores() <= 2 else 2


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast for `dtype` on `device`, or a no-op when dtype is None (full fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
