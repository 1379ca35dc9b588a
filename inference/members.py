"""Ensembles: an ensemble file (or a list of checkpoints) -> loaded, weighted member models.

An ensemble file is YAML (or JSON):

    tta: hflip                      # optional; --tta overrides it, default hflip
    members:
      - checkpoint: runs/cpu_fast/fold_*/best.pt   # a path or a glob, relative to the CWD
        weight: 1.0                                # optional, default 1, must be > 0
        config: null                               # optional config file (needed by the
                                                   # original recipe's checkpoints, which carry none)

A glob's weight applies to each checkpoint it matches; a glob that matches nothing is an error.
Each checkpoint carries its own config (architecture, channels, input scale, normalisation), so
members of different architectures and input scales mix freely: every model returns full-size
logits, which the one inference engine (models/inference.py) averages.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.schema import Config, load_config
from inference.engine import TTA_MODES
from models.checkpoint import model_from_checkpoint
from models.zoo import SegmentationModel
from utils.errors import InputError

__all__ = [
    "EnsembleSpec",
    "MemberSpec",
    "Member",
    "read_ensemble_file",
    "spec_from_checkpoints",
    "load_members",
]

DEFAULT_TTA = "hflip"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemberSpec(_Strict):
    checkpoint: str
    weight: float = Field(1.0, gt=0)
    config: str | None = None


class EnsembleSpec(_Strict):
    tta: str | None = None
    members: list[MemberSpec] = Field(min_length=1)


@dataclass
class Member:
    """One loaded model of the ensemble and what identifies it."""

    checkpoint: Path
    weight: float
    model: SegmentationModel
    config: Config
    trained_on: list[str] | None  # label keys "S_k/n" it learned from; None if the checkpoint does not say
    digest: str  # sha256 of the weights and the resolved config: what the predictions depend on

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "weight": self.weight, "sha256": self.digest}


def _describe_error(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    return f"bad value for '{key}': {error['msg']}"


def read_ensemble_file(path: Path | str) -> EnsembleSpec:
    """Parse and validate an ensemble file; one-line InputError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise InputError("ensemble file not found", path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"cannot parse ensemble file: {str(exc).splitlines()[0]}", path) from None
    if not isinstance(data, dict):
        raise InputError("an ensemble file must be a mapping with 'members' (and optionally 'tta')", path)
    try:
        spec = EnsembleSpec.model_validate(data)
    except ValidationError as exc:
        raise InputError(_describe_error(exc.errors()[0]), path) from None
    if spec.tta is not None and spec.tta not in TTA_MODES:
        raise InputError(f"bad value for 'tta': {spec.tta!r}; choose one of {sorted(TTA_MODES)}", path)
    return spec


def spec_from_checkpoints(paths: Sequence[Path | str]) -> EnsembleSpec:
    """--checkpoints A.pt B.pt ...: weight 1 each, embedded configs."""
    return EnsembleSpec(members=[MemberSpec(checkpoint=str(path)) for path in paths])


def _expand(pattern: str, source: object) -> list[Path]:
    """A path, or the sorted files a glob matches (an error naming the glob if none)."""
    if not glob.has_magic(pattern):
        return [Path(pattern)]
    matches = sorted(glob.glob(pattern))
    if not matches:
        raise InputError(f"checkpoint pattern {pattern!r} matches no file", source)
    return [Path(match) for match in matches]


def _digest(model: torch.nn.Module, config: Config) -> str:
    """sha256 over the weights (names and bytes) and the resolved config.

    Hashing the loaded state dict rather than the file makes the identity independent of the
    optimizer state and of the checkpoint format (ours or the recipe's).
    """
    sha = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def load_members(spec: EnsembleSpec, source: object = "--checkpoints") -> list[Member]:
    """Expand globs, load every checkpoint (with its member config if given) and check they fit together."""
    members: list[Member] = []
    for item in spec.members:
        config = load_config(item.config) if item.config is not None else None
        for path in _expand(item.checkpoint, source):
            model, model_config, payload = model_from_checkpoint(path, config)
            trained_on = payload.get("trained_on")
            if trained_on is not None and not (
                isinstance(trained_on, list) and all(isinstance(key, str) for key in trained_on)
            ):
                raise InputError("'trained_on' must be a list of label keys like 'S_0/3'", path)
            members.append(
                Member(
                    path, item.weight, model.eval(), model_config, trained_on, _digest(model, model_config)
                )
            )
    classes = {member.config.num_classes for member in members}
    if len(classes) > 1:
        odd = next(m for m in members if m.config.num_classes != members[0].config.num_classes)
        raise InputError(
            f"num_classes {odd.config.num_classes} differs from {members[0].checkpoint}'s "
            f"{members[0].config.num_classes}: these models cannot be averaged",
            odd.checkpoint,
        )
    return members
