"""Which pseudo-labelled frames fold K may train on: the no-leakage rule.

A pseudo-label carries what its models learned. If a model that produced it was trained on
a validation label of fold K, a fold-K model trained on that pseudo-label learns the
validation label second-hand and its val mIoU is inflated. The rule, enforced here:

    a pseudo-labelled frame in a sequence that holds fold-K validation labels is used only
    if none of the models that produced the pseudo-labels trained on any of those labels.

The pseudo-label folder's `pseudo.json` (written by predict_ensemble.py --pseudo-dir)
records the frames kept and the union of label keys its models were trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from dataset.openeds import parse_sample_name
from utils.sidecar import read_folder_manifest

__all__ = ["KeyManifest", "read_pseudo_manifest", "allowed_pseudo_keys", "leak_free_keys", "PSEUDO_MANIFEST"]

PSEUDO_MANIFEST = "pseudo.json"


class KeyManifest(BaseModel):
    """What pseudo.json and teacher.json share: the frames (`keys`) and what made them `trained_on`."""

    model_config = ConfigDict(extra="allow")
    keys: list[Any]
    trained_on: list[Any]

    @field_validator("keys", "trained_on")
    @classmethod
    def _frame_keys(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        for key in value:
            try:
                parse_sample_name(key)
            except (ValueError, AttributeError, TypeError):
                raise ValueError(f"'{info.field_name}' holds {key!r}, not a frame key like 'S_0/3'") from None
        return value


def read_pseudo_manifest(pseudo_dir: Path) -> dict:
    manifest = read_folder_manifest(
        pseudo_dir, PSEUDO_MANIFEST, KeyManifest, "pseudo-label", "predict_ensemble.py --pseudo-dir"
    )
    return manifest.model_dump()


def leak_free_keys(keys: list[str], trained_on: list[str], val_keys: list[str]) -> list[str]:
    """`keys` minus every frame of a sequence holding a val key that the producing models trained on.

    The rule for anything a fold learns from other models' outputs: pseudo-labels, and a
    teacher's soft targets (train.py --teacher).
    """
    seen = set(trained_on)
    leaked_sequences = {parse_sample_name(key)[0] for key in val_keys if key in seen}
    return [key for key in keys if parse_sample_name(key)[0] not in leaked_sequences]


def allowed_pseudo_keys(pseudo_dir: Path, val_keys: list[str]) -> list[str]:
    """The manifest's keys minus the frames the leakage rule excludes for these val keys."""
    manifest = read_pseudo_manifest(pseudo_dir)
    return leak_free_keys(manifest["keys"], manifest["trained_on"], val_keys)
