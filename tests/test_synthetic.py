"""The synthetic OpenEDS generator: layout, determinism, label/geometry consistency, CLI errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset.synthetic import MARKER_NAME, EyeSequence, generate, plan_sequence
from dataset.synthetic.cli import main
from utils.errors import InputError

SMALL = {"sequences": 2, "frames": 12, "label_every": 3, "test_per_sequence": 2}


def _listing(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def _files(root: Path) -> dict[str, bytes]:
    """Every file's bytes by relative path, except the marker (it records the run time)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER_NAME
    }


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate(out, seed=0, workers=1, **SMALL)


def test_layout_matches_openeds(small_data: tuple[Path, dict]) -> None:
    root, summary = small_data
    images = _listing(root / "images.txt")
    assert images == [f"S_{k}/{n}.png" for k in range(2) for n in range(12)]
    assert sorted(images) == sorted(str(p.relative_to(root)) for p in root.glob("S_*/*.png"))
    for name in images:
        image = cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.shape == (400, 640)
    labels = _listing(root / "labels.txt")
    assert sorted(labels) == sorted(str(p.relative_to(root)) for p in root.glob("S_*/label_*.npy"))
    for name in labels:
        label = np.load(root / name)
        assert label.dtype == np.uint8 and label.shape == (400, 640) and label.max() <= 3
    assert summary["frames"] == 24 and summary["labels"] == len(labels) and summary["test_frames"] == 4


def test_test_frames_are_hidden_between_labels(small_data: tuple[Path, dict]) -> None:
    root, _ = small_data
    tests = _listing(root / "test.txt")
    with open(root / "test_sampleName_GT.pkl", "rb") as handle:
        truth = pickle.load(handle)
    assert sorted(truth) == sorted(name.replace("label_", "") for name in tests)
    labeled = {}
    for name in _listing(root / "labels.txt"):
        sequence, file = name.split("/")
        labeled.setdefault(sequence, []).append(int(file[len("label_") : -len(".npy")]))
    for name in tests:
        assert not (root / name).exists()
        sequence, file = name.split("/")
        n = int(file[len("label_") : -len(".npy")])
        assert min(labeled[sequence]) < n < max(labeled[sequence]) and n not in labeled[sequence]
        mask = truth[f"{sequence}/{n}.npy"]
        assert mask.dtype == np.uint8 and mask.shape == (400, 640) and mask.max() <= 3


def test_default_plan_is_sparse_and_jittered() -> None:
    plans = [plan_sequence(0, k, 60, 10, 5) for k in range(24)]
    fraction = sum(len(p.labeled) for p in plans) / (24 * 60)
    assert 0.05 <= fraction <= 0.15
    gaps = np.concatenate([np.diff(p.labeled) for p in plans])
    assert gaps.min() >= 1 and gaps.max() <= 19 and len(set(gaps.tolist())) > 5
    assert all(len(p.test) == 5 and not set(p.test) & set(p.labeled) for p in plans)


def test_deterministic_across_runs_and_workers(small_data: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = small_data
    generate(tmp_path / "again", seed=0, workers=2, **SMALL)
    assert _files(tmp_path / "again") == _files(root)
    generate(tmp_path / "other", seed=1, workers=1, **SMALL)
    other = _files(tmp_path / "other")
    assert other["S_0/0.png"] != _files(root)["S_0/0.png"]


def test_rerun_replaces_an_earlier_dataset(tmp_path: Path) -> None:
    generate(tmp_path, seed=0, **SMALL)
    generate(tmp_path, sequences=1, frames=8, label_every=3, test_per_sequence=1, seed=0)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("S_*/*.png")) == _listing(
        tmp_path / "images.txt"
    )


@pytest.mark.parametrize("index", [0, 1, 2])
def test_labels_are_consistent_with_the_image(index: int) -> None:
    sequence = EyeSequence(7, index, 20)
    frames = [n for n, state in enumerate(sequence.states) if state.openness > 0.5][:3]
    for n in frames:
        image, label = sequence.render(n)
        # Pupil lies inside the iris: it never touches sclera (only iris, or a lid = background).
        pupil = label == 3
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            assert not (pupil & (np.roll(label, shift, axis) == 1)).any()
        # The labelled eye is the opening between two lids: one vertical run per column.
        starts = np.diff((label > 0).astype(np.int8), axis=0) == 1
        assert starts.sum(axis=0).max() <= 1
        # Intensities: pupil darkest, sclera brightest (means, so glints and noise do not matter).
        means = [image[label == c].mean() for c in (1, 2, 3)]
        assert means[2] < means[1] < means[0]


def test_glints_and_lashes_are_not_in_the_label() -> None:
    sequence = EyeSequence(0, 0, 10)
    n = max(range(10), key=lambda i: sequence.states[i].openness)
    image, label = sequence.render(n)
    plain, plain_label = sequence.render(n, glints=False, lashes=False)
    assert np.array_equal(label, plain_label)
    glint = (image.astype(int) - plain > 60) & (label >= 2)
    lash = (plain.astype(int) - image > 40) & (label == 1)
    assert glint.sum() > 20 and lash.sum() > 20


def test_long_sequences_have_full_blinks() -> None:
    closed = []
    for index in range(2):
        sequence = EyeSequence(0, index, 150)
        closed += [(sequence, n) for n, state in enumerate(sequence.states) if state.openness == 0]
    assert closed
    for sequence, n in closed[:2]:
        _, label = sequence.render(n)
        assert not np.isin(label, (2, 3)).any()


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "d"), "--frames", "6", "--test-per-sequence", "5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError):
        generate(blocker / "out", sequences=1, frames=8, label_every=3, test_per_sequence=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        generate(foreign, sequences=1, frames=8, label_every=3, test_per_sequence=1)
    assert (foreign / "notes.txt").exists()
