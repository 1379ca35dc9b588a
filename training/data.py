"""Training and validation DataLoaders for one fold (plus pseudo-labelled frames if given).

Shuffling is seeded by (seed, epoch), and augmentation by (seed, epoch, sample), so the
data seen in epoch e is the same in an uninterrupted and in a resumed run, on any number of
workers. Under torchrun each rank takes every world_size-th sample of the epoch's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from config.schema import Config
from dataset.openeds import LabeledDataset, OpenEDSIndex, read_sample_list
from training.augment import AugmentedDataset, build_train_transform
from training.state import derive_seed
from utils import distributed
from utils.errors import InputError

__all__ = ["fold_keys", "EpochSampler", "build_loaders", "Loaders"]


def fold_keys(folds_dir: Path, fold: int, data_dir: Path) -> tuple[list[str], list[str]]:
    """Train and val keys of fold `fold` from fold_<k>_train.txt / fold_<k>_val.txt."""
    train_file, val_file = folds_dir / f"fold_{fold}_train.txt", folds_dir / f"fold_{fold}_val.txt"
    for path in (train_file, val_file):
        if not path.is_file():
            raise InputError(
                f"fold file not found; create folds first: python -m dataset.create_kfolds --data-dir {data_dir}",
                path,
            )
    return read_sample_list(train_file), read_sample_list(val_file)


class _Tagged(Dataset):
    """Adds a boolean 'pseudo' field so the loss can weight pseudo-labelled samples."""

    def __init__(self, base: Dataset, pseudo: bool) -> None:
        self.base, self.pseudo = base, pseudo

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, object]:
        return {**self.base[index], "pseudo": self.pseudo}


class EpochSampler(Sampler[tuple[int, int]]):
    """Each epoch: all real samples plus a share of pseudo samples, shuffled, split across ranks.

    With n_real real samples and pseudo share s, an epoch holds round(n_real * s / (1 - s))
    pseudo samples (at most all of them), drawn anew every epoch. Ranks get equal lengths
    (the order is cycled to a multiple of world_size) so DDP steps stay in lockstep.
    """

    def __init__(self, n_real: int, n_pseudo: int = 0, share: float = 0.0, seed: int = 0) -> None:
        self.n_real, self.n_pseudo, self.seed, self.epoch = n_real, n_pseudo, seed, 0
        self.n_pseudo_per_epoch = min(n_pseudo, round(n_real * share / (1 - share))) if n_pseudo else 0
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        total = self.n_real + self.n_pseudo_per_epoch
        return -(-total // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        pseudo = self.n_real + torch.randperm(self.n_pseudo, generator=generator)[: self.n_pseudo_per_epoch]
        order = torch.cat([torch.arange(self.n_real), pseudo])
        order = order[torch.randperm(len(order), generator=generator)].tolist()
        per_rank = len(self)
        order = (order * self.world)[: per_rank * self.world]
        return iter((self.epoch, index) for index in order[self.rank :: self.world])


class Loaders:
    """The fold's loaders; `sampler.set_epoch(e)` before each epoch."""

    def __init__(self, train: DataLoader, val: DataLoader, sampler: EpochSampler) -> None:
        self.train, self.val, self.sampler = train, val, sampler


def build_loaders(
    config: Config,
    index: OpenEDSIndex,
    train_keys: list[str],
    val_keys: list[str],
    *,
    pseudo_dir: Path | None = None,
    pseudo_keys: list[str] | None = None,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> Loaders:
    cache = config.data.cache
    parts: list[Dataset] = [_Tagged(LabeledDataset(index.root, train_keys, cache=cache), pseudo=False)]
    n_pseudo = 0
    if pseudo_dir is not None and pseudo_keys:
        # Not cached: pseudo-labelled frames can be ~20x the labelled ones.
        parts.append(_Tagged(LabeledDataset(index.root, pseudo_keys, label_dir=pseudo_dir), pseudo=True))
        n_pseudo = len(pseudo_keys)
    transform = build_train_transform(config.input)
    augmented = AugmentedDataset(ConcatDataset(parts), transform, seed, config.in_channels)
    sampler = EpochSampler(len(train_keys), n_pseudo, config.pseudo.share, seed)
    batch_size = config.optimizer.batch_size
    common = {"num_workers": workers, "pin_memory": pin_memory, "persistent_workers": workers > 0 and cache}
    # drop_last keeps BatchNorm away from 1-sample batches.
    drop_last = len(sampler) > batch_size
    train = DataLoader(augmented, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
    rank_val = val_keys[distributed.rank() :: distributed.world_size()]
    val = DataLoader(
        LabeledDataset(index.root, rank_val, cache=cache), batch_size=config.validation.batch_size, shuffle=False, **common
    )
    return Loaders(train, val, sampler)
