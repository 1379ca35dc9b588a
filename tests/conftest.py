"""Shared fixtures and helpers: tiny datasets in the exact OpenEDS 2020 layout made by the tests
themselves, the tiny config, tiny checkpoints, and running the real scripts as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

TINY = ROOT / "configs" / "tiny.yaml"
# A second architecture at another input scale (GroupNorm needs channels divisible by 32).
FPN_OVERRIDES = [
    "network=fpn",
    "input.scale=0.125",
    "network_params={decoder_pyramid_channels: 32, decoder_segmentation_channels: 32}",
]


def write_tiny_dataset(
    root: Path, sequences: int = 4, frames: int = 12, label_every: int = 3, seed: int = 0
) -> Path:
    """Write an OpenEDS-layout folder with simple eye-like disks (fast; no realism).

    Every `label_every`-th frame gets a label file; images.txt and labels.txt list them.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    yy, xx = np.mgrid[0:400, 0:640]
    for s in range(sequences):
        seq = root / f"S_{s}"
        seq.mkdir(exist_ok=True)
        for n in range(frames):
            cx, cy = 320 + rng.integers(-60, 60), 200 + rng.integers(-30, 30)
            d2 = (xx - cx) ** 2 + ((yy - cy) * 1.6) ** 2
            mask = np.zeros((400, 640), np.uint8)
            mask[d2 < 200**2] = 1
            r2 = (xx - cx) ** 2 + (yy - cy) ** 2
            mask[r2 < 80**2] = 2
            mask[r2 < 30**2] = 3
            image = np.array([40, 170, 100, 20], np.uint8)[mask] + rng.integers(
                0, 20, mask.shape, dtype=np.uint8
            )
            cv2.imwrite(str(seq / f"{n}.png"), image)
            images.append(f"S_{s}/{n}.png")
            if n % label_every == 1:
                np.save(seq / f"label_{n}.npy", mask)
                labels.append(f"S_{s}/label_{n}.npy")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "labels.txt").write_text("\n".join(labels) + "\n")
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A tiny OpenEDS-layout dataset: 4 sequences x 12 frames, 4 labels each."""
    return write_tiny_dataset(tmp_path / "data")


# --- what a user sees when something goes wrong: bad input, resumes, shutdown, the error catalogue ---

# One thread, in-process (one_thread) and in the subprocesses: on a small shared machine two OpenMP
# threads per process spin against any other load (an epoch of the tiny model goes from 0.3 s to
# 10 s). The crash test compares weights across processes, so they must all use the same thread count.
THREADS = 1
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """The in-process calls use the same thread count as the subprocesses (restored afterwards).

    A module asks for it with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folds_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with two folds by sequence: 8 training labels per fold, batch 4 (once per module)."""
    from dataset import create_kfolds

    root = write_tiny_dataset(tmp_path_factory.mktemp("folds_data") / "data")
    create_kfolds.main(["--data-dir", str(root), "--folds", "2"])
    return root


@pytest.fixture
def data(folds_data: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset, free to damage."""
    return Path(shutil.copytree(folds_data, tmp_path / "data"))


def train_argv(data: Path, out: Path, *extra: object, epochs: int = 1) -> list[str]:
    argv = ["--config", TINY, "--data-dir", data, "--fold", 0, "--output-dir", out, "--epochs", epochs]
    return [str(arg) for arg in [*argv, *extra]]


def run_ok(argv: list[str]) -> None:
    import train

    train.main(argv)


@pytest.fixture(scope="module")
def checkpoint(one_thread: None, folds_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.pt of a one-epoch tiny run on fold 0."""
    out = tmp_path_factory.mktemp("checkpoint")
    run_ok(train_argv(folds_data, out))
    return out / "tiny" / "fold_0" / "last.pt"


def predict_argv(data: Path, checkpoint: Path, keys: list[str], tmp_path: Path, *extra: object) -> list[str]:
    from dataset.openeds import label_relpath

    frames = tmp_path / "frames.txt"
    frames.write_text("".join(f"{label_relpath(key)}\n" for key in keys))
    argv = ["--data-dir", data, "--label-file", frames, "--checkpoints", checkpoint, "--workers", 0]
    return [str(arg) for arg in [*argv, *extra]]


def pseudo_folder(data: Path, root: Path) -> tuple[Path, list[str]]:
    """A hand-made pseudo-label folder over fold 0's unlabelled frames of sequences S_2, S_3."""
    from dataset.openeds import label_relpath

    keys = [f"S_{s}/{n}" for s in (2, 3) for n in (0, 2)]
    for key in keys:
        (root / label_relpath(key)).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / label_relpath(key), np.zeros((400, 640), np.uint8))
    (root / "pseudo.json").write_text(json.dumps({"keys": keys, "trained_on": []}))
    return root, keys


class RunsCode:
    """Unpickling this calls open(marker, "w"): proof that code ran, if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def a_submission(tmp_path: Path, entries: dict[str, str]) -> Path:
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(entries))
    return path


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def catalogue() -> dict[str, str]:
    """case -> message template, from the table under '## Catalogue' of docs/errors-and-recovery.md."""
    text = (ROOT / "docs" / "errors-and-recovery.md").read_text().split("\n## Catalogue\n", 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    return {row.split(" | ")[0][2:]: row.split("`")[1] for row in rows}


def assert_catalogued(case: str, line: str) -> None:
    """`line` is the catalogue's message for `case`; `<...>` in the template matches any text."""
    template = catalogue()[case]
    pattern = "".join(
        ".+?" if part.startswith("<") else re.escape(part) for part in re.split(r"(<[^>]+>)", template)
    )
    assert re.fullmatch(pattern, line), f"\n{line}\ndoes not match the catalogue's\n{template}"


def tiny_checkpoint(path: Path, overrides: list[str], seed: int, trained_on: list[str]) -> Path:
    """A randomly initialised tiny model saved in train.py's checkpoint format."""
    from config.schema import load_config
    from models.checkpoint import save_checkpoint
    from models.zoo import build_model

    torch.manual_seed(seed)
    config = load_config(TINY, overrides)
    payload = {
        "model": build_model(config).state_dict(),
        "config": config.model_dump(mode="json"),
        "epoch": 0,
        "best_miou": 0.0,
        "trained_on": trained_on,
    }
    save_checkpoint(payload, path)
    return path


def run_script(
    *args: object, check: bool = True, timeout: float = 300, threads: int = 2, **kwargs: object
) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repo root (or `cwd=`); returns the completed process (text output)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore", **kwargs.pop("env", {})}
    kwargs.setdefault("cwd", ROOT)
    proc = subprocess.run(
        [sys.executable, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one 'error:' line on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def error_line(
    main: Callable[[list[str]], object], argv: list[object], capsys: pytest.CaptureFixture[str]
) -> str:
    """Call a script's main in-process: exit 2, exactly one 'error:' line on stderr, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured.err[-2000:]
    assert "Traceback" not in captured.err, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    return errors[0]


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """segment.py's workers set the process's torch threads (Segmenter.from_checkpoints): give them back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
