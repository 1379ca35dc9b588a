"""Training augmentations from config, with albumentations, seeded per (epoch, sample).

Every sample's augmentation is drawn from a generator seeded by (seed, epoch, index), so a
run is reproducible whatever the number of DataLoader workers, and a resumed run draws the
same augmentations as an uninterrupted one.

With `in_channels: 3` the transforms act on the gray frame copied to 3 channels, as in the
recipe (it read the frames with cv2.IMREAD_COLOR), so its RGBShift gives the network frames
whose channels differ; the sample's image is then (3, H, W).
"""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version at import unless told not to. Nothing here
# may touch the network at run time, and on a machine without DNS the failed lookup cost
# over a minute per process (seen on the GPU machine, BENCHMARKS.md).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np
import torch
from torch.utils.data import Dataset

from config.schema import Augmentation, Input
from training.state import derive_seed
from utils.errors import InputError

__all__ = ["build_train_transform", "AugmentedDataset"]


def _build(aug: Augmentation, source: object) -> A.BasicTransform | A.BaseCompose:
    """One transform by albumentations name; a composition (OneOf, ...) builds its children first."""
    cls = getattr(A, aug.name, None)
    is_compose = isinstance(cls, type) and issubclass(cls, A.BaseCompose)
    if not (isinstance(cls, type) and (issubclass(cls, A.BasicTransform) or is_compose)):
        raise InputError(f"input.augmentations: unknown albumentations transform {aug.name!r}", source)
    if aug.transforms and not is_compose:
        raise InputError(f"input.augmentations: {aug.name} takes no 'transforms'", source)
    children = {"transforms": [_build(child, source) for child in aug.transforms]} if is_compose else {}
    try:
        return cls(p=aug.p, **children, **aug.params)
    except (TypeError, ValueError) as exc:
        raise InputError(f"input.augmentations: bad params for {aug.name}: {exc}", source) from None


def build_train_transform(cfg: Input, source: object = "config") -> A.Compose:
    """The config's augmentations (albumentations names) plus the random crop, if any."""
    transforms = [_build(aug, source) for aug in cfg.augmentations]
    if cfg.train_crop is not None:
        height, width = cfg.train_crop
        transforms.append(A.RandomCrop(height=height, width=width, p=1.0))
    return A.Compose(transforms, seed=0)


class AugmentedDataset(Dataset):
    """Wrap a dataset of {"image" (1,H,W) uint8, "mask" (H,W), ...} tensors with an augmentation.

    A teacher frame's "soft" (C,H,W) uint8 probabilities ("distill": True) get the geometric
    transforms of the mask (nearest-neighbour, as albumentations moves masks).

    `channels` 3: augment the gray frame copied to 3 channels; the image comes out (3, H, W).
    """

    def __init__(self, base: Dataset, transform: A.Compose, seed: int, channels: int = 1) -> None:
        self.base, self.transform, self.seed, self.channels = base, transform, seed, channels

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        """`key` is (epoch, index): the epoch travels with the index from the sampler, so
        persistent workers (which keep their own copy of this object) still see it."""
        epoch, index = key
        item = dict(self.base[index])
        self.transform.set_random_seed(derive_seed(self.seed, epoch, index))
        image = item["image"][0].numpy()
        if self.channels == 3:
            image = np.repeat(image[:, :, None], 3, axis=2)
        targets = {"mask": item["mask"].numpy().astype(np.uint8)}
        if item.get("distill"):  # a teacher's soft targets move with the frame, as masks do
            targets["masks"] = list(item["soft"].numpy())
        out = self.transform(image=image, **targets)
        image = np.ascontiguousarray(out["image"])
        item["image"] = torch.from_numpy(image.transpose(2, 0, 1).copy() if image.ndim == 3 else image[None])
        item["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        if item.get("distill"):
            item["soft"] = torch.from_numpy(np.ascontiguousarray(np.stack(out["masks"])))
        return item
