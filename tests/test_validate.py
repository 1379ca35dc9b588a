"""validate.py end to end on a tiny dataset: its numbers equal evaluation.metrics, errors are clean, overlays rank right."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_script

from dataset.create_kfolds import create_kfolds, write_kfolds
from dataset.openeds import (
    OpenEDSIndex,
    label_relpath,
    pred_relpath,
    read_label,
    read_sample_list,
    write_sample_list,
)
from evaluation.metrics import SegmentationMeter
from evaluation.report import ground_truth_from_pickle
from utils.errors import InputError


def _validate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_script("validate.py", *args, check=False, timeout=60)


def _truth(data: Path, keys: list[str]) -> dict[str, np.ndarray]:
    return {key: read_label(data / label_relpath(key)) for key in keys}


def _write_predictions(
    pred_dir: Path, masks: dict[str, np.ndarray], shifts: dict[str, int]
) -> dict[str, np.ndarray]:
    """Save each mask shifted right by its shift (0 = perfect); returns what was saved."""
    saved = {}
    for key, mask in masks.items():
        path = pred_dir / pred_relpath(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        saved[key] = np.roll(mask, shifts.get(key, 0), axis=1)
        np.save(path, saved[key])
    return saved


def _expected(truth: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> dict:
    meter = SegmentationMeter()
    for key, mask in truth.items():
        meter.update(preds[key][None], mask[None], names=[key])
    return meter.compute()


@pytest.fixture
def folded(tiny_data: Path) -> Path:
    """The tiny dataset with two folds by sequence written next to it."""
    index = OpenEDSIndex.from_dir(tiny_data)
    write_kfolds(tiny_data, create_kfolds(index, folds=2, seed=0), index.unlabeled_keys())
    return tiny_data


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fold", "label-file", "gt-pkl"])
def test_numbers_equal_utils_metrics(folded: Path, tmp_path: Path, mode: str) -> None:
    labeled = OpenEDSIndex.from_dir(folded).labeled_keys()
    if mode == "fold":
        keys = read_sample_list(folded / "fold_1_val.txt")
        source = ["--fold", "1"]
    elif mode == "label-file":
        keys = labeled[::3]
        write_sample_list(tmp_path / "some.txt", keys)
        source = ["--label-file", tmp_path / "some.txt"]
    else:
        keys = labeled[1::2]
        with open(tmp_path / "gt.pkl", "wb") as handle:
            pickle.dump({pred_relpath(key): read_label(folded / label_relpath(key)) for key in keys}, handle)
        source = ["--gt-pkl", tmp_path / "gt.pkl"]
    truth = _truth(folded, keys)
    preds = _write_predictions(tmp_path / "preds", truth, {key: 7 * i for i, key in enumerate(keys)})

    result = _validate(
        "--data-dir", folded, "--pred-dir", tmp_path / "preds", *source, "--json", tmp_path / "m.json"
    )

    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "m.json").read_text())
    expected = _expected(truth, preds)
    assert got == expected  # JSON round-trips floats exactly
    assert got["n_images"] == len(keys) and 0.0 < got["miou"] < 1.0
    assert f"{got['miou']:.4f}" in result.stdout and "per-sequence mIoU" in result.stdout


@pytest.mark.slow
def test_perfect_predictions_score_one(folded: Path, tmp_path: Path) -> None:
    truth = _truth(folded, OpenEDSIndex.from_dir(folded).labeled_keys())
    _write_predictions(tmp_path / "preds", truth, {})

    result = _validate(
        "--data-dir", folded, "--pred-dir", tmp_path / "preds", "--fold", "0", "--json", tmp_path / "m.json"
    )

    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "m.json").read_text())
    assert got["miou"] == got["miou_dataset"] == got["miou_2019"] == 1.0
    assert got["per_class_iou"] == [1.0] * 4


@pytest.mark.slow
def test_missing_prediction_fails_whole_run(folded: Path, tmp_path: Path) -> None:
    keys = OpenEDSIndex.from_dir(folded).labeled_keys()
    _write_predictions(tmp_path / "preds", _truth(folded, keys), {})
    (tmp_path / "preds" / pred_relpath(keys[5])).unlink()

    result = _validate(
        "--data-dir",
        folded,
        "--pred-dir",
        tmp_path / "preds",
        "--label-file",
        "labels.txt",
        "--json",
        tmp_path / "m.json",
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'preds'}: 1 of {len(keys)} predictions missing or malformed: {pred_relpath(keys[5])} (missing)"
    ]
    assert result.stdout == "" and not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_malformed_predictions_are_counted_and_named(folded: Path, tmp_path: Path) -> None:
    keys = OpenEDSIndex.from_dir(folded).labeled_keys()
    _write_predictions(tmp_path / "preds", _truth(folded, keys), {})
    spoiled = {
        keys[1]: (np.zeros((10, 10), np.uint8), "shape (10, 10), expected (400, 640)"),
        keys[4]: (np.zeros((400, 640), np.int64), "dtype int64, expected uint8"),
        keys[6]: (np.full((400, 640), 4, np.uint8), "values [4] outside 0..3"),
        keys[9]: (np.zeros((400, 640), np.float32), "not named: only the first three are"),
    }
    for key, (array, _) in spoiled.items():
        np.save(tmp_path / "preds" / pred_relpath(key), array)

    result = _validate(
        "--data-dir",
        folded,
        "--pred-dir",
        tmp_path / "preds",
        "--label-file",
        "labels.txt",
        "--json",
        tmp_path / "m.json",
    )

    named = ", ".join(f"{pred_relpath(key)} ({problem})" for key, (_, problem) in list(spoiled.items())[:3])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'preds'}: 4 of {len(keys)} predictions missing or malformed: {named}, ..."
    ]
    assert result.stdout == "" and not (tmp_path / "m.json").exists()


@pytest.mark.slow
def test_overlays_of_worst_frames_in_order(folded: Path, tmp_path: Path) -> None:
    keys = read_sample_list(folded / "fold_0_val.txt")
    worst, second = keys[2], keys[0]
    _write_predictions(tmp_path / "preds", _truth(folded, keys), {worst: 120, second: 10})

    result = _validate(
        "--data-dir",
        folded,
        "--pred-dir",
        tmp_path / "preds",
        "--fold",
        "0",
        "--overlays",
        tmp_path / "ov",
        "--worst",
        "3",
    )

    assert result.returncode == 0, result.stderr
    files = sorted(path.name for path in (tmp_path / "ov").iterdir())
    assert len(files) == 4 and files[-1] == "worst.png"
    assert files[0] == f"1_{worst.replace('/', '_')}.png" and files[1] == f"2_{second.replace('/', '_')}.png"
    overlay, sheet = (
        cv2.imread(str(tmp_path / "ov" / files[0])),
        cv2.imread(str(tmp_path / "ov" / "worst.png")),
    )
    assert overlay.shape[1:] == (640, 3) and overlay.shape[0] > 400  # full frame plus a caption
    assert sheet.shape[1] > 640 and sheet.shape[0] > 200


def test_gt_pickle_structure_is_checked(tmp_path: Path) -> None:
    good = np.zeros((400, 640), np.uint8)
    cases = {
        "list.pkl": [good],
        "key.pkl": {"S_0/1.npy": good, "frame_2": good},
        "shape.pkl": {"S_0/1.npy": good, "S_0/2.npy": good[:10]},
        "values.pkl": {"S_0/1.npy": good + 5},
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(pickle.dumps(content))
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    messages = {}
    for name in [*cases, "junk.pkl"]:
        with pytest.raises(InputError) as info:
            ground_truth_from_pickle(tmp_path / name)
        messages[name] = str(info.value)
    assert all(message.startswith(str(tmp_path / name)) for name, message in messages.items())
    assert "got list" in messages["list.pkl"] and "'frame_2'" in messages["key.pkl"]
    assert "'S_0/2.npy': shape (10, 640)" in messages["shape.pkl"] and "[5]" in messages["values.pkl"]
    assert "not a readable pickle" in messages["junk.pkl"]
