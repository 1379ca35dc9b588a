"""Training and validation DataLoaders for one fold (plus pseudo-labelled or teacher frames if given).

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
from dataset.create_kfolds import fold_files
from dataset.openeds import LabeledDataset, OpenEDSIndex, read_sample_list
from dataset.synthetic.stream import RenderedFrames
from training.augment import AugmentedDataset, build_train_transform
from training.distill import Teacher, TeacherDataset
from training.preflight import check_fold_lists, check_frames
from training.shutdown import ignore_sigterm
from training.state import derive_seed
from utils import distributed
from utils.errors import InputError

__all__ = ["fold_keys", "EpochSampler", "build_loaders", "Loaders"]


def fold_keys(
    folds_dir: Path, fold: int, data_dir: Path, index: OpenEDSIndex | None = None
) -> tuple[list[str], list[str]]:
    """Train and val keys of fold `fold` from fold_<k>_train.txt / fold_<k>_val.txt.

    With `index`, both lists are checked against it and for overlap (training.preflight).
    """
    train_file, val_file = fold_files(folds_dir, fold)
    for path in (train_file, val_file):
        if not path.is_file():
            raise InputError(
                f"fold file not found; create folds first: python -m dataset.create_kfolds --data-dir {data_dir}",
                path,
            )
    train_keys, val_keys = read_sample_list(train_file), read_sample_list(val_file)
    if index is not None:
        check_fold_lists(index, train_keys, val_keys, train_file, val_file)
    return train_keys, val_keys


class _Tagged(Dataset):
    """Adds a boolean 'pseudo' field so the loss can weight pseudo-labelled samples.

    `soft_classes`: a distillation run, whose batches mix labelled and teacher frames; labelled
    ones get "distill": False and empty (zero) soft targets, so every sample has the same fields.
    """

    def __init__(self, base: Dataset, pseudo: bool, soft_classes: int = 0) -> None:
        self.base, self.pseudo, self.soft_classes = base, pseudo, soft_classes

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, object]:
        item = {**self.base[index], "pseudo": self.pseudo}
        if self.soft_classes:
            height, width = item["image"].shape[-2:]
            item |= {
                "soft": torch.zeros((self.soft_classes, height, width), dtype=torch.uint8),
                "distill": False,
            }
        return item


class EpochSampler(Sampler[tuple[int, int]]):
    """Each epoch: all real samples plus a share of pseudo samples, shuffled, split across ranks.

    With n_real real samples and pseudo share s, an epoch holds round(n_real * s / (1 - s))
    pseudo samples (at most all of them), drawn anew every epoch. `fresh` more samples per epoch
    come after those, new ones every epoch (epoch e takes the e-th block of `fresh`): rendered
    frames. Ranks get equal lengths (the order is cycled to a multiple of world_size) so DDP
    steps stay in lockstep.
    """

    def __init__(
        self, n_real: int, n_pseudo: int = 0, share: float = 0.0, seed: int = 0, fresh: int = 0
    ) -> None:
        self.n_real, self.n_pseudo, self.seed, self.epoch, self.skip = n_real, n_pseudo, seed, 0, 0
        self.fresh = fresh
        self.n_pseudo_per_epoch = min(n_pseudo, round(n_real * share / (1 - share))) if n_pseudo else 0
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw epoch `epoch`'s order; `skip`: this rank's samples already trained (a resumed epoch)."""
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self._per_rank() - self.skip

    def _per_rank(self) -> int:
        total = self.n_real + self.n_pseudo_per_epoch + self.fresh
        return -(-total // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        pseudo = self.n_real + torch.randperm(self.n_pseudo, generator=generator)[: self.n_pseudo_per_epoch]
        fresh = self.n_real + self.n_pseudo + self.epoch * self.fresh + torch.arange(self.fresh)
        order = torch.cat([torch.arange(self.n_real), pseudo, fresh])
        order = order[torch.randperm(len(order), generator=generator)].tolist()
        per_rank = self._per_rank()
        order = (order * self.world)[: per_rank * self.world]
        return iter((self.epoch, index) for index in order[self.rank :: self.world][self.skip :])


class Loaders:
    """The fold's loaders; `sampler.set_epoch(e)` before each epoch."""

    def __init__(self, train: DataLoader, val: DataLoader, sampler: EpochSampler) -> None:
        self.train, self.val, self.sampler = train, val, sampler

    def close(self) -> None:
        """Stop the persistent DataLoader workers now, the way torch does it (a sentinel, then join).

        Left to interpreter exit, multiprocessing would stop them with SIGTERM, which they ignore
        (training.shutdown.ignore_sigterm), and the finished run would hang. torch has no public
        close(): dropping a loader's iterator runs its worker shutdown.
        """
        for loader in (self.train, self.val):
            loader._iterator = None


def build_loaders(
    config: Config,
    index: OpenEDSIndex,
    train_keys: list[str],
    val_keys: list[str],
    *,
    pseudo_dir: Path | None = None,
    pseudo_keys: list[str] | None = None,
    teacher: Teacher | None = None,
    workers: int,
    seed: int,
    pin_memory: bool = False,
) -> Loaders:
    """The fold's loaders, after every frame they will read has been checked (training.preflight)."""
    cache = config.data.cache
    train_set = LabeledDataset(index.root, train_keys, cache=cache)
    rank_val = val_keys[distributed.rank() :: distributed.world_size()]
    val_set = LabeledDataset(index.root, rank_val, cache=cache)
    parts: list[Dataset] = [
        _Tagged(train_set, pseudo=False, soft_classes=teacher.num_classes if teacher else 0)
    ]
    extra_sets: list[Dataset] = []
    n_extra, share = 0, config.pseudo.share
    if pseudo_dir is not None and pseudo_keys:
        # Not cached: pseudo-labelled frames can be ~20x the labelled ones.
        extra_sets.append(LabeledDataset(index.root, pseudo_keys, label_dir=pseudo_dir))
        parts.append(_Tagged(extra_sets[0], pseudo=True))
        n_extra = len(pseudo_keys)
    elif teacher is not None:
        extra_sets.append(TeacherDataset(index.root, teacher))
        parts.append(extra_sets[0])
        n_extra, share = len(teacher.keys), config.distill.share
    check_frames(index.root, decoded=[train_set, val_set], headers_only=extra_sets)
    render = config.data.render
    if render.frames_per_epoch:  # after the pseudo/teacher part, as EpochSampler numbers them
        epochs = config.optimizer.schedule.epochs
        rendered = RenderedFrames(render.styles, render.frames_per_epoch * epochs, seed)
        parts.append(_Tagged(rendered, pseudo=False, soft_classes=teacher.num_classes if teacher else 0))
    transform = build_train_transform(config.input)
    augmented = AugmentedDataset(ConcatDataset(parts), transform, seed, config.in_channels)
    sampler = EpochSampler(len(train_keys), n_extra, share, seed, fresh=render.frames_per_epoch)
    batch_size = config.optimizer.batch_size
    common = {
        "num_workers": workers, "pin_memory": pin_memory, "persistent_workers": workers > 0 and cache,
        "worker_init_fn": ignore_sigterm,  # the main process handles SIGTERM (training.shutdown)
    }  # fmt: skip
    # drop_last keeps BatchNorm away from 1-sample batches.
    drop_last = len(sampler) > batch_size
    train = DataLoader(augmented, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
    val = DataLoader(val_set, batch_size=config.validation.batch_size, shuffle=False, **common)
    return Loaders(train, val, sampler)
