"""The optimizer a config names (a registry: name -> torch class)."""

from __future__ import annotations

import torch
from torch import nn

from config.schema import Optimizer as OptimizerConfig

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "AdamW": torch.optim.AdamW,
    "Adam": torch.optim.Adam,
    "SGD": torch.optim.SGD,
}


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters()]
    kwargs: dict[str, float] = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    if cfg.type == "SGD":
        kwargs["momentum"] = cfg.momentum
    return OPTIMIZERS[cfg.type](params, **kwargs)
