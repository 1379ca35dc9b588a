"""Segmentation metrics, all derived from one confusion-matrix routine.

`confusion_matrix` counts (truth, prediction) pairs with one bincount (rows = truth, columns =
prediction, as torchvision's ConfusionMatrix), for torch tensors on any device or numpy arrays.
`SegmentationMeter` keeps one small (C, C) matrix per image, so every metric (per image, per
class, per sequence, dataset-level) comes from the same counts; training validation feeds it
torch batches and validate.py numpy arrays.

IoU of a class is diag / (row sum + column sum - diag). Primary mIoU (the seed's definition,
without its epsilon): per image, a class absent from both truth and prediction scores 1; mean
over the classes, then over the images.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dataset.folder import group_of

__all__ = ["SegmentationMeter", "confusion_matrix", "class_iou", "miou_2019"]

Array = np.ndarray | torch.Tensor


def confusion_matrix(
    pred: Array, target: Array, num_classes: int = 4, ignore_index: int = 255, per_image: bool = False
) -> Array:
    """Count pixels by (truth, prediction): int64 (C, C), or (B, C, C) with `per_image` on (B, ...) input.

    Pixels whose target is `ignore_index` are left out; any other value outside 0..C-1 raises
    ValueError. Returns a tensor on the target's device if `target` is a tensor, else numpy.
    """
    as_numpy = not isinstance(target, torch.Tensor)
    target_t = torch.as_tensor(target)
    pred_t = torch.as_tensor(pred, device=target_t.device)
    if pred_t.shape != target_t.shape:
        raise ValueError(f"prediction shape {tuple(pred_t.shape)} != target shape {tuple(target_t.shape)}")
    batch = target_t.shape[0] if per_image else 1
    target_t = target_t.reshape(batch, -1).long()
    pred_t = pred_t.reshape(batch, -1).long()
    valid = target_t != ignore_index
    truth, guess = target_t[valid], pred_t[valid]
    if truth.numel() and (min(truth.min(), guess.min()) < 0 or max(truth.max(), guess.max()) >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1} (other than ignore_index {ignore_index})")
    image = torch.arange(batch, device=target_t.device).unsqueeze(1).expand_as(target_t)[valid]
    index = (image * num_classes + truth) * num_classes + guess
    counts = torch.bincount(index, minlength=batch * num_classes**2).reshape(batch, num_classes, num_classes)
    counts = counts if per_image else counts[0]
    return counts.cpu().numpy() if as_numpy else counts


def class_iou(cm: Array, absent: float = 1.0) -> np.ndarray:
    """IoU of each class from confusion matrices (..., C, C) -> (..., C) float64.

    A class absent from both truth and prediction (union 0) scores `absent`: 1 for the
    primary metric (nothing to find, nothing wrongly found), NaN to leave it out of a mean.
    """
    cm = np.asarray(cm, dtype=np.float64)
    inter = np.diagonal(cm, axis1=-2, axis2=-1)
    union = cm.sum(-1) + cm.sum(-2) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, absent)


def miou_2019(cm: Array) -> np.ndarray:
    """OpenEDS 2019 variant: per image, mean IoU over only the classes present in the truth."""
    cm = np.asarray(cm)
    present = cm.sum(-1) > 0
    iou = np.where(present, class_iou(cm), 0.0)
    with np.errstate(invalid="ignore"):
        return iou.sum(-1) / present.sum(-1)


class SegmentationMeter:
    """Accumulates per-image confusion matrices and computes every reported metric from them.

    Images without any non-ignored pixel are dropped (they carry no information, and the
    absent = 1 rule would score them perfect). Distributed validation: concatenate every
    rank's `state()` tensor (sizes may differ) and call `SegmentationMeter.from_state`;
    pass the gathered names too (e.g. via `all_gather_object`) to keep "per_sequence".
    """

    def __init__(self, num_classes: int = 4, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrices: list[np.ndarray] = []
        self.names: list[str | None] = []

    def update(self, pred: Array, target: Array, names: Sequence[str] | None = None) -> None:
        """Add a batch: predicted labels and targets (B, H, W), optional image names like "S_3/17"."""
        cms = confusion_matrix(pred, target, self.num_classes, self.ignore_index, per_image=True)
        self._add(cms.cpu().numpy() if isinstance(cms, torch.Tensor) else cms, names)

    def _add(self, matrices: np.ndarray, names: Sequence[str | None] | None) -> None:
        if names is not None and len(names) != len(matrices):
            raise ValueError(f"{len(names)} names for {len(matrices)} images")
        for i, cm in enumerate(matrices):
            if cm.any():
                self.matrices.append(cm)
                self.names.append(None if names is None or names[i] is None else str(names[i]))

    def state(self) -> torch.Tensor:
        """The per-image matrices as one int64 CPU tensor (N, C, C), ready for an all-gather."""
        shape = (0, self.num_classes, self.num_classes)
        return torch.from_numpy(np.stack(self.matrices) if self.matrices else np.zeros(shape, np.int64))

    def merge(self, other: SegmentationMeter) -> None:
        """Add the images (and names) of another meter."""
        self._add(other.state().numpy(), other.names)

    @classmethod
    def from_state(
        cls,
        matrices: Array,
        num_classes: int = 4,
        ignore_index: int = 255,
        names: Sequence[str | None] | None = None,
    ) -> SegmentationMeter:
        """A meter holding the per-image matrices (N, C, C) of `state()` tensors concatenated.

        All-zero rows (e.g. an all-gather's padding) are dropped like fully ignored images.
        """
        meter = cls(num_classes, ignore_index)
        matrices = matrices.cpu().numpy() if isinstance(matrices, torch.Tensor) else np.asarray(matrices)
        meter._add(matrices.astype(np.int64).reshape(-1, num_classes, num_classes), names)
        return meter

    def compute(self) -> dict[str, Any]:
        """Metrics over all images so far (floats; NaN where there are no images).

        Keys: "miou" (primary), "per_class_iou" (per image with absent = 1, mean over
        images), "miou_dataset" and "per_class_iou_dataset" (one confusion matrix summed over
        all pixels; a class absent from all of it scores 1), "miou_2019", "n_images",
        "per_sequence" (sequence, the part of the name before the first "/" or "." for a name
        without one, as a plain folder's groups, -> primary mIoU).
        """
        matrices = self.state().numpy()
        per_image = class_iou(matrices)
        dataset = class_iou(matrices.sum(0), absent=1.0 if len(matrices) else np.nan)
        by_sequence: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(self.names):
            if name is not None:
                by_sequence[group_of(name)].append(i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an empty meter reports NaN
            return {
                "miou": float(per_image.mean(-1).mean()),
                "per_class_iou": per_image.mean(0).tolist(),
                "miou_dataset": float(dataset.mean()),
                "per_class_iou_dataset": dataset.tolist(),
                "miou_2019": float(miou_2019(matrices).mean()),
                "n_images": len(matrices),
                "per_sequence": {
                    seq: float(per_image[rows].mean()) for seq, rows in sorted(by_sequence.items())
                },
            }
