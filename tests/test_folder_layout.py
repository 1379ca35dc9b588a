"""Your frames in a plain folder (images/ + masks/, dataset/folder.py) through the real commands:
frames of two sizes (and a 16-bit one) fitted as segment.py fits them, folds by frame and by group,
train.py -> predict_ensemble.py -> validate.py, and bad files as one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, error_line, run_script
from PIL import Image

import train
import validate
from dataset import create_kfolds
from dataset.folder import FolderIndex
from dataset.openeds import LabeledDataset, OpenEDSIndex, open_index, read_sample_list
from inference.frames import read_any_image
from inference.segmenter import place_in_model_frame

# group, size (W, H), suffix, colour; frames 0..2 get a mask, frame 3 is unlabelled
CAMERAS = [("cam_a", (320, 240), ".png", False), ("cam_b", (160, 100), ".jpg", True)]


def eye(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A gray eye-like frame and its class mask (disks, no realism)."""
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy, size = width / 2 + rng.integers(-width // 10, width // 10), height / 2, min(width, height)
    mask = np.zeros((height, width), np.uint8)
    mask[(xx - cx) ** 2 + ((yy - cy) * 1.6) ** 2 < (0.45 * size) ** 2] = 1
    mask[(xx - cx) ** 2 + (yy - cy) ** 2 < (0.2 * size) ** 2] = 2
    mask[(xx - cx) ** 2 + (yy - cy) ** 2 < (0.08 * size) ** 2] = 3
    image = np.array([40, 170, 100, 20], np.uint8)[mask] + rng.integers(0, 20, mask.shape, dtype=np.uint8)
    return image, mask


def write_plain_folder(root: Path) -> Path:
    """Two groups at two sizes, plus a 16-bit frame directly under images/ (the group '.')."""
    rng = np.random.default_rng(0)
    for group, (width, height), suffix, colour in CAMERAS:
        (root / "images" / group).mkdir(parents=True)
        (root / "masks" / group).mkdir(parents=True)
        for n in range(4):
            image, mask = eye(width, height, rng)
            cv2.imwrite(
                str(root / "images" / group / f"f{n}{suffix}"), cv2.merge([image] * 3) if colour else image
            )
            if n < 3:
                cv2.imwrite(str(root / "masks" / group / f"f{n}.png"), mask)
    image, mask = eye(200, 200, rng)
    mask[:10] = 255  # an ignored strip
    cv2.imwrite(str(root / "images" / "solo.png"), image.astype(np.uint16) * 16)  # 12-bit values
    cv2.imwrite(str(root / "masks" / "solo.png"), mask)
    return root


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    return write_plain_folder(tmp_path / "plain")


def fitted_mask(path: Path) -> np.ndarray:
    """A gray mask file fitted into 640 x 400 by hand."""
    return fitted_mask_of(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def fitted_mask_of(mask: np.ndarray) -> np.ndarray:
    """A mask fitted into 640 x 400 by hand: as large as fits, centred, nearest, padding 0."""
    height, width = mask.shape
    scale = min(640 / width, 400 / height)
    w, h = round(width * scale), round(height * scale)
    canvas = np.zeros((400, 640), np.uint8)
    x, y = (640 - w) // 2, (400 - h) // 2
    canvas[y : y + h, x : x + w] = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return canvas


def frame_miou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over the 4 classes of IoU (absent from both = 1), pixels of 255 left out."""
    counted = truth != 255
    ious = []
    for cls in range(4):
        p, t = (pred == cls) & counted, (truth == cls) & counted
        union = (p | t).sum()
        ious.append((p & t).sum() / union if union else 1.0)
    return float(np.mean(ious))


def test_the_index_keys_groups_and_fold_lists(plain: Path, tmp_path: Path, tiny_data: Path) -> None:
    index = open_index(plain)
    assert isinstance(index, FolderIndex) and isinstance(open_index(tiny_data), OpenEDSIndex)
    assert index.sequences == [".", "cam_a", "cam_b"]
    assert index.labeled_keys() == ["solo"] + [f"{g}/f{n}" for g, *_ in CAMERAS for n in range(3)]
    assert index.unlabeled_keys() == ["cam_a/f3", "cam_b/f3"]

    create_kfolds.main(["--data-dir", str(plain), "--folds", "2", "--by", "frame"])
    by_group = tmp_path / "by_group"
    create_kfolds.main(
        ["--data-dir", str(plain), "--folds", "3", "--by", "sequence", "--out-dir", str(by_group)]
    )
    assert (plain / "fold_0_val.txt").read_text().splitlines()[0].startswith("masks/")
    assert read_sample_list(plain / "unlabeled.txt") == ["cam_a/f3", "cam_b/f3"]
    vals = [read_sample_list(plain / f"fold_{k}_val.txt") for k in range(2)]
    assert sorted(vals[0] + vals[1]) == sorted(index.labeled_keys())
    assert all(
        {"cam_a", "cam_b"} <= {index.sequence_of(key) for key in val} for val in vals
    )  # frames of each
    groups = [
        {index.sequence_of(key) for key in read_sample_list(by_group / f"fold_{k}_val.txt")} for k in range(3)
    ]
    assert sorted(map(sorted, groups)) == [["."], ["cam_a"], ["cam_b"]]  # one whole group each


def test_frames_and_masks_are_fitted_as_segment_fits_frames(plain: Path) -> None:
    keys = ["cam_a/f0", "cam_b/f0", "solo"]
    palette = plain / "masks/cam_b/f0.png"  # a palette PNG, as VOC-style tools write: its indices count
    gray = cv2.imread(str(palette), cv2.IMREAD_UNCHANGED)
    indexed = Image.fromarray(gray).convert("P")
    indexed.putpalette([0, 0, 0, 255, 255, 255, 0, 255, 0, 255, 0, 0])
    indexed.save(palette)
    dataset = LabeledDataset(plain, keys)
    assert dataset.check_all(decode=True) == []
    for key, path in zip(keys, ["cam_a/f0.png", "cam_b/f0.jpg", "solo.png"], strict=True):
        item = dataset[keys.index(key)]
        segment_canvas, _ = place_in_model_frame(read_any_image(plain / "images" / path))  # segment.py's way
        assert np.array_equal(item["image"][0].numpy(), segment_canvas)
        mask_file = plain / "masks" / Path(path).with_suffix(".png")
        expected = fitted_mask_of(gray) if mask_file == palette else fitted_mask(mask_file)
        assert np.array_equal(item["mask"].numpy(), expected)
    bars = dataset[0]["mask"].numpy()  # 320 x 240 -> 533 x 400 between black bars of 53 and 54 columns
    assert not bars[:, :53].any() and not bars[:, -54:].any() and bars[:, 53:-54].any()
    assert (dataset[2]["mask"].numpy()[:20] == 255).any()  # the ignored strip is kept


@pytest.mark.parametrize(
    "problem",
    ["mask of another size", "mask values", "corrupt image", "mask without an image", "pseudo-labels"],
)
def test_bad_files_are_one_line_errors_naming_them(
    problem: str, plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_kfolds.main(["--data-dir", str(plain), "--folds", "2", "--by", "frame"])
    argv = ["--config", TINY, "--data-dir", plain, "--fold", 0, "--output-dir", tmp_path / "runs"]
    mask, image = plain / "masks/cam_a/f1.png", plain / "images/cam_a/f1.png"
    if problem == "mask of another size":
        cv2.imwrite(str(mask), np.zeros((100, 100), np.uint8))
        needle = f"{mask}: mask is 100x100 (WxH) but its image f1.png is 320x240"
    elif problem == "mask values":
        cv2.imwrite(str(mask), np.full((240, 320), 7, np.uint8))
        needle = f"{mask}: values must be 0..3 or 255 (ignore), found [7]"
    elif problem == "corrupt image":
        image.write_bytes(image.read_bytes()[:100])
        needle = f"{image}: not a readable image"
    elif problem == "mask without an image":
        orphan = plain / "masks/cam_b/f9.png"
        shutil.copy(plain / "masks/cam_b/f0.png", orphan)
        assert error_line(create_kfolds.main, ["--data-dir", plain], capsys).startswith(f"error: {orphan}: ")
        needle = f"{orphan}: mask without an image (no images/cam_b/f9.<png|jpg|"
    else:
        argv += ["--pseudo-dir", tmp_path / "pseudo"]
        needle = "--pseudo-dir and --teacher take data dirs of the OpenEDS layout only"
    assert needle in error_line(train.main, argv, capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_predict_validate_on_a_plain_folder(plain: Path, tmp_path: Path) -> None:
    create_kfolds.main(["--data-dir", str(plain), "--folds", "2", "--by", "frame"])
    runs, preds = tmp_path / "runs", tmp_path / "preds"
    run_script(
        "train.py", "--config", TINY, "--data-dir", plain, "--fold", 0, "--output-dir", runs, "--epochs", 1
    )
    best = runs / "tiny" / "fold_0" / "best.pt"
    run_script(
        "predict_ensemble.py", "--data-dir", plain, "--label-file", "fold_0_val.txt", "--save-dir", preds,
        "--checkpoints", best, "--batch-size", 8,
    )  # fmt: skip
    val = read_sample_list(plain / "fold_0_val.txt")
    assert (preds / "output.txt").read_text().split() == [f"{key}.npy" for key in val]
    masks = {key: np.load(preds / f"{key}.npy") for key in val}
    assert all(mask.shape == (400, 640) and mask.dtype == np.uint8 for mask in masks.values())

    metrics = validate.main(["--data-dir", str(plain), "--pred-dir", str(preds), "--fold", "0"])

    truth = {key: fitted_mask(FolderIndex.from_dir(plain).label_path(key)) for key in val}
    assert metrics["n_images"] == len(val)
    assert metrics["miou"] == pytest.approx(np.mean([frame_miou(masks[k], truth[k]) for k in val]))
    assert set(metrics["per_sequence"]) == {FolderIndex.sequence_of(key) for key in val}
