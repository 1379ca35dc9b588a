"""Single loss terms: multiclass logits (B, C, H, W) against int64 targets (B, H, W).

Every term takes `ignore_index` and guarantees that ignored pixels contribute nothing, not
even through a normalising denominator, and that an all-ignored batch gives a loss of 0 with
zero gradients instead of NaN (smp's FocalLoss and torch's mean cross-entropy return NaN
there, and smp's LovaszLoss returns an empty tensor).

Region terms (dice, lovasz) wrap the smp modules, which already drop ignored pixels.
Pixel-wise terms (ce, bce, focal) share one path: gather the non-ignored pixels, compute a
per-pixel loss, average it, optionally over only the hardest pixels (OHPM).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
from segmentation_models_pytorch.losses._functional import focal_loss_with_logits
from torch import nn

__all__ = [
    "PixelwiseLoss",
    "RegionLoss",
    "binary_cross_entropy",
    "cross_entropy",
    "dice",
    "focal",
    "lovasz",
    "PIXEL_TERMS",
    "REGION_TERMS",
]

PixelLossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULT_OHPM_PIXELS = 131072


class PixelwiseLoss(nn.Module):
    """Mean of a per-pixel loss over the non-ignored pixels of the batch.

    With `ohpm` (online hard pixel mining) the mean is over only the `ohpm_pixels` pixels of
    the batch with the highest loss (all of them when fewer are valid).

    Args:
        pixel_loss: maps logits (N, C) and targets (N,) of valid pixels to losses (N,).
        ignore_index: target value of pixels to leave out.
        ohpm: keep only the hardest pixels.
        ohpm_pixels: how many pixels OHPM keeps per batch.
    """

    def __init__(
        self,
        pixel_loss: PixelLossFn,
        ignore_index: int = 255,
        ohpm: bool = False,
        ohpm_pixels: int = DEFAULT_OHPM_PIXELS,
    ) -> None:
        super().__init__()
        if ohpm and ohpm_pixels < 1:
            raise ValueError(f"ohpm_pixels must be a positive integer, got {ohpm_pixels}")
        self.pixel_loss = pixel_loss
        self.ignore_index = ignore_index
        self.ohpm_pixels = int(ohpm_pixels) if ohpm else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Losses in fp32 even under AMP: log-sum-exp and focal powers lose too much in fp16.
        logits = logits.float()
        num_classes = logits.size(1)
        flat_logits = logits.movedim(1, -1).reshape(-1, num_classes)
        flat_target = target.reshape(-1)
        valid = flat_target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        # Gathering first (rather than zeroing afterwards) keeps ignored pixels out of the
        # graph entirely, so even inf/NaN logits there cannot leak into the loss.
        losses = self.pixel_loss(flat_logits[valid], flat_target[valid])
        if self.ohpm_pixels is not None and losses.numel() > self.ohpm_pixels:
            losses = losses.topk(self.ohpm_pixels, sorted=False).values
        return losses.mean()

    def extra_repr(self) -> str:
        name = getattr(self.pixel_loss, "func", self.pixel_loss).__name__
        return f"{name}, ignore_index={self.ignore_index}, ohpm_pixels={self.ohpm_pixels}"


class RegionLoss(nn.Module):
    """An smp region loss (dice, lovasz) made safe for all-ignored input, optionally per image.

    smp already excludes ignored pixels; this wrapper returns 0 for an all-ignored batch and,
    with `per_image`, averages the loss of each image that has any valid pixel (smp's Dice
    has no per-image mode, and smp's per-image Lovasz breaks on an all-ignored image).
    """

    def __init__(self, loss: nn.Module, ignore_index: int = 255, per_image: bool = False) -> None:
        super().__init__()
        self.loss = loss
        self.ignore_index = ignore_index
        self.per_image = per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        has_valid = (target != self.ignore_index).flatten(1).any(1)
        if not bool(has_valid.any()):
            return logits.sum() * 0.0
        if not self.per_image:
            return self.loss(logits, target)
        images = has_valid.nonzero().flatten().tolist()
        return torch.stack([self.loss(logits[i : i + 1], target[i : i + 1]) for i in images]).mean()


def _ce_pixels(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, target, reduction="none")


def _bce_pixels(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # By hand: smp's SoftBCEWithLogitsLoss masks by comparing target VALUES to ignore_index,
    # which cannot work on one-hot targets; without that it is exactly this torch call.
    one_hot = F.one_hot(target, logits.size(1)).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").mean(1)


def _focal_pixels(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float | None
) -> torch.Tensor:
    # smp's per-class sigmoid focal (as in FocalLoss(mode="multiclass")), averaged over
    # classes per pixel; the FocalLoss module itself cannot return per-pixel values for OHPM.
    one_hot = F.one_hot(target, logits.size(1)).to(logits.dtype)
    return focal_loss_with_logits(logits, one_hot, gamma=gamma, alpha=alpha, reduction="none").mean(1)


def cross_entropy(
    ignore_index: int = 255, ohpm: bool = False, ohpm_pixels: int = DEFAULT_OHPM_PIXELS
) -> PixelwiseLoss:
    """Softmax cross-entropy; equals torch's CrossEntropyLoss(ignore_index) when some pixel is valid."""
    return PixelwiseLoss(_ce_pixels, ignore_index, ohpm, ohpm_pixels)


def binary_cross_entropy(
    ignore_index: int = 255, ohpm: bool = False, ohpm_pixels: int = DEFAULT_OHPM_PIXELS
) -> PixelwiseLoss:
    """Sigmoid BCE of each class channel against the one-hot target, mean over classes and pixels."""
    return PixelwiseLoss(_bce_pixels, ignore_index, ohpm, ohpm_pixels)


def focal(
    ignore_index: int = 255,
    gamma: float = 2.0,
    alpha: float | None = None,
    ohpm: bool = False,
    ohpm_pixels: int = DEFAULT_OHPM_PIXELS,
) -> PixelwiseLoss:
    """Focal loss; equals smp FocalLoss(mode="multiclass", ignore_index) when some pixel is valid."""
    pixel_loss = functools.partial(_focal_pixels, gamma=gamma, alpha=alpha)
    return PixelwiseLoss(pixel_loss, ignore_index, ohpm, ohpm_pixels)


def dice(ignore_index: int = 255, per_image: bool = False) -> RegionLoss:
    """smp soft Dice over the batch (or per image), 1 - mean over classes."""
    return RegionLoss(DiceLoss(mode="multiclass", ignore_index=ignore_index), ignore_index, per_image)


def lovasz(ignore_index: int = 255, per_image: bool = False) -> RegionLoss:
    """smp Lovasz-softmax over the classes present in the target."""
    return RegionLoss(LovaszLoss(mode="multiclass", ignore_index=ignore_index), ignore_index, per_image)


# Term name -> constructor; these names are the keys of ComboLoss weights.
PIXEL_TERMS: dict[str, Callable[..., PixelwiseLoss]] = {
    "ce": cross_entropy,
    "bce": binary_cross_entropy,
    "focal": focal,
}
REGION_TERMS: dict[str, Callable[..., RegionLoss]] = {"dice": dice, "lovasz": lovasz}
