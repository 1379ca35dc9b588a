"""The pre-flight data check: every frame a training run reads (its fold, its pseudo labels) is
checked before the run folder exists, and every bad file is named in one line.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import error_line, pseudo_folder, train_argv

import train
from dataset.openeds import image_relpath, label_relpath, read_sample_list

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_every_bad_frame_of_the_fold_is_reported_before_the_run_folder_exists(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_keys, val_keys = (read_sample_list(data / f"fold_0_{part}.txt") for part in ("train", "val"))
    damaged = [
        data / image_relpath(train_keys[0]),  # corrupt PNG
        data / label_relpath(train_keys[-1]),  # label value 7
        data / image_relpath(val_keys[0]),  # wrong size, in the validation set
        data / label_relpath(val_keys[-1]),  # truncated .npy
    ]
    damaged[0].write_bytes(damaged[0].read_bytes()[:100])
    np.save(damaged[1], np.full((400, 640), 7, np.uint8))
    cv2.imwrite(str(damaged[2]), np.zeros((200, 320), np.uint8))
    damaged[3].write_bytes(damaged[3].read_bytes()[:1000])
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out), capsys)

    assert line.startswith(f"error: {data}: 4 bad files among the frames this run reads"), line
    assert line.count(str(data) + "/S_") == 3 and line.endswith("; and 1 more")
    assert "not a readable image" in line and "values must be 0..3, found [7]" in line
    assert not out.exists()


@pytest.mark.parametrize("problem", ["frame not in the index", "train and val overlap"])
def test_fold_files_are_checked_against_the_index_and_for_overlap(
    problem: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_file, val_file = data / "fold_0_train.txt", data / "fold_0_val.txt"
    if problem == "frame not in the index":
        train_file.write_text(
            train_file.read_text() + "S_0/label_2.npy\nS_99/label_1.npy\n"
        )  # unlabelled, absent
        needles = [str(train_file), "2 frame(s) are not labelled frames of the data dir", "S_99/label_1.npy"]
    else:
        first_val = val_file.read_text().splitlines()[0]
        train_file.write_text(train_file.read_text() + first_val + "\n")
        needles = [str(train_file), "1 frame(s) are also in fold_0_val.txt", first_val]
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out), capsys)

    assert all(needle in line for needle in needles), (needles, line)
    assert not out.exists()


def test_pseudo_labelled_frames_get_a_header_check_before_training(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pseudo, keys = pseudo_folder(data, tmp_path / "pseudo")
    cv2.imwrite(str(data / image_relpath(keys[0])), np.zeros((200, 320), np.uint8))
    np.save(pseudo / label_relpath(keys[1]), np.zeros((40, 64), np.uint8))
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out, "--pseudo-dir", pseudo), capsys)

    assert "2 bad files" in line
    assert f"{data / image_relpath(keys[0])}: expected 640x400 (WxH), got 320x200" in line
    assert f"{pseudo / label_relpath(keys[1])}: expected shape (400, 640), got (40, 64)" in line
    assert not out.exists()
