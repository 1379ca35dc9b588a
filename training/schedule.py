"""Learning-rate schedules by epoch, as a LambdaLR stepped once per iteration.

`step` is the recipe's: params.steps = [[epoch, lr], ...], the absolute lr from that epoch on.
`cosine` and `poly` decay from optimizer.learning_rate to params.min_lr after
params.warmup_epochs of linear warm-up. schedule.mode "epoch" holds the lr constant within
an epoch (the recipe); "step" moves it every iteration.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from config.schema import Optimizer as OptimizerConfig

__all__ = ["lr_at", "build_scheduler"]


def _step(cfg: OptimizerConfig, epoch: float) -> float:
    steps = sorted(cfg.schedule.params.steps)
    if not steps:
        return cfg.learning_rate
    i = bisect.bisect_right([e for e, _ in steps], epoch) - 1
    return steps[i][1] if i >= 0 else cfg.learning_rate


def _decay(shape: Callable[[float], float]) -> Callable[[OptimizerConfig, float], float]:
    def lr(cfg: OptimizerConfig, epoch: float) -> float:
        params, total = cfg.schedule.params, cfg.schedule.epochs
        if epoch < params.warmup_epochs:
            return cfg.learning_rate * (epoch + 1e-3) / params.warmup_epochs
        span = max(total - params.warmup_epochs, 1e-9)
        progress = min(max((epoch - params.warmup_epochs) / span, 0.0), 1.0)
        return params.min_lr + (cfg.learning_rate - params.min_lr) * shape(progress, params.power)

    return lr


SCHEDULES: dict[str, Callable[[OptimizerConfig, float], float]] = {
    "step": _step,
    "cosine": _decay(lambda t, _p: 0.5 * (1.0 + math.cos(math.pi * t))),
    "poly": _decay(lambda t, p: (1.0 - t) ** p),
    "constant": lambda cfg, _epoch: cfg.learning_rate,
}


def lr_at(cfg: OptimizerConfig, epoch: float) -> float:
    """The learning rate at a (fractional) epoch."""
    if cfg.schedule.mode == "epoch":
        epoch = math.floor(epoch)
    return SCHEDULES[cfg.schedule.type](cfg, epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, iters_per_epoch: int) -> LambdaLR:
    """A LambdaLR whose step() is called after every iteration."""
    iters = max(iters_per_epoch, 1)
    return LambdaLR(optimizer, lambda it: lr_at(cfg, it / iters) / cfg.learning_rate)
