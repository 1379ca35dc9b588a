"""Checks made before a training run creates its folder: the fold lists and every frame it reads.

Without them a frame is first read when the sampler draws it, so a corrupt file ends a short
run silently and a long one hours in. The fold's labelled frames are decoded and checked in
full (and kept in the datasets' caches, which would hold them anyway); the other frames the
run reads (pseudo-labelled ones) get their PNG and .npy headers checked. Every bad file is
collected first, so one error names the first few and how many there are.
"""

from __future__ import annotations

from pathlib import Path

from dataset.folder import FolderIndex
from dataset.openeds import OpenEDSIndex
from utils.errors import InputError

__all__ = ["check_fold_lists", "check_frames", "SHOWN"]

SHOWN = 3  # bad files named in one error line; the rest are counted


def _listing(items: list[str]) -> str:
    more = f"; and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def check_fold_lists(
    index: OpenEDSIndex | FolderIndex,
    train_keys: list[str],
    val_keys: list[str],
    train_file: Path,
    val_file: Path,
) -> None:
    """Every fold frame is a labelled frame of the data dir's index; train and val do not overlap."""
    for keys, path in ((train_keys, train_file), (val_keys, val_file)):
        unknown = [index.sample_name(key) for key in keys if key not in index.labeled]
        if unknown:
            raise InputError(
                f"{len(unknown)} frame(s) are not labelled frames of the data dir {index.root} "
                f"(wrong data dir, or folds of another dataset?): {_listing(unknown)}",
                path,
            )
    shared = [index.sample_name(key) for key in train_keys if key in set(val_keys)]
    if shared:
        raise InputError(
            f"{len(shared)} frame(s) are also in {val_file.name} (training and validation must not "
            f"overlap): {_listing(shared)}",
            train_file,
        )


def check_frames(data_dir: Path, decoded: list, headers_only: list) -> None:
    """Check the frames of these datasets (dataset.openeds `check_all`); one InputError for all bad ones.

    decoded: datasets read in full now; headers_only: datasets whose file headers are checked.
    """
    errors = [error for dataset in decoded for error in dataset.check_all(decode=True)]
    errors += [error for dataset in headers_only for error in dataset.check_all(decode=False)]
    errors = list(dict.fromkeys(errors))  # a frame in two datasets is one bad file
    if len(errors) == 1:
        raise InputError(errors[0])
    if errors:
        raise InputError(
            f"{len(errors)} bad files among the frames this run reads (checked before training): {_listing(errors)}",
            data_dir,
        )
