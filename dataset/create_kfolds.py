"""Seeded k-fold splits of the labeled frames, written once as editable sample lists.

``python -m dataset.create_kfolds --data-dir D [--folds 10] [--seed 42] [--by sequence|frame] [--out-dir D]
[--exclude D/test.txt]`` writes ``fold_<k>_train.txt`` / ``fold_<k>_val.txt`` (``S_0/label_3.npy`` lines,
the original format) and ``unlabeled.txt`` (every frame without a label, named the same way, like the
challenge test list, less any frame listed in ``--exclude``).

``--by sequence`` (the recipe) holds out whole sequences: validation measures generalisation to new
eyes. ``--by frame`` holds out labeled frames inside every sequence, like the hidden test set whose
frames sit between training labels of the same sequence.

A plain folder (``images/`` + ``masks/``, dataset/folder.py) is split the same way: its groups (first
sub-folders) are the sequences, and the lists name masks (``masks/left/0001.png``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

if not __package__:  # run as a file (python dataset/create_kfolds.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.folder import FolderIndex
from dataset.openeds import OpenEDSIndex, label_relpath, open_index, read_sample_list, write_sample_list
from utils.errors import InputError, cli_entry

__all__ = ["SPLIT_MODES", "UNLABELED_LIST", "create_kfolds", "fold_files", "write_kfolds", "main"]

SPLIT_MODES = ("sequence", "frame")
UNLABELED_LIST = "unlabeled.txt"

Split = tuple[list[str], list[str]]
Index = OpenEDSIndex | FolderIndex


def fold_files(out_dir: Path, fold: int) -> tuple[Path, Path]:
    """Paths of fold ``fold``'s train and val lists."""
    out_dir = Path(out_dir)
    return out_dir / f"fold_{fold}_train.txt", out_dir / f"fold_{fold}_val.txt"


def _val_folds_by_sequence(index: Index, folds: int, rng: np.random.Generator) -> dict[str, int]:
    """Whole sequences to folds, greedily balancing label counts (largest first, random ties)."""
    by_sequence: dict[str, list[str]] = {}
    for key in index.labeled_keys():
        by_sequence.setdefault(index.sequence_of(key), []).append(key)
    if folds > len(by_sequence):
        raise InputError(
            f"{folds} folds need at least {folds} labeled sequences, found {len(by_sequence)}", index.root
        )
    names = list(by_sequence)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    shuffled.sort(key=lambda sequence: -len(by_sequence[sequence]))  # stable: ties keep the random order
    labels_in = [0] * folds
    assignment: dict[str, int] = {}
    for sequence in shuffled:
        fold = min(range(folds), key=lambda k: labels_in[k])
        labels_in[fold] += len(by_sequence[sequence])
        assignment.update(dict.fromkeys(by_sequence[sequence], fold))
    return assignment


def _val_folds_by_frame(index: Index, folds: int, rng: np.random.Generator) -> dict[str, int]:
    """Labeled frames of each sequence, shuffled, dealt round-robin to folds.

    The dealer position carries over between sequences, so fold sizes differ by at most one and a
    sequence with at least ``folds`` labels has frames in every fold.
    """
    labeled = index.labeled_keys()
    if folds > len(labeled):
        raise InputError(
            f"{folds} folds need at least {folds} labeled frames, found {len(labeled)}", index.root
        )
    by_sequence: dict[str, list[str]] = {}
    for key in labeled:
        by_sequence.setdefault(index.sequence_of(key), []).append(key)
    assignment: dict[str, int] = {}
    dealt = 0
    for keys in by_sequence.values():
        for i in rng.permutation(len(keys)):
            assignment[keys[i]] = dealt % folds
            dealt += 1
    return assignment


def create_kfolds(index: Index, folds: int = 10, seed: int = 42, by: str = "sequence") -> list[Split]:
    """(train keys, val keys) per fold; each label is in exactly one val set. Same seed, same folds."""
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    if by not in SPLIT_MODES:
        raise InputError(f"--by must be one of {', '.join(SPLIT_MODES)}, got {by!r}")
    rng = np.random.default_rng(seed)
    assign = _val_folds_by_sequence if by == "sequence" else _val_folds_by_frame
    fold_of = assign(index, folds, rng)
    labeled = index.labeled_keys()
    return [
        ([key for key in labeled if fold_of[key] != k], [key for key in labeled if fold_of[key] == k])
        for k in range(folds)
    ]


def write_kfolds(
    out_dir: Path, splits: list[Split], unlabeled: Iterable[str], name: Callable[[str], str] = label_relpath
) -> None:
    """Write every fold's train/val list and the unlabeled list (each file atomically), a key per
    line as `name` gives it (the index's `sample_name`)."""
    for k, (train, val) in enumerate(splits):
        train_path, val_path = fold_files(out_dir, k)
        write_sample_list(train_path, train, name)
        write_sample_list(val_path, val, name)
    write_sample_list(Path(out_dir) / UNLABELED_LIST, unlabeled, name)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="OpenEDS root holding S_<k>/ folders, or a plain images/ + masks/ folder",
    )
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--by",
        choices=SPLIT_MODES,
        default="sequence",
        help="hold out whole sequences (a plain folder's groups: its first sub-folders) or frames",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="where to write the lists (default: --data-dir)"
    )
    parser.add_argument(
        "--exclude",
        type=Path,
        default=None,
        help="frames to leave out of unlabeled.txt, e.g. the test list, so pseudo-labels never see them",
    )
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    index = open_index(args.data_dir)
    excluded = set(read_sample_list(args.exclude)) if args.exclude is not None else set()
    splits = create_kfolds(index, args.folds, args.seed, args.by)
    out_dir = args.out_dir if args.out_dir is not None else args.data_dir
    unlabeled = [key for key in index.unlabeled_keys() if key not in excluded]
    write_kfolds(out_dir, splits, unlabeled, index.sample_name)
    for k, (train, val) in enumerate(splits):
        sequences = len({index.sequence_of(key) for key in val})
        print(f"fold {k}: train {len(train)} labels, val {len(val)} labels from {sequences} sequences")
    print(
        f"wrote {len(splits)} folds (by {args.by}, seed {args.seed}) and {UNLABELED_LIST} ({len(unlabeled)} frames) to {out_dir}"
    )


if __name__ == "__main__":
    main()
