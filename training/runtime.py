"""Device, mixed precision and optimizer choices, picked from the config and the hardware."""

from __future__ import annotations

import os

import torch
from torch import nn

from utils.config import Config
from utils.config import Optimizer as OptimizerConfig

__all__ = ["select_device", "amp_settings", "build_optimizer", "OPTIMIZERS"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "AdamW": torch.optim.AdamW,
    "Adam": torch.optim.Adam,
    "SGD": torch.optim.SGD,
}


def select_device(gpu: str | None = None) -> torch.device:
    """cuda:LOCAL_RANK when CUDA is present (and not --gpu cpu), else the CPU."""
    if gpu == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def amp_settings(config: Config, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed).

    CUDA: fp16 with a GradScaler when `fp16: true` (bf16 without one if amp_dtype says so).
    CPU: bf16 autocast only if `cpu_bf16: true`; fp16 autocast on CPU is not worth it.
    """
    if device.type == "cuda" and config.fp16:
        dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
        return dtype, dtype == torch.float16
    if device.type == "cpu" and config.cpu_bf16:
        return torch.bfloat16, False
    return None, False


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters()]
    kwargs: dict[str, float] = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    if cfg.type == "SGD":
        kwargs["momentum"] = cfg.momentum
    return OPTIMIZERS[cfg.type](params, **kwargs)
