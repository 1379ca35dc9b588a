"""Training augmentations from config, with albumentations, seeded per (epoch, sample).

Every sample's augmentation is drawn from a generator seeded by (seed, epoch, index), so a
run is reproducible whatever the number of DataLoader workers, and a resumed run draws the
same augmentations as an uninterrupted one.
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

from training.state import derive_seed
from utils.config import Input
from utils.errors import InputError

__all__ = ["build_train_transform", "AugmentedDataset"]


def build_train_transform(cfg: Input, source: object = "config") -> A.Compose:
    """The config's augmentations (albumentations names) plus the random crop, if any."""
    transforms = []
    for aug in cfg.augmentations:
        cls = getattr(A, aug.name, None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise InputError(f"input.augmentations: unknown albumentations transform {aug.name!r}", source)
        try:
            transforms.append(cls(p=aug.p, **aug.params))
        except (TypeError, ValueError) as exc:
            raise InputError(f"input.augmentations: bad params for {aug.name}: {exc}", source) from None
    if cfg.crop_height is not None:
        transforms.append(A.RandomCrop(height=cfg.crop_height, width=cfg.crop_width, p=1.0))
    return A.Compose(transforms, seed=0)


class AugmentedDataset(Dataset):
    """Wrap a dataset of {"image" (1,H,W) uint8, "mask" (H,W), ...} tensors with an augmentation."""

    def __init__(self, base: Dataset, transform: A.Compose, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        """`key` is (epoch, index): the epoch travels with the index from the sampler, so
        persistent workers (which keep their own copy of this object) still see it."""
        epoch, index = key
        item = dict(self.base[index])
        self.transform.set_random_seed(derive_seed(self.seed, epoch, index))
        out = self.transform(image=item["image"][0].numpy(), mask=item["mask"].numpy().astype(np.uint8))
        item["image"] = torch.from_numpy(np.ascontiguousarray(out["image"]))[None]
        item["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        return item
