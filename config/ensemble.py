"""The ensemble file: which checkpoints an ensemble averages, with what weights and TTA.

An ensemble file is YAML (or JSON):

    tta: hflip                      # optional; --tta overrides it, default hflip
    members:
      - checkpoint: runs/cpu_fast/fold_*/best.pt   # a path or a glob, relative to the CWD
        weight: 1.0                                # optional, default 1, must be > 0
        config: null                               # optional config file (needed by the
                                                   # original recipe's checkpoints, which carry none)

A glob's weight applies to each checkpoint it matches; a glob that matches nothing is an error
(inference/members.py expands and loads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from config.reader import read_mapping, validate
from utils.errors import InputError

__all__ = [
    "DEFAULT_TTA",
    "FUSABLE_TTA",
    "HFLIP_TTA",
    "NO_TTA",
    "SCALES_TTA",
    "TTA_NAMES",
    "EnsembleSpec",
    "MemberSpec",
    "read_ensemble_spec",
    "spec_from_checkpoints",
]

# The test-time-augmentation modes, by name: the one place the names are written, below every
# layer that checks one (config/schema.py's validation.tta, ensemble files, the CLIs' --tta,
# model.json). inference/engine.TTA_MODES maps each name to its views. FUSABLE_TTA's views can be
# averaged inside an exported graph (export.py) and by training-time validation; the scales need
# the checkpoints' own input scale.
NO_TTA = "none"
HFLIP_TTA = "hflip"
SCALES_TTA = "hflip+scales"
TTA_NAMES = (NO_TTA, HFLIP_TTA, SCALES_TTA)
FUSABLE_TTA = (NO_TTA, HFLIP_TTA)
DEFAULT_TTA = HFLIP_TTA


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberSpec(_Strict):
    checkpoint: str
    weight: float = Field(1.0, gt=0)
    config: str | None = None


class EnsembleSpec(_Strict):
    tta: str | None = None
    members: list[MemberSpec] = Field(min_length=1)


def read_ensemble_spec(path: Path | str) -> EnsembleSpec:
    """Parse and validate an ensemble file; one-line InputError naming the file and key.

    Its TTA, if it names one, must be one of TTA_NAMES.
    """
    path = Path(path)
    data = read_mapping(path, "ensemble file")
    if not isinstance(data, dict):
        raise InputError("an ensemble file must be a mapping with 'members' (and optionally 'tta')", path)
    spec = validate(EnsembleSpec, data, path)
    if spec.tta is not None and spec.tta not in TTA_NAMES:
        raise InputError(f"bad value for 'tta': {spec.tta!r}; choose one of {', '.join(TTA_NAMES)}", path)
    return spec


def spec_from_checkpoints(paths: Sequence[Path | str]) -> EnsembleSpec:
    """--checkpoints A.pt B.pt ...: weight 1 each, embedded configs."""
    return EnsembleSpec(members=[MemberSpec(checkpoint=str(path)) for path in paths])
