"""Device and mixed-precision choices, picked from the config and the hardware (training and prediction)."""

from __future__ import annotations

import os

import torch

from config.schema import Config
from inference.hardware import bf16_choice, channels_last_choice

__all__ = ["select_device", "resolve_runtime", "amp_settings"]


def select_device(gpu: str | None = None) -> torch.device:
    """cuda:LOCAL_RANK when CUDA is present (and not --gpu cpu), else the CPU."""
    if gpu == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


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

