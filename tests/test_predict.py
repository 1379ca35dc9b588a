"""predict_ensemble.py end to end: an ensemble of two architectures, TTA, submission, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import (
    FPN_OVERRIDES,
    TINY,
    assert_one_line_error,
    error_line,
    run_script,
    tiny_checkpoint,
    write_tiny_dataset,
)

import predict_ensemble
from config.ensemble import read_ensemble_spec
from config.schema import load_config
from dataset.openeds import image_relpath, read_image
from inference.engine import EnsemblePredictor, drop_small_classes
from inference.members import load_members
from inference.predict import is_complete_mask
from models.checkpoint import model_from_checkpoint
from utils.atomic import save_npy_atomic
from utils.errors import InputError
from utils.submission import read_submission

FRAMES = ["S_1/label_3.npy", "S_0/label_2.npy", "S_3/label_0.npy"]  # S_3/0 is mirror-symmetric


def predict(setup: dict, save_dir: Path, *extra: object, check: bool = True):
    return run_script(
        "predict_ensemble.py",
        "--data-dir", setup["data"], "--label-file", setup["labels"], "--save-dir", save_dir,
        "--workers", 0, "--batch-size", 8, *extra, check=check,
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("predict")
    data = write_tiny_dataset(root / "data", sequences=4, frames=6)
    image = read_image(data / "S_3/0.png")
    symmetric = np.maximum(image, image[:, ::-1])
    cv2.imwrite(str(data / "S_3/0.png"), symmetric)
    labels = root / "test.txt"
    labels.write_text("\n".join(FRAMES) + "\n")
    unet = tiny_checkpoint(root / "unet.pt", [], 1, [])
    fpn = tiny_checkpoint(root / "fpn.pt", FPN_OVERRIDES, 2, [])
    ensemble = root / "ensemble.yaml"
    ensemble.write_text(
        f"tta: hflip\nmembers:\n  - checkpoint: {root}/u*.pt\n  - checkpoint: {fpn}\n    weight: 2.0\n"
    )
    out = root / "preds"
    predict({"data": data, "labels": labels}, out, "--ensemble", ensemble, "--submission", out / "sub.json")
    return {"data": data, "labels": labels, "unet": unet, "fpn": fpn, "ensemble": ensemble, "out": out}


def direct_prediction(setup: dict, tta: str, names: list[str] = FRAMES) -> np.ndarray:
    """Frames through EnsemblePredictor in this process, models loaded independently."""
    members = [(model_from_checkpoint(setup["unet"])[0], 1.0), (model_from_checkpoint(setup["fpn"])[0], 2.0)]
    frames = [read_image(setup["data"] / image_relpath(name)) for name in names]
    batch = torch.from_numpy(np.stack(frames))[:, None]
    labels, _ = EnsemblePredictor(members, tta=tta).predict(batch)
    return labels.numpy()


@pytest.mark.slow
def test_ensemble_of_two_architectures_writes_engine_predictions(setup: dict) -> None:
    out = setup["out"]
    assert (out / "output.txt").read_text().splitlines() == ["S_1/3.npy", "S_0/2.npy", "S_3/0.npy"]
    saved = [np.load(out / relpath) for relpath in (out / "output.txt").read_text().splitlines()]
    for array in saved:
        assert array.dtype == np.uint8 and array.shape == (400, 640)
        assert set(np.unique(array)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(np.stack(saved), direct_prediction(setup, "hflip"))
    # hflip TTA on a mirror-symmetric frame gives a mirror-symmetric mask (without it, it does not).
    np.testing.assert_array_equal(saved[2], saved[2][:, ::-1])
    no_tta = direct_prediction(setup, "none", FRAMES[2:])[0]
    assert (no_tta != no_tta[:, ::-1]).any()
    # The submission decodes back to the saved arrays.
    decoded = read_submission(out / "sub.json")
    assert sorted(decoded) == sorted((out / "output.txt").read_text().splitlines())
    for relpath, array in decoded.items():
        np.testing.assert_array_equal(array, np.load(out / relpath))
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_rerun_after_a_kill_restores_only_what_is_missing(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    shutil.copytree(setup["out"], out)  # copy2: mtimes kept
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    original = np.load(out / "S_0/2.npy")
    (out / "S_0/2.npy").unlink()
    (out / "output.txt").write_text("S_1/3.npy\n")
    proc = predict(setup, out, "--ensemble", setup["ensemble"])
    assert "1 frames to predict, 2 already done" in proc.stdout
    np.testing.assert_array_equal(np.load(out / "S_0/2.npy"), original)
    for path in (out / "S_1/3.npy", out / "S_3/0.npy"):
        assert path.stat().st_mtime_ns == before[path], path
    assert (out / "output.txt").read_text() == (setup["out"] / "output.txt").read_text()


@pytest.mark.slow
def test_another_ensemble_into_the_same_folder_is_refused(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds"
    shutil.copytree(setup["out"], out)
    listing = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    base = ["--data-dir", setup["data"], "--label-file", setup["labels"], "--save-dir", out]
    line = error_line(
        predict_ensemble.main, [*base, "--checkpoints", setup["unet"], setup["fpn"]], capsys
    )  # weights 1/1, not 1/2
    assert str(out) in line and "another ensemble (differs in: members)" in line and "--overwrite" in line
    line = error_line(
        predict_ensemble.main, [*base, "--ensemble", setup["ensemble"], "--tta", "none"], capsys
    )
    assert "differs in: tta" in line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == listing
    line = error_line(
        predict_ensemble.main,
        [*base, "--ensemble", setup["ensemble"], "--tta", "none", "--overwrite", "--shard", "0/2"],
        capsys,
    )
    assert "--overwrite with --shard" in line
    # --overwrite replaces them all; the folder then belongs to the new ensemble.
    predict_ensemble.main(
        [str(a) for a in [*base, "--ensemble", setup["ensemble"], "--tta", "none", "--overwrite"]]
    )
    assert "3 frames to predict, 0 already done" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns > listing[p] for p in out.rglob("*.npy"))
    assert json.loads((out / ".predict_state.json").read_text())["identity"]["tta"] == "none"
    assert (
        not (out / "sub.json").exists() or (out / "sub.json").stat().st_mtime_ns == listing[out / "sub.json"]
    )


@pytest.mark.slow
def test_shards_split_the_frames_and_the_last_one_writes_output_txt(
    setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds"
    base = ["--data-dir", setup["data"], "--label-file", setup["labels"], "--save-dir", out, "--workers", 0]
    base += ["--checkpoints", setup["unet"], "--tta", "none", "--submission", out / "sub.json"]
    predict_ensemble.main([str(a) for a in [*base, "--shard", "1/2"]])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == ["S_0/2.npy"]
    assert not (out / "output.txt").exists() and not (out / "sub.json").exists()
    predict_ensemble.main([str(a) for a in [*base, "--shard", "0/2"]])
    assert "2 frames to predict (shard 0/2), 0 already done" in capsys.readouterr().out
    assert (out / "output.txt").read_text() == (setup["out"] / "output.txt").read_text()
    assert sorted(read_submission(out / "sub.json")) == sorted((out / "output.txt").read_text().split())


@pytest.mark.slow
def test_missing_checkpoint_is_one_line_and_writes_nothing(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    proc = predict(setup, out, "--checkpoints", setup["unet"], tmp_path / "nope.pt", check=False)
    assert_one_line_error(proc, "nope.pt", "checkpoint not found")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["wrong architecture", "missing label file", "missing image"])
def test_bad_input_is_one_line_and_writes_nothing(
    setup: dict, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same contract, checked in-process (the subprocess path is covered above)."""
    out = tmp_path / "preds"
    labels, models = setup["labels"], ["--checkpoints", setup["unet"]]
    if case == "wrong architecture":
        config = tmp_path / "fpn.yaml"
        config.write_text(yaml.safe_dump(load_config(TINY, FPN_OVERRIDES).model_dump(mode="json")))
        ensemble = tmp_path / "ensemble.yaml"
        ensemble.write_text(f"members:\n  - {{checkpoint: {setup['unet']}, config: {config}}}\n")
        models, needle = ["--ensemble", ensemble], "unet.pt: weights do not match fpn"
    elif case == "missing label file":
        labels, needle = tmp_path / "none.txt", "none.txt: sample list not found"
    else:
        labels, needle = tmp_path / "labels.txt", "S_0/40.png: image not found"
        labels.write_text("S_0/label_1.npy\nS_0/label_40.npy\n")
    argv = ["--data-dir", setup["data"], "--label-file", labels, "--save-dir", out, *models]
    assert needle in error_line(predict_ensemble.main, argv, capsys)
    assert not out.exists()


