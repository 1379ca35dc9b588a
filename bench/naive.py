"""Naive baselines: what the original recipe did, kept only to be measured against.

Inference (the recipe's predict script): one frame at a time, fp32, numpy pre-processing per
frame, every model and the flipped view as a separate forward pass of the raw smp network.
Training (the recipe's dataset/loop): the PNG decoded per sample every epoch, float32
normalised images and one-hot masks built per sample in numpy, fp32, loss on full-size logits.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dataset.openeds import image_relpath, label_relpath
from models.zoo import PAD_MULTIPLE, SegmentationModel

__all__ = ["naive_predict_frame", "naive_predict", "NaiveTrainDataset", "naive_train_epoch"]


def _normalise(image: np.ndarray, model: SegmentationModel) -> np.ndarray:
    """uint8 (H, W) -> float32 (C, H, W): /255, (x - mean) / std, on a 3-channel copy if needed."""
    mean = (-model._add / (model._mul * 255.0)).flatten().cpu().numpy()  # the model's own mean/std
    std = (1.0 / (model._mul * 255.0)).flatten().cpu().numpy()
    x = image.astype(np.float32) / 255.0
    x = np.repeat(x[None], model.in_channels, axis=0)
    return (x - mean[:, None, None]) / std[:, None, None]


@torch.no_grad()
def naive_predict_frame(models: list[SegmentationModel], path: Path) -> np.ndarray:
    """One frame through every model and its hflip, batch 1, fp32: class map uint8 (400, 640).

    A model trained at a reduced input scale (cpu_fast: 0.4) gets the frame downscaled as its
    own forward does (antialiased bilinear), and every view's logits resized back to the full
    frame before they are summed: the recipe's loop, run at the scale the checkpoint expects.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    height, width = image.shape
    total = None
    for model in models:
        scaled = image
        if model.scale != 1.0:
            size = (max(1, round(height * model.scale)), max(1, round(width * model.scale)))
            x = torch.from_numpy(image.astype(np.float32))[None, None]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            scaled = x[0, 0].numpy()
        pad = -scaled.shape[0] % PAD_MULTIPLE
        top = pad // 2
        padded = np.pad(scaled, ((top, pad - top), (0, 0)))
        x = torch.from_numpy(_normalise(padded, model))[None].to(model._mul.device)
        for flip in (False, True):
            logits = model.net(x.flip(-1) if flip else x)
            logits = logits.flip(-1) if flip else logits
            logits = logits[..., top : logits.shape[-2] - (pad - top), :]
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            total = logits if total is None else total + logits
    probs = torch.softmax(total / (2 * len(models)), dim=1)
    return probs.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def naive_predict(
    models: list[SegmentationModel], data_dir: Path, keys: list[str]
) -> tuple[np.ndarray, float]:
    """Class maps (N, 400, 640) of `keys` and the seconds they took."""
    for model in models:
        model.eval()
    start = time.perf_counter()
    labels = np.stack([naive_predict_frame(models, data_dir / image_relpath(key)) for key in keys])
    return labels, time.perf_counter() - start


class NaiveTrainDataset(Dataset):
    """The recipe's dataset: decode PNG + .npy every time, augment, float32 image, one-hot mask."""

    def __init__(
        self,
        root: Path,
        keys: list[str],
        transform,
        mean: list[float],
        std: list[float],
        num_classes: int = 4,
    ) -> None:
        self.root, self.keys, self.transform = Path(root), keys, transform
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        key = self.keys[index]
        image = cv2.imread(str(self.root / image_relpath(key)), cv2.IMREAD_GRAYSCALE)
        mask = np.load(self.root / label_relpath(key))
        out = self.transform(image=image, mask=mask)
        image = np.repeat((out["image"].astype(np.float32) / 255.0)[None], len(self.mean), axis=0)
        image = (image - self.mean) / self.std
        one_hot = np.stack([(out["mask"] == c).astype(np.float32) for c in range(self.num_classes)])
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(one_hot)}


def naive_train_epoch(
    model: SegmentationModel,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    clip: float | None,
) -> tuple[int, float]:
    """fp32, the network on the normalised float batch, logits resized to full size before the loss.

    Returns (images, seconds).
    """
    model.train()
    seen, start = 0, time.perf_counter()
    for batch in loader:
        x, one_hot = batch["image"], batch["mask"]
        height, width = x.shape[-2:]
        if model.scale != 1.0:
            size = (round(height * model.scale), round(width * model.scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        h = x.shape[-2]
        pad = -h % PAD_MULTIPLE
        top = pad // 2
        logits = model.net(F.pad(x, (0, 0, top, pad - top)))[..., top : top + h, :]
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        loss = criterion(logits, one_hot.argmax(dim=1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        seen += len(x)
    return seen, time.perf_counter() - start
