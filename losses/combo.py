"""ComboLoss: the seed recipe's weighted sum of loss terms (dice + focal + bce, weights 1/1/1)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from losses.terms import DEFAULT_OHPM_PIXELS, PIXEL_TERMS, REGION_TERMS

__all__ = ["ComboLoss"]


class ComboLoss(nn.Module):
    """Weighted sum of named terms: any of "dice", "focal", "bce", "ce", "lovasz".

    Args:
        weights: term name -> weight (>= 0); terms with weight 0 are not computed.
        ignore_index: target value of pixels that contribute nothing.
        ohpm: online hard pixel mining for the pixel-wise terms (ce, bce, focal): each
            averages over only its own `ohpm_pixels` hardest pixels of the batch.
        ohpm_pixels: pixels kept per batch by OHPM.
        per_image: region terms (dice, lovasz) are computed per image and averaged.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        ignore_index: int = 255,
        ohpm: bool = False,
        ohpm_pixels: int = DEFAULT_OHPM_PIXELS,
        per_image: bool = False,
    ) -> None:
        super().__init__()
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, weight in weights.items():
            if name in PIXEL_TERMS:
                term = PIXEL_TERMS[name](ignore_index, ohpm=ohpm, ohpm_pixels=ohpm_pixels)
            elif name in REGION_TERMS:
                term = REGION_TERMS[name](ignore_index, per_image=per_image)
            else:
                known = sorted(PIXEL_TERMS) + sorted(REGION_TERMS)
                raise ValueError(f"unknown ComboLoss weight {name!r}; known: {', '.join(known)}")
            if weight < 0:
                raise ValueError(f"ComboLoss weight {name!r} must be >= 0, got {weight}")
            if weight > 0:
                self.terms[name] = term
                self.weights[name] = float(weight)
        if not self.terms:
            raise ValueError("ComboLoss needs at least one term with a weight > 0")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * term(logits, target) for name, term in self.terms.items())

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
