"""Loss functions built from config: `build_loss(type, params)` over a name -> constructor registry.

Every loss maps logits (B, C, H, W) and int64 targets (B, H, W) in 0..C-1 or `ignore_index`
to a scalar; ignored pixels contribute nothing and an all-ignored batch gives 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from losses.combo import ComboLoss
from losses.terms import PIXEL_TERMS, REGION_TERMS, cross_entropy, dice, focal, lovasz

__all__ = ["LOSSES", "ComboLoss", "build_loss"]

# Config names -> constructors. Every ComboLoss term name ("ce", "bce", "focal", "dice",
# "lovasz") is also a loss type by itself, next to the capitalised names configs use.
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ComboLoss": ComboLoss,
    "CrossEntropy": cross_entropy,
    "Dice": dice,
    "Focal": focal,
    "Lovasz": lovasz,
    **PIXEL_TERMS,
    **REGION_TERMS,
}


def build_loss(loss_type: str, params: Mapping[str, Any] | None = None, ignore_index: int = 255) -> nn.Module:
    """Build the loss named `loss_type` with keyword `params` (e.g. a config's mask_loss block).

    Raises ValueError naming an unknown type, an unknown parameter or an unknown ComboLoss
    weight, so the config layer can report it as a user error.
    """
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss type {loss_type!r}; known: {', '.join(LOSSES)}")
    constructor = LOSSES[loss_type]
    params = dict(params or {})
    accepted = set(inspect.signature(constructor).parameters) - {"ignore_index"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for loss {loss_type!r}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    return constructor(ignore_index=ignore_index, **params)
