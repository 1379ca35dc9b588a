"""Bad input, through the real commands: one line naming what is wrong, exit 2, and nothing
half-written (train.py, predict_ensemble.py, validate.py, create_kfolds); a checkpoint never runs
pickled code; and a run killed (SIGKILL) at any moment leaves only whole files and resumes to the
weights, or the predictions, of the uninterrupted run.

The checkpoint and kill tests live here, not in files of their own, for the reference run they
share with the bad-input cases: an uninterrupted train.py subprocess that takes about 9 s, built
once for the whole file.

Most cases call each script's main([...]) in this process (the same cli_entry path as the command
line, without paying torch's import per case); the DataLoader-worker case, the pickled-object
checkpoint and every kill run the scripts as real subprocesses.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import conftest
import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, SUBPROCESS_ENV, THREADS, TINY, assert_one_line_error, error_line, train_argv

import predict_ensemble
import train
import validate
from config.schema import load_config
from dataset import create_kfolds
from dataset.openeds import image_relpath, label_relpath, pred_relpath, read_label, read_sample_list
from inference.predict import MASK_FILE_BYTES
from models.checkpoint import load_checkpoint

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
EPOCHS = 4
FPN = ["network=fpn", "network_params={decoder_pyramid_channels: 32, decoder_segmentation_channels: 32}"]


# --- shared data, a reference run, helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def data(folds_data: Path) -> Path:
    """The dataset itself, not a private copy: the tests here damage only copies of it (spoil)."""
    return folds_data


def run_script(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    """conftest.run_script with this module's thread count and a longer timeout."""
    return conftest.run_script(*args, check=check, threads=THREADS, timeout=600)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of an uninterrupted EPOCHS-epoch run (a real subprocess, like the kills)."""
    out = tmp_path_factory.mktemp("reference")
    run_script("train.py", *train_argv(data, out, epochs=EPOCHS))
    return out / "tiny" / "fold_0"


def spoil(data: Path, tmp_path: Path, damage: str) -> tuple[Path, Path, str]:
    """A copy of the dataset with one file of fold 0's first training frame damaged.

    Returns (data dir, the damaged file, what the error line must say about it).
    """
    copy = shutil.copytree(data, tmp_path / "data")
    key = read_sample_list(copy / "fold_0_train.txt")[0]
    image, label = copy / image_relpath(key), copy / label_relpath(key)
    if damage == "image missing for a label":
        image.unlink()
        return copy, image, "not found"
    if damage == "corrupt PNG":
        image.write_bytes(image.read_bytes()[:100])
        return copy, image, "not a readable image (corrupt or truncated PNG?)"
    if damage == "image of the wrong size":
        cv2.imwrite(str(image), np.zeros((200, 320), np.uint8))
        return copy, image, "expected 640x400 (WxH), got 320x200"
    if damage == "truncated .npy label":
        label.write_bytes(label.read_bytes()[:1000])
        return copy, label, "not a readable .npy array"
    if damage == "label values outside 0..3":
        np.save(label, np.full((400, 640), 7, np.uint8))
        return copy, label, "values must be 0..3, found [7]"
    raise ValueError(damage)


def not_a_folder(tmp_path: Path) -> Path:
    """An output path under a regular file: mkdir fails even as root (chmod would not stop root)."""
    (tmp_path / "a_file").write_text("not a folder\n")
    return tmp_path / "a_file" / "sub"


def config_file(tmp_path: Path, problem: str) -> tuple[Path, str]:
    """tiny.yaml with an unknown key or a value of the wrong type; (path, what the error says)."""
    path = tmp_path / "bad.yaml"
    if problem == "unknown config key":
        path.write_text(TINY.read_text() + "\nlearning_rat: 0.1\n")
        return path, "unknown key 'learning_rat'"
    path.write_text(TINY.read_text().replace("batch_size: 4", "batch_size: four", 1))
    return path, "bad value for 'optimizer.batch_size'"


# --- 1. bad input: one line, exit 2, nothing half-written -----------------------------------------


DAMAGED_DURING_TRAINING = [
    "corrupt PNG",
    "truncated .npy label",
    "image of the wrong size",
    "label values outside 0..3",
]


TRAIN_CASES = [
    "data dir missing",
    "image missing for a label",
    *DAMAGED_DURING_TRAINING,
    "empty fold file",
    "unknown config key",
    "wrong type for a config value",
    "checkpoint of another architecture",
    "missing checkpoint",
    "output folder not writable",
]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_bad_input(
    case: str, data: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, extra, config = tmp_path / "runs", [], TINY
    if case == "data dir missing":
        data, needles = tmp_path / "nowhere", [str(tmp_path / "nowhere"), "data directory not found"]
    elif case in ("image missing for a label", *DAMAGED_DURING_TRAINING):
        data, path, problem = spoil(data, tmp_path, case)
        needles = [str(path), problem]
    elif case == "empty fold file":
        data = shutil.copytree(data, tmp_path / "data")
        (data / "fold_0_train.txt").write_text("")
        needles = [str(data / "fold_0_train.txt"), "no samples"]
    elif case in ("unknown config key", "wrong type for a config value"):
        config, problem = config_file(tmp_path, case)
        needles = [str(config), problem]
    elif case == "checkpoint of another architecture":
        extra = ["--resume", reference / "last.pt", *(f"--set={item}" for item in FPN)]
        needles = [
            str(reference / "last.pt"),
            "cannot resume: the checkpoint was trained with another config",
            "network: 'unet' -> 'fpn'",
        ]
    elif case == "missing checkpoint":
        extra, needles = (
            ["--resume", tmp_path / "nope.pt"],
            [str(tmp_path / "nope.pt"), "checkpoint not found"],
        )
    else:
        out = not_a_folder(tmp_path)
        needles = [str(out), "cannot create the run folder (Not a directory)"]
    argv = train_argv(data, out, "--epochs", 1, *extra)
    argv[argv.index("--config") + 1] = str(config)

    line = error_line(train.main, argv, capsys)

    assert all(needle in line for needle in needles), (needles, line)
    if case != "output folder not writable":
        # Damaged frames too: every labelled frame of the fold is checked before the run folder exists.
        assert not out.exists()


def test_train_error_in_a_dataloader_worker_is_one_line(data: Path, tmp_path: Path) -> None:
    """workers=1: a corrupt PNG is one line, found before any worker starts or any folder is made."""
    data, png, problem = spoil(data, tmp_path, "corrupt PNG")
    out = tmp_path / "runs"
    proc = run_script("train.py", *train_argv(data, out, "--epochs", 1, "--workers", 1), check=False)
    assert_one_line_error(proc, str(png), problem)
    assert "DataLoader worker" not in proc.stderr
    assert not out.exists()


PREDICT_CASES = [
    "data dir missing",
    "image missing for a label",
    "corrupt PNG",
    "image of the wrong size",
    "empty label file",
    "unknown config key",
    "wrong type for a config value",
    "checkpoint of another architecture",
    "missing checkpoint",
    "output folder not writable",
]


@pytest.mark.parametrize("case", PREDICT_CASES)
def test_predict_bad_input(
    case: str, data: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = read_sample_list(data / "fold_0_train.txt")
    frames = [*keys[1:3], keys[0]]  # the damaged frame (keys[0]) comes third, batch size 1
    labels, save = tmp_path / "frames.txt", tmp_path / "preds"
    labels.write_text("".join(f"{label_relpath(key)}\n" for key in frames))
    models: list[object] = ["--checkpoints", reference / "last.pt"]
    if case == "data dir missing":
        data, needles = tmp_path / "nowhere", [str(tmp_path / "nowhere"), "data directory not found"]
    elif case in ("image missing for a label", "corrupt PNG", "image of the wrong size"):
        data, path, problem = spoil(data, tmp_path, case)
        needles = [str(path), problem]
    elif case == "empty label file":
        labels.write_text("\n")
        needles = [str(labels), "no samples"]
    elif case in (
        "unknown config key",
        "wrong type for a config value",
        "checkpoint of another architecture",
    ):
        if case == "checkpoint of another architecture":  # tiny.yaml's weights, an FPN member config
            config = tmp_path / "fpn.yaml"
            config.write_text(yaml.safe_dump(load_config(TINY, FPN).model_dump(mode="json")))
            needles = [str(reference / "last.pt"), "weights do not match fpn/"]
        else:
            config, problem = config_file(tmp_path, case)
            needles = [str(config), problem]
        ensemble = tmp_path / "ensemble.yaml"
        ensemble.write_text(f"members:\n  - {{checkpoint: {reference / 'last.pt'}, config: {config}}}\n")
        models = ["--ensemble", ensemble]
    elif case == "missing checkpoint":
        models = ["--checkpoints", reference / "last.pt", tmp_path / "nope.pt"]
        needles = [str(tmp_path / "nope.pt"), "checkpoint not found"]
    else:
        save = not_a_folder(tmp_path)
        needles = [str(save), "cannot create the output folder (Not a directory)"]
    argv = ["--data-dir", data, "--label-file", labels, "--save-dir", save, *models]

    line = error_line(predict_ensemble.main, [*argv, "--batch-size", 1, "--workers", 0], capsys)

    assert all(needle in line for needle in needles), (needles, line)
    if case in ("corrupt PNG", "image of the wrong size"):
        # Found when its batch loads: the frames before it are kept, whole, for a rerun to skip.
        written = sorted(path.relative_to(save).as_posix() for path in save.rglob("*.npy"))
        assert written == sorted(pred_relpath(key) for key in frames[:2])
        assert all(path.stat().st_size == MASK_FILE_BYTES for path in save.rglob("*.npy"))
        assert not (save / "output.txt").exists() and not list(save.rglob("*.tmp"))
    elif case != "output folder not writable":
        assert not save.exists()


@pytest.fixture(scope="module")
def perfect_predictions(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every label saved as its own prediction (a valid prediction folder for validate.py)."""
    preds = tmp_path_factory.mktemp("perfect")
    for key in read_sample_list(data / "labels.txt"):
        (preds / pred_relpath(key)).parent.mkdir(exist_ok=True)
        np.save(preds / pred_relpath(key), read_label(data / label_relpath(key)))
    return preds