def test_a_mask_file_is_complete_only_at_its_full_size(tmp_path: Path) -> None:
    path = tmp_path / "0.npy"
    save_npy_atomic(path, np.zeros((400, 640), np.uint8))
    assert is_complete_mask(path) and not list(tmp_path.glob("*.tmp"))
    path.write_bytes(path.read_bytes()[:-1])
    assert not is_complete_mask(path)
    assert not is_complete_mask(tmp_path / "missing.npy")


def test_ensemble_file_errors_name_the_key_and_the_glob(tmp_path: Path) -> None:
    path = tmp_path / "ensemble.yaml"
    path.write_text("members:\n  - checkpoint: a.pt\n    weigth: 2\n")
    with pytest.raises(InputError, match=r"ensemble.yaml: unknown key 'members.0.weigth'"):
        read_ensemble_spec(path)
    path.write_text("tta: vflip\nmembers: [{checkpoint: a.pt}]\n")
    with pytest.raises(InputError, match="'tta'"):
        read_ensemble_spec(path)
    path.write_text(f"members: [{{checkpoint: '{tmp_path}/runs/*/best.pt'}}]\n")
    with pytest.raises(InputError, match=r"'.*/runs/\*/best.pt' matches no file"):
        load_members(read_ensemble_spec(path), path)


