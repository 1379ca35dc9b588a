"""Shared fixtures and helpers: tiny datasets in the exact OpenEDS 2020 layout made by the tests
themselves, the tiny config, tiny checkpoints, and running the real scripts as a user would."""

from __future__ import annotations

import os
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


def write_tiny_dataset(root: Path, sequences: int = 4, frames: int = 12, label_every: int = 3, seed: int = 0) -> Path:
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
            image = np.array([40, 170, 100, 20], np.uint8)[mask] + rng.integers(0, 20, mask.shape, dtype=np.uint8)
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
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
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
