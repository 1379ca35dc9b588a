"""k-fold splits: partition properties for both modes, determinism, and the CLI on a tiny dataset."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from dataset.create_kfolds import UNLABELED_LIST, create_kfolds, fold_files, write_kfolds
from dataset.openeds import OpenEDSIndex, frame_key, read_sample_list
from utils.errors import InputError


def _index(labels_per_sequence: list[int], frames: int = 60) -> OpenEDSIndex:
    """An in-memory index (no files): sequence k has ``labels_per_sequence[k]`` labeled frames."""
    sequences = [f"S_{k}" for k in range(len(labels_per_sequence))]
    labeled = {
        frame_key(s, 1 + 4 * i) for s, n in zip(sequences, labels_per_sequence, strict=True) for i in range(n)
    }
    return OpenEDSIndex(Path("/nowhere"), sequences, {s: list(range(frames)) for s in sequences}, labeled)


# Like the real data: 6-14 labels per sequence (but 23 sequences instead of 200).
INDEX = _index([int(n) for n in np.random.default_rng(1).integers(6, 15, 23)])


def _check_partition(index: OpenEDSIndex, splits: list[tuple[list[str], list[str]]], folds: int) -> None:
    labeled = set(index.labeled_keys())
    assert len(splits) == folds
    vals = [set(val) for _, val in splits]
    assert (
        sum(len(v) for v in vals) == len(labeled) and set().union(*vals) == labeled
    )  # each label in one val
    for train, val in splits:
        assert val and not set(train) & set(val)
        assert set(train) | set(val) == labeled


@pytest.mark.parametrize("folds", [2, 5, 10])
def test_by_sequence_holds_out_whole_sequences(folds: int) -> None:
    splits = create_kfolds(INDEX, folds, seed=0, by="sequence")
    _check_partition(INDEX, splits, folds)
    val_sequences = [{INDEX.sequence_of(key) for key in val} for _, val in splits]
    assert sum(len(s) for s in val_sequences) == len(set().union(*val_sequences))  # no sequence in two vals
    for (train, _), held_out in zip(splits, val_sequences, strict=True):
        assert not {INDEX.sequence_of(key) for key in train} & held_out
    sizes = [len(val) for _, val in splits]
    assert max(sizes) - min(sizes) <= 14  # greedy balance: within one sequence's worth of labels


@pytest.mark.parametrize("folds", [2, 5, 10])
def test_by_frame_holds_out_frames_in_every_sequence(folds: int) -> None:
    index = _index([3, 12, 6, 14, 10, 1, 9])
    splits = create_kfolds(index, folds, seed=0, by="frame")
    _check_partition(index, splits, folds)
    sizes = [len(val) for _, val in splits]
    assert max(sizes) - min(sizes) <= 1
    for sequence in index.sequences:
        n_labels = sum(index.sequence_of(key) == sequence for key in index.labeled)
        in_vals = sum(any(index.sequence_of(key) == sequence for key in val) for _, val in splits)
        assert in_vals == min(n_labels, folds)


@pytest.mark.parametrize("by", ["sequence", "frame"])
def test_same_seed_same_folds_other_seed_other_folds(by: str) -> None:
    assert create_kfolds(INDEX, 5, seed=3, by=by) == create_kfolds(INDEX, 5, seed=3, by=by)
    assert create_kfolds(INDEX, 5, seed=3, by=by) != create_kfolds(INDEX, 5, seed=4, by=by)


@pytest.mark.parametrize(
    "folds, by, message",
    [(24, "sequence", "found 23"), (1, "sequence", "at least 2"), (10, "random", "--by")],
)
def test_bad_fold_requests(folds: int, by: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        create_kfolds(INDEX, folds, by=by)


def test_more_folds_than_labels_by_frame() -> None:
    with pytest.raises(InputError, match="found 3"):
        create_kfolds(_index([1, 2]), 4, by="frame")


def test_write_kfolds_round_trips(tmp_path: Path) -> None:
    splits = create_kfolds(INDEX, 3, seed=0)
    write_kfolds(tmp_path, splits, INDEX.unlabeled_keys())
    for k, (train, val) in enumerate(splits):
        train_path, val_path = fold_files(tmp_path, k)
        assert (read_sample_list(train_path), read_sample_list(val_path)) == (train, val)
    assert read_sample_list(tmp_path / UNLABELED_LIST) == INDEX.unlabeled_keys()


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_script("-m", "dataset.create_kfolds", *args, check=False, timeout=60)


@pytest.mark.slow
def test_cli_writes_fold_files(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "folds"
    result = _run_cli("--data-dir", str(tiny_data), "--folds", "4", "--by", "frame", "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert sum(line.startswith("fold ") for line in result.stdout.splitlines()) == 4
    index = OpenEDSIndex.from_dir(tiny_data)
    assert all(
        re.fullmatch(r"S_\d+/label_\d+\.npy", line) for line in (out / "fold_0_train.txt").read_text().split()
    )
    for k in range(4):
        train_path, val_path = fold_files(out, k)
        val = read_sample_list(val_path)
        assert {index.sequence_of(key) for key in val} == set(index.sequences)  # 4 labels per sequence
        assert sorted(read_sample_list(train_path) + val) == sorted(index.labeled_keys())
    unlabeled = (out / UNLABELED_LIST).read_text().splitlines()
    assert len(unlabeled) == 32 and unlabeled[0] == "S_0/label_0.npy"


@pytest.mark.slow
def test_cli_defaults_to_the_data_dir(tiny_data: Path) -> None:
    result = _run_cli("--data-dir", str(tiny_data), "--folds", "2")
    assert result.returncode == 0, result.stderr
    assert all(path.is_file() for path in fold_files(tiny_data, 1))
    assert (tiny_data / UNLABELED_LIST).is_file()


@pytest.mark.slow
def test_cli_missing_data_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _run_cli("--data-dir", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "absent" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_exclude_leaves_listed_frames_out_of_unlabeled(tiny_data: Path, tmp_path: Path) -> None:
    excluded = ["S_0/label_0.npy", "S_1/label_5.npy"]
    exclude = tmp_path / "test.txt"
    exclude.write_text("\n".join(excluded) + "\n")
    out = tmp_path / "folds"
    result = _run_cli(
        "--data-dir", str(tiny_data), "--folds", "2", "--out-dir", str(out), "--exclude", str(exclude)
    )
    assert result.returncode == 0, result.stderr
    unlabeled = read_sample_list(out / UNLABELED_LIST)
    assert len(unlabeled) == 30 and not set(excluded) & set(unlabeled)
    missing = _run_cli(
        "--data-dir",
        str(tiny_data),
        "--folds",
        "2",
        "--out-dir",
        str(tmp_path / "o2"),
        "--exclude",
        str(tmp_path / "no.txt"),
    )
    assert missing.returncode == 2 and "no.txt" in missing.stderr and not (tmp_path / "o2").exists()
