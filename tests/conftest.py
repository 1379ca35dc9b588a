"""Shared fixtures: tiny datasets in the exact OpenEDS 2020 layout, made by the tests themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")


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
