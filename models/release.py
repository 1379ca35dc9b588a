"""A shipped model: a trained checkpoint reduced to its weights (fp16) and config, with a JSON card.

    weights/default.pt     {"model": fp16 state_dict, "config", "epoch", "best_miou", "trained_on": []}
    weights/default.json   the card: how it was made, its scores

Any script that takes a checkpoint takes this file (models/checkpoint.py loads it; the fp16
tensors are copied into the fp32 model). Optimizer, scheduler and RNG state are dropped: a
shipped model is for predicting and for starting new training (`train.py --init`), not for resuming.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from utils.atomic import write_text_atomic

__all__ = ["release_weights", "card_path"]


def card_path(weights: Path) -> Path:
    """The JSON card beside a weights file."""
    return Path(weights).with_suffix(".json")


def release_weights(
    checkpoint: Path, out: Path, card: dict[str, Any], trained_on: list[str] | None = None
) -> dict[str, Any]:
    """Write `out` (fp16 weights + config) and its card; returns the card as written.

    Floating-point tensors become fp16 (BatchNorm statistics included: they are well inside
    fp16's range); integer ones (num_batches_tracked) are kept. `trained_on`: the label keys
    the model learned from, for the pseudo-label leakage rule (default: the checkpoint's); a
    model pretrained on rendered frames passes [] (it learned no label a user holds).
    """
    payload = load_checkpoint(checkpoint)
    if "config" not in payload:
        raise ValueError(
            f"{checkpoint}: no embedded config (the original recipe's format cannot be released)"
        )
    state = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
    released = {
        "model": state,
        "config": payload["config"],
        "epoch": payload.get("epoch", 0),
        "best_miou": float(payload.get("best_miou", 0.0)),
        "trained_on": list(payload.get("trained_on", [])) if trained_on is None else trained_on,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(released, out)
    params = sum(v.numel() for v in state.values() if v.is_floating_point())
    card = {
        **card,
        "file": out.name,
        "bytes": out.stat().st_size,
        "parameters": params,
        "dtype": str(torch.float16),
    }
    write_text_atomic(card_path(out), json.dumps(card, indent=1) + "\n")
    return card
