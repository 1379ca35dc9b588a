"""predict_ensemble.py's prediction folder after something went wrong: temp files of a dead process
are removed, predictions of another precision are not mixed in, a failed rerun leaves no stale
output list or submission, and a bad frame does not lose the good frames of its batch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import dead_pid, error_line, predict_argv

import predict_ensemble
from dataset.openeds import image_relpath

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_predict_removes_stale_temp_files_of_dead_processes(
    folds_data: Path, checkpoint: Path, tmp_path: Path
) -> None:
    preds = tmp_path / "preds"
    argv = predict_argv(folds_data, checkpoint, ["S_0/1", "S_0/4"], tmp_path, "--save-dir", preds)
    predict_ensemble.main(argv)
    pid, long_ago = dead_pid(), time.time() - 3600
    stale = preds / "S_0" / f".4.npy.{pid}.tmp"
    stale.write_bytes(b"half a mask")
    os.utime(stale, (long_ago, long_ago))

    predict_ensemble.main(argv)

    assert not stale.exists()


def test_predictions_of_another_precision_are_not_mixed_in(
    folds_data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = tmp_path / "preds"
    argv = predict_argv(
        folds_data, checkpoint, ["S_0/1", "S_0/4"], tmp_path, "--save-dir", preds, "--gpu", "cpu"
    )
    predict_ensemble.main([*argv, "--precision", "fp32"])

    line = error_line(predict_ensemble.main, [*argv, "--precision", "bf16"], capsys)

    assert line.startswith(
        f"error: {preds}: holds predictions of another ensemble (differs in: precision)"
    ), line


def test_a_failed_rerun_leaves_no_stale_output_list_or_submission(
    data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds, submission = tmp_path / "preds", tmp_path / "submission.json"
    keys = ["S_0/1", "S_0/4", "S_1/1"]
    argv = predict_argv(data, checkpoint, keys, tmp_path, "--save-dir", preds, "--submission", submission)
    predict_ensemble.main(argv)
    assert (preds / "output.txt").is_file() and submission.is_file()
    (preds / "S_1" / "1.npy").unlink()
    png = data / image_relpath("S_1/1")
    png.write_bytes(png.read_bytes()[:100])

    line = error_line(predict_ensemble.main, argv, capsys)

    assert line == f"error: {png}: not a readable image (corrupt or truncated PNG?)"
    assert not (preds / "output.txt").exists() and not submission.exists()


def test_a_bad_frame_in_a_batch_does_not_lose_the_good_frames(
    data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ["S_0/1", "S_0/4", "S_0/7", "S_1/1", "S_1/4", "S_1/7"]
    bad = [data / image_relpath(keys[1]), data / image_relpath(keys[4])]
    for png in bad:
        png.write_bytes(png.read_bytes()[:100])
    preds = tmp_path / "preds"
    argv = predict_argv(data, checkpoint, keys, tmp_path, "--save-dir", preds, "--batch-size", 3)

    line = error_line(predict_ensemble.main, argv, capsys)

    assert line.startswith(
        f"error: {data}: 2 frames could not be predicted (the others were saved): {bad[0]}: "
    )
    saved = sorted(path.relative_to(preds).as_posix() for path in preds.rglob("*.npy"))
    assert saved == ["S_0/1.npy", "S_0/7.npy", "S_1/1.npy", "S_1/7.npy"]
    assert not (preds / "output.txt").exists()