def test_drop_small_classes_hands_tiny_classes_to_their_runner_up() -> None:
    # 2 frames of 4 x 5 pixels, 4 classes, background 0.6 everywhere.
    probs = torch.zeros(2, 4, 4, 5)
    probs[:, 0] = 0.6
    # Frame 0, a closed eye with a speck: 2 pixels of pupil whose runner-up is iris.
    probs[0, 3, 0, :2] = 0.9
    probs[0, 2, 0, :2] = 0.7
    # Frame 1: 3 pixels of iris (row 1) above 3 pixels of pupil (row 2).
    probs[1, 2, 1:3, 1:4] = 0.8
    probs[1, 3, 2, 1:4] = 0.9
    before = probs.argmax(dim=1)
    assert (before[0] == 3).sum() == 2 and (before[1] == 2).sum() == 3 and (before[1] == 3).sum() == 3
    after = drop_small_classes(probs, [0, 4, 4, 3]).argmax(dim=1)
    # Frame 0: pupil (2 < 3) dropped, its pixels become iris, iris (2 < 4) dropped: background.
    assert (after[0] == 0).all()
    # Frame 1: iris (3 < 4) dropped to background; pupil (3 >= 3) kept.
    assert (after[1] == 2).sum() == 0 and (after[1] == 3).sum() == 3 and (after[1] == 0).sum() == 17
    # Off (all zeros) is the identity; the count must match the classes.
    torch.testing.assert_close(drop_small_classes(probs, [0, 0, 0, 0]), probs)
    with pytest.raises(ValueError, match="4 classes"):
        drop_small_classes(probs, [0, 1])


@pytest.mark.slow
def test_min_area_auto_comes_from_the_training_labels_and_enters_the_fingerprint(
    setup: dict, tmp_path: Path
) -> None:
    trained_on = ["S_0/1", "S_1/4"]
    checkpoint = tiny_checkpoint(tmp_path / "m.pt", [], 1, trained_on)
    areas = []
    for key in trained_on:
        label = np.load(setup["data"] / f"{key.split('/')[0]}/label_{key.split('/')[1]}.npy")
        areas.append(np.bincount(label.ravel(), minlength=4))
    present = [[a[c] for a in areas if a[c] > 0] for c in range(4)]
    expected = [0] + [int(min(p)) // 2 if p else 0 for p in present[1:]]
    out = tmp_path / "preds"
    proc = predict(setup, out, "--checkpoints", checkpoint, "--min-area", "auto")
    assert f"min area per class (pixels): {expected}" in proc.stdout
    assert json.loads((out / ".predict_state.json").read_text())["identity"]["min_area"] == expected
    # The same folder with the rule off is another run: refused without --overwrite.
    refused = predict(setup, out, "--checkpoints", checkpoint, check=False)
    assert refused.returncode == 2 and "min_area" in refused.stderr
    # A checkpoint that does not record its labels cannot use auto; a bad value is one line.
    for value, needle in (("auto", "record their training labels"), ("-5", "--min-area must be")):
        other = setup["unet"] if value == "auto" else checkpoint  # setup's models list no labels
        bad = predict(setup, tmp_path / "p2", "--checkpoints", other, "--min-area", value, check=False)
        assert_one_line_error(bad, needle)
        assert not (tmp_path / "p2").exists()
