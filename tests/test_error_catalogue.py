"""The catalogue of docs/errors-and-recovery.md, row by row: every case gives its documented one-line
message (the rows that need a real subprocess are checked by the tests CHECKED_BY_TEST names).
"""

from __future__ import annotations

import base64
import errno
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    RunsCode,
    a_submission,
    assert_catalogued,
    catalogue,
    error_line,
    predict_argv,
    pseudo_folder,
    run_ok,
    train_argv,
)

import export
import predict_ensemble
import segment
import train
import validate
from dataset.openeds import image_relpath, read_sample_list
from dataset.synthetic import cli as synthetic_cli
from dataset.synthetic import layout as synthetic
from dataset.synthetic.video import write_eye_video
from inference import export as onnx_export
from utils import submission

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


Case = Callable[[Path, Path, Path, pytest.CaptureFixture[str], pytest.MonkeyPatch], str]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(produce: Case) -> Case:
        CASES[name] = produce
        return produce

    return register


@case("damaged frames in the fold")
def _damaged_frames(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"\x89PNG not really")
    np.save(data / "S_0/label_4.npy", np.full((400, 640), 7, np.uint8))
    keys = "S_0/label_1.npy\nS_0/label_4.npy\n"
    (data / "fold_0_train.txt").write_text(keys + (data / "fold_0_train.txt").read_text().replace(keys, ""))
    (data / "fold_0_val.txt").write_text((data / "fold_0_val.txt").read_text().replace(keys, ""))
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("fold frame not in the index")
def _not_in_index(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    with open(data / "fold_0_train.txt", "a") as handle:
        handle.write("S_0/label_2.npy\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("train and val overlap")
def _overlap(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    with open(data / "fold_0_train.txt", "a") as handle:
        handle.write((data / "fold_0_val.txt").read_text().splitlines()[0] + "\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("run folder without last.pt")
def _no_last(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    run = shutil.copytree(checkpoint.parent, tmp_path / "runs" / "tiny" / "fold_0")
    (run / "last.pt").unlink()
    rows = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join([*rows, rows[1].replace("1,", "2,", 1)]) + "\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("checkpoint of another fold")
def _another_fold(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    run_ok([*train_argv(data, tmp_path / "runs"), "--fold", "1"])
    resume = tmp_path / "runs" / "tiny" / "fold_1" / "last.pt"
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--resume", resume), capsys)


@case("unknown loss type")
def _loss_type(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return error_line(
        train.main, train_argv(data, tmp_path / "runs", "--set", "mask_loss.type=Tversky"), capsys
    )


@case("loss parameter the loss does not take")
def _loss_param(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    sets = ["--set", "mask_loss.type=Dice", "--set", "mask_loss.params.ohpm=true"]
    return error_line(train.main, train_argv(data, tmp_path / "runs", *sets), capsys)


@case("--set value that is not YAML")
def _set_yaml(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--set", "seed=[1"), capsys)


@case("malformed pseudo manifest key")
def _pseudo_key(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    pseudo, _ = pseudo_folder(data, tmp_path / "pseudo")
    (pseudo / "pseudo.json").write_text(json.dumps({"keys": ["S_0/frame_1"], "trained_on": []}))
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--pseudo-dir", pseudo), capsys)


@case("teacher that leaks in every sequence")
def _teacher_leak(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    val = read_sample_list(data / "fold_0_val.txt")
    sequences = sorted({key.split("/")[0] for key in val})
    keys = [f"{sequence}/0" for sequence in sequences]  # unlabeled frames (labels sit at n % 3 == 1)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    manifest = {"keys": keys, "trained_on": val, "checkpoints": [], "tta": "none", "num_classes": 4}
    (teacher / "teacher.json").write_text(json.dumps(manifest))
    line = error_line(train.main, train_argv(data, tmp_path / "runs", "--teacher", teacher), capsys)
    assert not (tmp_path / "runs").exists()
    return line


def _disk_full(*args: object, **kwargs: object) -> None:
    handle = args[1] if len(args) > 1 and hasattr(args[1], "write") else args[0]
    handle.write(b"partial")  # type: ignore[union-attr]
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(handle, "name", None))


@case("full disk writing a checkpoint")
def _full_disk_checkpoint(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(torch, "save", lambda payload, handle: _disk_full(handle))
    line = error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)
    assert not list((tmp_path / "runs").rglob("*.tmp"))
    return line


@case("full disk writing a prediction")
def _full_disk_prediction(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(np, "save", lambda handle, array: _disk_full(handle))
    preds = tmp_path / "preds"
    line = error_line(
        predict_ensemble.main,
        predict_argv(data, checkpoint, ["S_0/1"], tmp_path, "--save-dir", preds),
        capsys,
    )
    assert not list(preds.rglob("*.tmp")) and not list(preds.rglob("*.npy"))
    return line


@case("ground-truth pickle with code")
def _pickle_code(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (tmp_path / "gt.pkl").write_bytes(pickle.dumps({"S_0/1.npy": RunsCode(tmp_path / "ran")}))
    argv = ["--data-dir", str(data), "--pred-dir", str(data), "--gt-pkl", str(tmp_path / "gt.pkl")]
    return error_line(validate.main, argv, capsys)


@case("ground-truth pickle not at the path given")
def _pickle_path(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "gt.pkl").write_bytes(pickle.dumps({}))
    monkeypatch.chdir(tmp_path)
    return error_line(
        validate.main, ["--data-dir", str(data), "--pred-dir", str(data), "--gt-pkl", "gt.pkl"], capsys
    )


@case("prediction folder of another precision")
def _precision(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    argv = predict_argv(
        data, checkpoint, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds", "--gpu", "cpu"
    )
    predict_ensemble.main([*argv, "--precision", "fp32"])
    return error_line(predict_ensemble.main, [*argv, "--precision", "bf16"], capsys)


@case("bad frames while predicting")
def _bad_frames_predict(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    for key in ("S_0/4", "S_1/4"):
        (data / image_relpath(key)).write_bytes(b"")
    argv = predict_argv(data, checkpoint, ["S_0/1", "S_0/4", "S_1/4"], tmp_path, "--save-dir", tmp_path / "p")
    return error_line(predict_ensemble.main, argv, capsys)


@case('submission key "."')
def _submission_dot(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    sub = a_submission(tmp_path, {".": base64.b64encode(bytes([1, 0])).decode()})
    return error_line(submission.main, ["decode", "--json", str(sub), "--out", str(tmp_path / "out")], capsys)


@case("submission entry too large")
def _submission_bomb(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    bomb = bytes([255, 0]) * (submission.MAX_DECODED_BYTES // 255 + 1)
    sub = a_submission(tmp_path, {"S_0/1.npy": base64.b64encode(bomb).decode()})
    return error_line(submission.main, ["decode", "--json", str(sub), "--out", str(tmp_path / "out")], capsys)


@case("synthetic image not written")
def _synthetic_write(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(synthetic.cv2, "imwrite", lambda *args, **kwargs: False)
    argv = ["--out", str(tmp_path / "synthetic"), "--sequences", "1", "--frames", "12", "--label-every", "4"]
    return error_line(synthetic_cli.main, [*argv, "--test-per-sequence", "1"], capsys)


def _segment_line(
    source: object, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    argv = ["--checkpoints", str(checkpoint), "--input", str(source), "--out", str(tmp_path / "segmented")]
    return error_line(segment.main, argv, capsys)


@case("segment.py: unreadable image")
def _segment_image(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"\x89PNG not really")
    return _segment_line(data / "S_0/1.png", checkpoint, tmp_path, capsys)


@case("segment.py: unreadable images in a folder")
def _segment_folder(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"")
    return _segment_line(data / "S_0", checkpoint, tmp_path, capsys)


@case("segment.py: video that cannot be opened")
def _segment_unopenable(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (tmp_path / "eye.mp4").write_bytes(b"not a video")
    return _segment_line(tmp_path / "eye.mp4", checkpoint, tmp_path, capsys)


@case("segment.py: video that breaks mid-stream")
def _segment_broken(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    video = tmp_path / "eye.avi"
    write_eye_video(video, frames=10, fps=10, size=(160, 100))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    return _segment_line(video, checkpoint, tmp_path, capsys)


@case("segment.py: camera that cannot be opened")
def _segment_camera(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)  # so that "9" is not a file
    return _segment_line(9, checkpoint, tmp_path, capsys)


def _segment_option_line(source: Path, checkpoint: Path, tmp_path: Path, capsys, *options: object) -> str:
    argv = ["--checkpoints", checkpoint, "--input", source, "--out", tmp_path / "segmented", *options]
    line = error_line(segment.main, argv, capsys)
    assert not (tmp_path / "segmented").exists()
    return line


@case("segment.py: bad measurement option")
def _segment_mm(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--mm-per-px", 0)


@case("segment.py: frame times asked of images")
def _segment_times(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--smooth")


@case("segment.py: --preview without a display")
def _segment_preview(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--preview")


@case("segment.py: output folder of an earlier run")
def _segment_again(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    argv = [
        "--checkpoints",
        str(checkpoint),
        "--input",
        str(data / "S_0/1.png"),
        "--out",
        str(tmp_path / "segmented"),
    ]
    segment.main(argv)
    return error_line(segment.main, argv, capsys)


def _exported(checkpoint: Path) -> Path:
    """The checkpoint exported once (hflip inside), beside it; each case works on a copy."""
    onnx = checkpoint.parent / "model.onnx"
    if not onnx.is_file():
        export.main(["--checkpoint", str(checkpoint), "--out", str(onnx), "--tta", "hflip"])
    return onnx


def _onnx_copy(checkpoint: Path, folder: Path) -> Path:
    source = _exported(checkpoint)
    folder.mkdir(exist_ok=True)
    shutil.copy(source, folder / "model.onnx")
    shutil.copy(source.with_suffix(".json"), folder / "model.json")
    return folder / "model.onnx"


@case("ONNX model without its model.json")
def _onnx_no_json(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    onnx.with_suffix(".json").unlink()
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds")
    return error_line(predict_ensemble.main, argv, capsys)


@case("ONNX model replaced after export")
def _onnx_replaced(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    onnx.write_bytes(onnx.read_bytes()[:-100])
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds")
    return error_line(predict_ensemble.main, argv, capsys)


@case("ONNX model run with other views")
def _onnx_views(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds", "--tta", "none")
    line = error_line(predict_ensemble.main, argv, capsys)
    assert not (tmp_path / "preds").exists()
    return line


@case("export below the agreement required")
def _export_refused(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setitem(onnx_export.THRESHOLDS, "int8", 1.0)  # any int8 graph rounds some pixel differently
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", checkpoint, "--out", out, "--int8"]
    line = error_line(export.main, argv, capsys)
    assert not out.exists() and not out.with_suffix(".json").exists()
    return line


# Rows whose case needs a real subprocess: the named test (test_shutdown.py,
# test_resume.py) checks the line against the table.
CHECKED_BY_TEST = {
    "SIGTERM during training": "test_sigterm_finishes_the_step_saves_last_pt_and_says_how_to_resume",
    "checkpoint of another number of processes": "test_resume_with_another_number_of_processes_is_refused",
    "checkpoint a rank cannot read": "test_rank_0_decides_and_a_rank_that_cannot_load_fails_every_rank",
}


def test_every_catalogue_row_is_tested() -> None:
    assert sorted(catalogue()) == sorted([*CASES, *CHECKED_BY_TEST])


@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue_case(
    name: str, data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert_catalogued(name, CASES[name](data, checkpoint, tmp_path, capsys, monkeypatch))
