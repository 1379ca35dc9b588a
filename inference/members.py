"""Ensemble members: an ensemble spec (config/ensemble.py) -> loaded, weighted member models.

Each checkpoint carries its own config (architecture, channels, input scale, normalisation), so
members of different architectures and input scales mix freely: every model returns full-size
logits, which the one inference engine (inference/engine.py) averages. A member may also be an
exported graph (`.onnx`, with its model.json beside it: inference/onnx_model.py), run by
onnxruntime; its identity is the sha256 of the .onnx bytes and of its model.json.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from config.ensemble import EnsembleSpec, read_ensemble_spec, spec_from_checkpoints
from config.schema import Config, config_from_dict, load_config
from inference.onnx_model import file_sha256, load_onnx_model, model_json_path
from models.checkpoint import model_from_checkpoint
from utils.errors import InputError

__all__ = ["Member", "load_members", "ensemble_members"]


@dataclass
class Member:
    """One loaded model of the ensemble and what identifies it."""

    checkpoint: Path
    weight: float
    model: nn.Module  # a models.zoo.SegmentationModel, or an inference.onnx_model.OnnxModel
    config: Config
    trained_on: list[str] | None  # label keys "S_k/n" it learned from; None if the checkpoint does not say
    digest: str  # sha256 of the weights and the resolved config: what the predictions depend on

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "weight": self.weight, "sha256": self.digest}


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


def _onnx_member(path: Path, weight: float, config: Config | None) -> Member:
    """An exported graph: its model.json's first source config (unless given), the union of what
    its sources trained on (None if one does not say), and a digest of the graph and model.json."""
    model = load_onnx_model(path)
    info = model.info
    if config is None:
        try:
            config = config_from_dict(
                info["sources"][0]["config"], f"{model_json_path(path)} (sources[0].config)"
            )
        except (IndexError, KeyError, TypeError):
            raise InputError(
                "model.json: 'sources' must list the exported checkpoints with their configs",
                model_json_path(path),
            ) from None
    if int(info["num_classes"]) != config.num_classes:
        raise InputError(
            f"model.json: num_classes {info['num_classes']} but its config has {config.num_classes}",
            model_json_path(path),
        )
    trained_on = info.get("trained_on")
    if trained_on is not None and not (
        isinstance(trained_on, list) and all(isinstance(k, str) for k in trained_on)
    ):
        raise InputError(
            "model.json: 'trained_on' must be a list of label keys like 'S_0/3'", model_json_path(path)
        )
    digest = hashlib.sha256((file_sha256(path) + file_sha256(model_json_path(path))).encode()).hexdigest()
    return Member(path, weight, model.eval(), config, trained_on, digest)


def load_members(spec: EnsembleSpec, source: object = "--checkpoints") -> list[Member]:
    """Expand globs, load every checkpoint (with its member config if given) and check they fit together.

    A `.onnx` path is an exported graph (inference/onnx_model.py), run by onnxruntime.
    """
    members: list[Member] = []
    for item in spec.members:
        config = load_config(item.config) if item.config is not None else None
        for path in _expand(item.checkpoint, source):
            if path.suffix.lower() == ".onnx":
                members.append(_onnx_member(path, item.weight, config))
                continue
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


def ensemble_members(
    checkpoints: list[str] | None, ensemble: Path | str | None, default: Path | str | None = None
) -> tuple[EnsembleSpec, list[Member]]:
    """The spec and loaded members of `--checkpoints A.pt ...` or `--ensemble FILE` (else `default`).

    The one path from a command line's model arguments to members, for predict_ensemble.py and
    segment.py alike.
    """
    if checkpoints:
        spec, source = spec_from_checkpoints(checkpoints), "--checkpoints"
    else:
        source = ensemble or default
        if source is None:
            raise InputError("give --checkpoints or --ensemble")
        spec = read_ensemble_spec(source)
    return spec, load_members(spec, source)
