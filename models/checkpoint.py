"""One checkpoint format, built by one function, written atomically, loaded safely.

A checkpoint is `{"model": state_dict, "optimizer", "scheduler", "scaler", "epoch",
"best_miou", "config", "rng", "trained_on"}` (`training_checkpoint` builds it; train.py adds
what its resume checks need); `config` is the resolved config as plain data, so a checkpoint
alone rebuilds its model, and `trained_on` lists the label keys the model learned from, which
the pseudo-label leakage rule reads (absent when unknown), and `init` says which checkpoint a
fine-tuned run started from (`init_from_checkpoint`). Loading also accepts the original recipe's
`{"epoch", "state_dict": {"module.<key>": ...}, "miou_best": numpy float64}` (its config must
then be given). Everything is stored as tensors and plain Python values, so
`torch.load(weights_only=True)` reads it, with only the recipe's numpy scalar globals allowed
(models/safe_load.py): no pickled code runs when a checkpoint is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from config.schema import Config, config_from_dict
from models.safe_load import load_weights_only
from models.zoo import SegmentationModel, build_model
from utils.atomic import atomic_path
from utils.errors import InputError

__all__ = [
    "training_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "model_state",
    "ARCHITECTURE_KEYS",
    "init_from_checkpoint",
]

# What a state dict's shapes and the meaning of its weights depend on: the network and its
# parameters, and what the network is fed (channels, the input scale, the normalisation).
ARCHITECTURE_KEYS = (
    "network",
    "encoder",
    "network_params",
    "in_channels",
    "num_classes",
    "input.scale",
    "input.normalize",
)


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over `path`.

    A crash (even SIGKILL) at any moment leaves either the previous file or the new one.
    """
    try:
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
            torch.save(payload, handle)
    except OSError as exc:
        raise InputError(
            f"cannot write the checkpoint ({exc.strerror or exc}); the previous one is kept", path
        ) from None
    except RuntimeError as exc:  # torch's zip writer reports a failed write (a full disk) this way
        if "write" not in str(exc).lower():
            raise
        raise InputError(
            "cannot write the checkpoint (write failed: disk full?); the previous one is kept", path
        ) from None


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint on the CPU with weights_only=True; one-line InputError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        payload = load_weights_only(path)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickle error, not a torch file...
        # A pickled object (a class or function reference) is refused unloaded: say which one,
        # so it reads as "not a plain checkpoint" rather than as a corrupt file.
        refused = re.search(r"Unsupported global: GLOBAL (\S+)|but got <class '([^']+)'>", str(exc))
        if refused:
            raise InputError(
                f"holds a pickled object ({refused.group(1) or refused.group(2)}), not only tensors and plain values: "
                "refused unloaded (torch.load weights_only=True); nothing in it was run",
                path,
            ) from None
        raise InputError(f"not a readable checkpoint ({type(exc).__name__})", path) from None
    if not isinstance(payload, dict) or not ({"model", "state_dict"} & set(payload)):
        raise InputError("not a checkpoint: no 'model' or 'state_dict' entry", path)
    return payload


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of a model, unwrapped from DDP / torch.compile."""
    return _unwrapped(model).state_dict()


def model_from_checkpoint(
    path: Path | str, config: Config | None = None
) -> tuple[SegmentationModel, Config, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained as and load its weights.

    `config` overrides the checkpoint's own (required for the recipe's format, which has none).
    The checkpoint holds every weight, so no pretrained encoder weights are looked up.
    """
    payload = load_checkpoint(path)
    if config is None:
        if "config" not in payload:
            raise InputError(
                "checkpoint carries no config (the original recipe's format): give its config", path
            )
        config = config_from_dict(payload["config"], f"{path} (embedded config)")
    model = build_model(config, pretrained=False)
    try:
        model.load_state_dict(_model_weights(payload))
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise InputError(
            f"weights do not match {config.network}/{config.encoder} ({first[:120]})", path
        ) from None
    return model, config, payload


def _model_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A checkpoint's SegmentationModel state dict (ours, or the recipe's DataParallel-wrapped smp model)."""
    if "model" in payload:
        return payload["model"]
    return {"net." + k.removeprefix("module."): v for k, v in payload["state_dict"].items()}


def _architecture(config: Config) -> dict[str, Any]:
    """The ARCHITECTURE_KEYS values of a config, by dotted key."""
    values: dict[str, Any] = {}
    for key in ARCHITECTURE_KEYS:
        value: Any = config.model_dump(mode="json")
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def init_from_checkpoint(model: torch.nn.Module, config: Config, path: Path | str) -> dict[str, Any]:
    """Load every weight of a trained model (encoder and decoder) into `model`, built from `config`.

    For fine-tuning (train.py --init): the optimizer, schedule, epoch and best score stay fresh.
    Refused with a one-line InputError naming the checkpoint when its embedded config differs from
    `config` in an ARCHITECTURE_KEYS entry (a checkpoint without one, the recipe's, is checked by
    its tensors alone), or when a tensor is missing, extra or of another shape. Weights are cast to
    the model's dtypes (fp16 weights-only files load into fp32 models). Returns what the run records:
    ``{"path": str, "trained_on": the checkpoint's label keys, or None when it does not say}``.
    """
    path = Path(path)
    payload = load_checkpoint(path)
    if payload.get("config") is not None:
        saved = _architecture(config_from_dict(payload["config"], f"{path} (embedded config)"))
        wanted = _architecture(config)
        changed = [f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in ARCHITECTURE_KEYS if saved[k] != wanted[k]]
        if changed:
            raise InputError(
                f"--init needs the architecture of this run's config, and the checkpoint's differs "
                f"({'; '.join(changed)}): set these keys as the checkpoint has them, or train without --init",
                path,
            )
    state, own = _model_weights(payload), model_state(model)
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise InputError("its model weights are not a state dict of tensors", path)
    missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    reshaped = sorted(k for k in own.keys() & state.keys() if state[k].shape != own[k].shape)
    if missing or extra or reshaped:
        example = (
            f"{reshaped[0]} is {tuple(state[reshaped[0]].shape)} there, {tuple(own[reshaped[0]].shape)} here"
            if reshaped
            else f"{(missing or extra)[0]} {'missing' if missing else 'not in this model'}"
        )
        raise InputError(
            f"--init: the weights do not fit {config.network}/{config.encoder} ({len(missing)} missing, "
            f"{len(extra)} extra, {len(reshaped)} of another shape; e.g. {example})",
            path,
        )
    _unwrapped(model).load_state_dict({key: state[key].to(tensor.dtype) for key, tensor in own.items()})
    trained_on = payload.get("trained_on")
    if trained_on is not None and not (
        isinstance(trained_on, list) and all(isinstance(key, str) for key in trained_on)
    ):
        raise InputError("'trained_on' must be a list of label keys like 'S_0/3'", path)
    return {"path": str(path), "trained_on": trained_on}


def training_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    *,
    epoch: int,
    best_miou: float,
    config: Config,
    rng: dict[str, Any],
    trained_on: list[str] | None,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint of a training run after `epoch` epochs: everything a resume restores.

    `extra` entries (train.py's run identity, a mid-epoch position) are stored as given.
    """
    payload = {
        "model": model_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "best_miou": best_miou,
        "config": config.model_dump(mode="json"),
        "rng": rng,
    }
    if trained_on is not None:
        payload["trained_on"] = trained_on
    return payload | extra
