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

import json
from pathlib import Path

from dataset.openeds import parse_sample_name
from utils.errors import InputError

__all__ = ["read_pseudo_manifest", "check_key_lists", "allowed_pseudo_keys", "leak_free_keys", "PSEUDO_MANIFEST"]

PSEUDO_MANIFEST = "pseudo.json"


def read_pseudo_manifest(pseudo_dir: Path) -> dict:
    path = Path(pseudo_dir) / PSEUDO_MANIFEST
    if not path.is_file():
        raise InputError(f"not a pseudo-label folder: no {PSEUDO_MANIFEST} (make one with predict_ensemble.py --pseudo-dir)", pseudo_dir)
    try:
        manifest = json.loads(path.read_text())
        manifest["keys"], manifest["trained_on"]  # noqa: B018 - presence check
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"malformed pseudo-label manifest ({type(exc).__name__}: {exc})", path) from None
    check_key_lists(manifest, "pseudo-label manifest", path)
    return manifest


def check_key_lists(manifest: dict, what: str, path: Path) -> None:
    """`keys` and `trained_on` of a manifest (pseudo-labels, a teacher) must be lists of frame keys."""
    for field in ("keys", "trained_on"):
        if not isinstance(manifest[field], list):
            raise InputError(f"malformed {what}: '{field}' must be a list of frame keys", path)
        for key in manifest[field]:
            try:
                parse_sample_name(key)
            except (ValueError, AttributeError, TypeError):
                raise InputError(
                    f"malformed {what}: '{field}' holds {key!r}, not a frame key like 'S_0/3'", path
                ) from None


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