VALIDATE_CASES = [
    "data dir missing",
    "truncated .npy label",
    "label values outside 0..3",
    "empty fold file",
    "prediction folder missing",
    "a prediction missing",
    "output folder not writable",
]


@pytest.mark.parametrize("case", VALIDATE_CASES)
def test_validate_bad_input(
    case: str, data: Path, perfect_predictions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds, metrics, overlays = perfect_predictions, tmp_path / "m.json", tmp_path / "overlays"
    if case == "data dir missing":
        data, needles = tmp_path / "nowhere", [str(tmp_path / "nowhere"), "data directory not found"]
    elif case in ("truncated .npy label", "label values outside 0..3"):
        data, path, problem = spoil(data, tmp_path, case)  # fold 0's training frames are fold 1's val
        needles = [str(path), problem]
    elif case == "empty fold file":
        data = shutil.copytree(data, tmp_path / "data")
        (data / "fold_1_val.txt").write_text("")
        needles = [str(data / "fold_1_val.txt"), "no samples"]
    elif case == "prediction folder missing":
        preds, needles = tmp_path / "nowhere", [str(tmp_path / "nowhere"), "prediction directory not found"]
    elif case == "a prediction missing":
        preds = shutil.copytree(perfect_predictions, tmp_path / "preds")
        gone = pred_relpath(read_sample_list(data / "fold_1_val.txt")[1])
        (preds / gone).unlink()
        needles = [str(preds), f"predictions missing or malformed: {gone} (missing)"]
    else:  # the overlays could be written, the JSON could not: neither is
        metrics = not_a_folder(tmp_path) / "m.json"
        needles = [str(metrics.parent), "is not a folder"]
    argv = ["--data-dir", data, "--pred-dir", preds, "--fold", 1, "--json", metrics, "--overlays", overlays]

    line = error_line(validate.main, argv, capsys)

    assert all(needle in line for needle in needles), (needles, line)
    assert not metrics.exists() and not overlays.exists()


@pytest.mark.parametrize(
    "case", ["data dir missing", "image missing for a label", "output folder not writable"]
)
def test_create_kfolds_bad_input(
    case: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "folds"
    if case == "data dir missing":
        data, needles = tmp_path / "nowhere", [str(tmp_path / "nowhere"), "data directory not found"]
    elif case == "image missing for a label":
        data, path, problem = spoil(data, tmp_path, case)
        needles = [str(path), problem]
    else:
        out = not_a_folder(tmp_path)
        needles = [str(out), "Not a directory"]
    line = error_line(create_kfolds.main, ["--data-dir", data, "--folds", 2, "--out-dir", out], capsys)
    assert all(needle in line for needle in needles), (needles, line)
    assert not out.exists()


# --- 2. checkpoints load without running code --------------------------------------------------------


def test_every_checkpoint_train_writes_loads_with_weights_only(reference: Path) -> None:
    written = sorted(reference.glob("*.pt"))
    assert [path.name for path in written] == ["best.pt", "last.pt"]
    for path in written:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert {"model", "optimizer", "scheduler", "epoch", "best_miou", "config", "rng"} <= set(payload)


class _OpensAFile:
    """Unpickling this calls open(marker, "w"): proof that code ran, if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_a_checkpoint_with_a_pickled_object_is_refused(data: Path, reference: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(reference / "last.pt")
    marker = tmp_path / "code_ran"
    payload["note"] = _OpensAFile(marker)
    torch.save(payload, tmp_path / "gift.pt")
    labels = tmp_path / "frames.txt"
    labels.write_text("S_0/label_1.npy\n")
    save = tmp_path / "preds"

    proc = run_script(
        "predict_ensemble.py", "--data-dir", data, "--label-file", labels, "--save-dir", save,
        "--checkpoints", tmp_path / "gift.pt", "--workers", 0, check=False,
    )  # fmt: skip

    assert_one_line_error(proc, str(tmp_path / "gift.pt"), "io.open")
    assert not marker.exists() and not save.exists()


# --- 3. crash safety: SIGKILL at random moments, resume ----------------------------------------------


def start(script: str, argv: list[object], log: Path) -> subprocess.Popen:
    """Start `python script argv...`; its stdout goes to `log` (progress bars on stderr do not)."""
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, script, *map(str, argv)],
            cwd=ROOT, env=SUBPROCESS_ENV, stdout=handle, stderr=subprocess.DEVNULL,
        )  # fmt: skip


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 180) -> None:
    """SIGKILL `proc` as soon as `ready()` (polled every millisecond); it must still be running.

    The poll sleeps between checks: spinning would take a core from the process it waits for.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished (exit {proc.returncode}) before the kill"
        assert time.monotonic() < deadline, "kill condition never came"
        time.sleep(0.001)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL


def after_line(log: Path, text: str, delay: float) -> Callable[[], bool]:
    """Ready `delay` seconds after `text` first appears in the log."""
    seen: list[float] = []

    def ready() -> bool:
        if not seen and text in log.read_text(errors="replace"):
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay

    return ready


def writing(folder: Path, pattern: str) -> Callable[[], bool]:
    """Ready once a new temp file named like `pattern` has data in it: the write is under way."""
    before = set(os.listdir(folder)) if folder.is_dir() else set()
    regex = re.compile(pattern)

    def ready() -> bool:
        for name in os.listdir(folder) if folder.is_dir() else []:
            if regex.fullmatch(name) and name not in before:
                with contextlib.suppress(FileNotFoundError):  # renamed meanwhile: try the next one
                    if (folder / name).stat().st_size > 0:
                        return True
        return False

    return ready


def test_killed_training_resumes_to_the_uninterrupted_weights(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    rng = random.Random(8)
    out = tmp_path / "runs"
    run = out / "tiny" / "fold_0"
    argv = train_argv(data, out, "--resume", "auto", epochs=EPOCHS)
    # "epoch k/" lines are printed once epoch k's checkpoints are saved.
    triggers: list[Callable[[Path], Callable[[], bool]]] = [
        lambda log: after_line(log, "epoch 1/", rng.uniform(0.0, 0.3)),  # in epoch 2
        lambda log: writing(run, r"\.last\.pt\.\d+\.tmp"),  # while a new last.pt is written
        lambda log: after_line(log, "epoch 3/", rng.uniform(0.0, 0.15)),  # in the last epoch
    ]
    epochs_saved = [0]
    for number, trigger in enumerate(triggers):
        log = tmp_path / f"kill_{number}.log"
        log.touch()
        ready = trigger(log)
        kill_when(start("train.py", argv, log), ready)
        if (run / "last.pt").exists():  # after every kill, last.pt is whole (or absent)
            epochs_saved.append(int(load_checkpoint(run / "last.pt")["epoch"]))
        assert epochs_saved == sorted(epochs_saved), epochs_saved
        if number == 1:  # the kill hit the write: a partial temp file is left, last.pt is the previous one
            assert any(path.stat().st_size > 0 for path in run.glob(".last.pt.*.tmp"))
    assert epochs_saved[-1] < EPOCHS

    proc = run_script("train.py", *argv)

    assert f"resumed {run / 'last.pt'}" in proc.stdout
    final, expected = load_checkpoint(run / "last.pt"), load_checkpoint(reference / "last.pt")
    assert final["epoch"] == EPOCHS
    assert final["model"].keys() == expected["model"].keys()
    assert all(torch.equal(final["model"][k], expected["model"][k]) for k in expected["model"])
    assert (run / "history.csv").read_text().count("\n") == EPOCHS + 1  # header + one row per epoch


def test_killed_prediction_rerun_keeps_whole_files_and_finishes(
    data: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "frames.txt"
    keys = [f"S_{s}/{n}" for s in range(2) for n in range(12)]  # 24 frames, one batch each
    labels.write_text("".join(f"{label_relpath(key)}\n" for key in keys))
    args = ["--data-dir", data, "--label-file", labels, "--checkpoints", reference / "last.pt"]
    args += ["--batch-size", 1, "--workers", 0]
    expected = tmp_path / "expected"
    predict_ensemble.main([str(arg) for arg in [*args, "--save-dir", expected]])
    save = tmp_path / "preds"

    done = lambda: len(list(save.glob("S_*/[0-9]*.npy")))  # noqa: E731
    kill_when(
        start("predict_ensemble.py", [*args, "--save-dir", save], tmp_path / "kill.log"), lambda: done() >= 3
    )

    whole = sorted(save.glob("S_*/[0-9]*.npy"))
    assert 3 <= len(whole) < len(keys) and not (save / "output.txt").exists()
    assert all(path.stat().st_size == MASK_FILE_BYTES for path in whole)
    # A partial file (as a non-atomic copy or a full disk would leave one) is predicted again.
    partial = whole[-1]
    partial.write_bytes(partial.read_bytes()[:5000])
    kept = {path: path.stat().st_mtime_ns for path in whole[:-1]}
    capsys.readouterr()

    predict_ensemble.main([str(arg) for arg in [*args, "--save-dir", save]])

    assert f"{len(keys) - len(kept)} frames to predict, {len(kept)} already done" in capsys.readouterr().out
    assert {path: path.stat().st_mtime_ns for path in kept} == kept
    for key in keys:
        np.testing.assert_array_equal(
            np.load(save / pred_relpath(key)), np.load(expected / pred_relpath(key))
        )
    assert (save / "output.txt").read_text() == (expected / "output.txt").read_text()
