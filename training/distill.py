"""Distillation from a teacher ensemble: its frames, its soft targets, the KL term, the leakage rule.

`train.py --teacher T` trains a student on the fold's labels with its usual loss plus, on the
teacher's frames (unlabeled ones), a KL divergence towards the teacher's per-pixel class
probabilities at a temperature (`distill.*` in the config). T is a folder made by
`predict_ensemble.py --probs-dir` (inference/teacher.py), or an ensemble YAML whose cache is
made first (`prepare_teacher`).

Choices (tests/test_distill.py):
- the KL term acts on the teacher's frames only; labelled frames get the label loss only (their
  labels are exact, the teacher's probabilities are not). Every pixel of a teacher frame counts.
- a uint8 probability of 0 stands for "below half a step" (1/510): the teacher distribution is
  clamped there before the temperature, so the log never sees 0.
- the term is multiplied by temperature**2 (Hinton et al.), so its gradient scale does not shrink
  as the temperature grows.
- the leakage rule of pseudo-labels (inference/pseudo_keys.py) applies: a teacher frame in a
  sequence that holds a fold validation label the teacher trained on is dropped; if that leaves
  no frame, train.py refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from config.ensemble import read_ensemble_spec
from dataset.create_kfolds import UNLABELED_LIST
from dataset.openeds import IGNORE_INDEX, OpenEDSIndex, UnlabeledDataset, parse_sample_name, read_sample_list
from inference.members import load_members
from inference.predict import PredictJob, run_prediction
from inference.predictor import Predictor
from inference.pseudo import trained_on_union
from inference.pseudo_keys import leak_free_keys
from inference.teacher import probs_relpath, read_probs, read_teacher_manifest
from utils.errors import InputError

__all__ = [
    "Teacher",
    "load_teacher",
    "cache_teacher",
    "TeacherDataset",
    "distillation_loss",
    "teacher_labels",
    "PROB_FLOOR",
]

PROB_FLOOR = 1.0 / 510  # half a uint8 step: what a stored 0 stands for


@dataclass
class Teacher:
    """The teacher frames a fold may learn from, and what the teacher trained on."""

    folder: Path
    keys: list[str]  # leak-free frames of the manifest
    trained_on: list[str]
    num_classes: int
    dropped: int  # frames the leakage rule took out


def _refuse_leakage(source: object, frames: int, trained_on: list[str], val_keys: list[str]) -> None:
    seen = set(trained_on)
    leaked = sorted({parse_sample_name(key)[0] for key in val_keys if key in seen})
    raise InputError(
        f"leakage: the teacher trained on validation labels of this fold in every sequence its "
        f"{frames} frames come from ({len(leaked)} sequences, e.g. {leaked[0]}), so no frame "
        "is left to distil on; validate on whole sequences (create_kfolds --by sequence --out-dir DIR, "
        "then --folds-dir DIR) or use a teacher that never saw this fold's validation labels",
        source,
    )


def cache_teacher(
    ensemble: Path, data_dir: Path, folds_dir: Path, val_keys: list[str], out_dir: Path, device: torch.device
) -> Path:
    """An ensemble YAML as a teacher: its probabilities of the folds dir's unlabeled.txt frames that
    the leakage rule allows, cached in `out_dir` by the prediction run (resumable), before training.

    The rule is applied first, so a teacher that would leak everywhere is refused before it runs.
    """
    unlabeled = Path(folds_dir) / UNLABELED_LIST
    if not unlabeled.is_file():
        raise InputError(
            f"no {UNLABELED_LIST}: create folds first (python -m dataset.create_kfolds)", unlabeled
        )
    spec = read_ensemble_spec(ensemble)
    members = load_members(spec, ensemble)
    labeled = (
        OpenEDSIndex.from_dir(data_dir).labeled_keys() if any(m.trained_on is None for m in members) else []
    )
    trained_on = trained_on_union([member.trained_on for member in members], labeled)
    candidates = read_sample_list(unlabeled)
    keys = leak_free_keys(candidates, trained_on, val_keys)
    if not keys:
        _refuse_leakage(ensemble, len(candidates), trained_on, val_keys)
    job = PredictJob(data_dir=Path(data_dir), keys=keys, probs_dir=Path(out_dir), workers=2)
    run_prediction(job, Predictor.build(members, spec_tta=spec.tta, device=device, precision="fp32"))
    return Path(out_dir)


def load_teacher(folder: Path, val_keys: list[str], labeled: set[str], num_classes: int) -> Teacher:
    """Read a teacher folder and apply the leakage rule for these validation keys.

    Labelled frames are left out as well: they train on their labels. Refuses (InputError) a
    teacher of another number of classes, and one of which no frame is left.
    """
    manifest = read_teacher_manifest(folder)
    if manifest["num_classes"] != num_classes:
        raise InputError(
            f"the teacher predicts {manifest['num_classes']} classes, the student's config {num_classes}",
            folder,
        )
    candidates = [key for key in manifest["keys"] if key not in labeled]
    keys = leak_free_keys(candidates, manifest["trained_on"], val_keys)
    if candidates and not keys:
        _refuse_leakage(folder, len(candidates), manifest["trained_on"], val_keys)
    if not keys:
        raise InputError("the teacher holds no unlabeled frame to distil on", folder)
    return Teacher(Path(folder), keys, list(manifest["trained_on"]), num_classes, len(candidates) - len(keys))


class TeacherDataset(Dataset):
    """Teacher frames -> {"image" uint8 (1,H,W), "mask" all IGNORE_INDEX, "soft" uint8 (C,H,W), "distill": True, ...}.

    Not cached: teacher frames can be ~20x the labelled ones (as pseudo-labelled frames).
    """

    def __init__(self, root: Path, teacher: Teacher) -> None:
        self.frames = UnlabeledDataset(root, teacher.keys)
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.frames)

    def check_all(self, *, decode: bool) -> list[str]:
        """Image headers (or full images with `decode`) and that every probability file is there."""
        errors = self.frames.check_all(decode=decode)
        for key in self.teacher.keys:
            path = self.teacher.folder / probs_relpath(key)
            if not path.is_file():
                errors.append(str(InputError("teacher probabilities not found", path)))
        return errors

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.frames[index]
        soft = read_probs(self.teacher.folder / probs_relpath(item["name"]), self.teacher.num_classes)
        height, width = item["image"].shape[-2:]
        mask = torch.full((height, width), IGNORE_INDEX, dtype=torch.long)
        soft_t = torch.from_numpy(np.ascontiguousarray(soft))
        return {**item, "mask": mask, "soft": soft_t, "distill": True, "pseudo": False}


def teacher_labels(soft: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The teacher's class map (B, h, w) at the student's size; IGNORE_INDEX where it has no probabilities."""
    target = F.interpolate(soft.float(), size=size, mode="area") if soft.shape[-2:] != size else soft.float()
    labels = target.argmax(dim=1)
    return labels.masked_fill(target.sum(dim=1) <= 127.5, IGNORE_INDEX)


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """temperature**2 * KL(teacher_T || student_T), mean over pixels and frames.

    logits: (B, C, h, w) student logits; soft: (B, C, H, W) uint8 teacher probabilities
    (255 = 1), resized to (h, w) by area averaging. teacher_T = softmax(log(p) / T). Pixels
    whose probabilities are all 0 (brought in by a geometric augmentation) do not count.
    """
    target = soft.float() / 255.0
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target, size=logits.shape[-2:], mode="area")
    # Pixels an augmentation moved in from outside the frame carry no probabilities (all 0).
    inside = target.sum(dim=1) > 0.5
    log_target = F.log_softmax(target.clamp_min(PROB_FLOOR).log() / temperature, dim=1)
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    kl = (log_target.exp() * (log_target - log_student)).sum(dim=1)
    return (kl * inside).sum() / inside.sum().clamp_min(1) * temperature**2
