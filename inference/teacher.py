"""A teacher's cached soft targets: per-frame class probabilities in uint8, and their manifest.

`predict_ensemble.py --probs-dir T` writes, for every frame of its list, `T/S_k/<n>.npz` holding
`probs`: uint8 (C, 400, 640), the ensemble's softmax (every member and TTA view averaged, as
the engine predicts; no --min-area) times 255, rounded; and, once every frame is done,
`T/teacher.json`:

    {"keys": ["S_k/n", ...], "trained_on": union of the members' training label keys,
     "checkpoints": [...], "tta", "num_classes"}

Cached rather than computed during training (measured, BENCHMARKS.md "Student"): the teacher
runs once per frame instead of once per frame per epoch, and its forward passes cost more than
the student's training step. uint8 keeps each frame at 1 byte per class and pixel before
compression (np.savez_compressed: the probabilities are 0 or 255 almost everywhere).
`trained_on` drives the same no-leakage rule as pseudo-labels (inference/pseudo_keys.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from dataset.openeds import IMAGE_HEIGHT, IMAGE_WIDTH, parse_sample_name
from inference.pseudo_keys import KeyManifest
from utils.atomic import atomic_path
from utils.errors import InputError
from utils.sidecar import read_folder_manifest

__all__ = [
    "TEACHER_MANIFEST",
    "probs_relpath",
    "quantize_probs",
    "save_probs",
    "read_probs",
    "read_teacher_manifest",
    "teacher_manifest",
]

TEACHER_MANIFEST = "teacher.json"


def probs_relpath(key: str) -> str:
    """``"S_0/3"`` -> ``"S_0/3.npz"``."""
    sequence, frame = parse_sample_name(key)
    return f"{sequence}/{frame}.npz"


def quantize_probs(probs: torch.Tensor) -> np.ndarray:
    """(C, H, W) float probabilities -> uint8 (C, H, W), 255 = 1."""
    return (probs.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def save_probs(path: Path, probs: np.ndarray) -> None:
    """Write one frame's uint8 probabilities atomically (the file is whole or absent)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probs=probs)


def read_probs(path: Path, num_classes: int) -> np.ndarray:
    """One frame's uint8 probabilities (C, 400, 640), checked; a one-line InputError if unusable."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            probs = archive["probs"]
    except FileNotFoundError:
        raise InputError("teacher probabilities not found", path) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a readable teacher probability file ({type(exc).__name__})", path) from None
    expected = (num_classes, IMAGE_HEIGHT, IMAGE_WIDTH)
    if probs.dtype != np.uint8 or probs.shape != expected:
        raise InputError(
            f"expected uint8 probabilities of shape {expected}, got {probs.dtype} {probs.shape}", path
        )
    return probs


def teacher_manifest(
    keys: list[str], trained_on: list[str], checkpoints: list[dict], tta: str, num_classes: int
) -> dict:
    """The teacher.json content."""
    return {
        "keys": keys,
        "trained_on": trained_on,
        "checkpoints": checkpoints,
        "tta": tta,
        "num_classes": num_classes,
    }


class TeacherManifest(KeyManifest):
    """teacher.json: the frames cached, what the teacher trained on, and its number of classes."""

    num_classes: int = Field(ge=2)


def read_teacher_manifest(teacher_dir: Path) -> dict:
    """Read and check `teacher.json`: frame keys, trained_on, num_classes."""
    manifest = read_folder_manifest(
        teacher_dir, TEACHER_MANIFEST, TeacherManifest, "teacher", "predict_ensemble.py --probs-dir"
    )
    return manifest.model_dump()
