"""The training loss a config names, with only the parameters the config sets."""

from __future__ import annotations

from torch import nn

from config.schema import Config
from losses import build_loss

__all__ = ["loss_params", "build_criterion"]


def loss_params(config: Config) -> dict:
    """Only the loss parameters the config sets (each loss type takes its own subset)."""
    params = config.mask_loss.params.model_dump(exclude_unset=True)
    if config.mask_loss.type == "ComboLoss":
        params.setdefault("weights", config.mask_loss.params.weights.model_dump(exclude_defaults=True))
    return params


def build_criterion(config: Config) -> nn.Module:
    """config.mask_loss -> the loss module (losses/__init__.py's registry)."""
    return build_loss(config.mask_loss.type, loss_params(config))
