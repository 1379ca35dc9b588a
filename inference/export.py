"""Export an ensemble (checkpoints x TTA) to ONNX, check it against the engine, describe it.

`export_members` builds models.export.FusedEnsemble from loaded members, writes the graph
(fp32, or int8 by onnxruntime's static quantization calibrated on frames), runs it with
onnxruntime on synthetic eye frames and compares its class maps with the PyTorch engine's
(fp32, the same members and views): below the threshold (99.9% of pixels, 99.5% for int8)
it refuses with a one-line error and writes nothing. Otherwise the .onnx and its model.json
(inference/onnx_model.py reads it back) are written, each atomically.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config.ensemble import DEFAULT_TTA
from dataset.openeds import read_image
from dataset.synthetic.render import EyeSequence
from inference.engine import FUSABLE_TTA, EnsemblePredictor
from inference.members import Member
from inference.onnx_model import MODEL_JSON_FORMAT, OnnxModel, file_sha256, model_json_path, onnx_session
from models.export import INPUT_NAME, OPSET, OUTPUT_NAME, FusedEnsemble, export_onnx, quantize_int8
from utils.atomic import atomic_path, write_text_atomic
from utils.errors import InputError

__all__ = ["CLASSES", "THRESHOLDS", "ExportSettings", "synthetic_frames", "agreement", "export_members"]

CLASSES = ["background", "sclera", "iris", "pupil"]
THRESHOLDS = {"fp32": 0.999, "int8": 0.995}
HEIGHT, WIDTH = 400, 640


@dataclass
class ExportSettings:
    out: Path
    tta: str = DEFAULT_TTA
    int8: bool = False
    calibration: list[Path] | None = None  # frames for int8 scales; None: synthetic frames
    check_frames: int = 8
    min_agreement: float | None = None  # None: THRESHOLDS[precision]; benchmarks pass 0 to measure any graph


def synthetic_frames(count: int, seed: int) -> np.ndarray:
    """`count` synthetic eye frames (N, 1, 400, 640) uint8 from dataset.synthetic's renderer."""
    frames = []
    for index in range(count):
        sequence = EyeSequence(seed, index, frames=8)
        frames.append(sequence.render(index % 8)[0])
    return np.stack(frames)[:, None]


def agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Share of pixels where two class maps (or the argmax of two logit tensors) agree."""
    a, b = (np.asarray(x) for x in (a, b))
    if a.ndim == 4:
        a, b = a.argmax(1), b.argmax(1)
    return float((a == b).mean())


CALIBRATION_FRAMES = 32  # at most, spread evenly over the list: the calibrator holds every activation


def _calibration_frames(paths: list[Path] | None, seed: int = 1) -> np.ndarray:
    if not paths:
        return synthetic_frames(16, seed)
    chosen = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(len(paths), CALIBRATION_FRAMES))]
    return np.stack([read_image(path)[None] for path in dict.fromkeys(chosen)])


def export_members(members: list[Member], settings: ExportSettings) -> dict[str, Any]:
    """Write settings.out (.onnx) and its model.json, or raise InputError naming what failed.

    Returns the model.json content.
    """
    out = Path(settings.out)
    if out.suffix.lower() != ".onnx":
        raise InputError("the output must be a .onnx file", out)
    if not out.parent.is_dir():
        raise InputError("output folder not found", out.parent)
    if any(isinstance(member.model, OnnxModel) for member in members):
        raise InputError(
            "export takes checkpoints (.pt), not exported graphs",
            next(m.checkpoint for m in members if isinstance(m.model, OnnxModel)),
        )
    if settings.tta not in FUSABLE_TTA:
        raise InputError(f"--tta must be {' or '.join(FUSABLE_TTA)} for an export, got {settings.tta!r}")
    models = [(member.model.cpu().eval(), member.weight) for member in members]
    fused = FusedEnsemble(models, hflip=settings.tta == "hflip")
    frames = synthetic_frames(settings.check_frames, seed=0)
    precision = "int8" if settings.int8 else "fp32"
    with torch.inference_mode():
        reference = EnsemblePredictor(models, tta=settings.tta).logits(torch.from_numpy(frames)).numpy()
    with tempfile.TemporaryDirectory() as work, atomic_path(out) as tmp:
        fp32 = Path(work) / "fp32.onnx" if settings.int8 else tmp
        # An example of batch 2: torch.export specialises a dimension of size 1.
        export_onnx(fused, fp32, torch.from_numpy(np.concatenate([frames[:1], frames[:1]])))
        if settings.int8:
            quantize_int8(fp32, tmp, _calibration_frames(settings.calibration))
        logits = onnx_session(tmp).run([OUTPUT_NAME], {INPUT_NAME: frames})[0]
        agree = agreement(logits, reference)
        threshold = THRESHOLDS[precision] if settings.min_agreement is None else settings.min_agreement
        if agree < threshold:
            raise InputError(
                f"the {precision} graph agrees with the PyTorch engine on {agree:.4%} of pixels of "
                f"{len(frames)} synthetic frames, below the {threshold:.1%} required: not written",
                out,
            )
        digest = file_sha256(tmp)
    trained = [member.trained_on for member in members]
    info = {
        "format": MODEL_JSON_FORMAT,
        "onnx": out.name,
        "sha256": digest,
        "classes": CLASSES[: members[0].config.num_classes],
        "num_classes": members[0].config.num_classes,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": ["N", 1, HEIGHT, WIDTH],
            "meaning": "8-bit gray frames as read from the PNG (0..255); N is dynamic",
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["N", members[0].config.num_classes, HEIGHT, WIDTH],
            "meaning": "weighted mean logits over the members and views at full resolution; "
            "argmax over axis 1 is the class map, softmax the confidence",
        },
        "inside": "normalisation, input scale, padding to a multiple of 32, the networks, "
        "the views and their average, the resize back",
        "tta": settings.tta,
        "precision": precision,
        "opset": OPSET,
        "sources": [
            {
                "checkpoint": str(member.checkpoint),
                "weight": member.weight,
                "sha256": member.digest,
                "config": member.config.model_dump(mode="json"),
            }
            for member in members
        ],
        "trained_on": None if any(t is None for t in trained) else sorted({k for t in trained for k in t}),
        "agreement": {
            "pixels": agree,
            "threshold": threshold,
            "frames": len(frames),
            "against": "the PyTorch engine in fp32 (same members and views) on synthetic eye frames",
        },
        "calibration": None
        if not settings.int8
        else (
            f"{min(len(settings.calibration), CALIBRATION_FRAMES)} frames spread over a list of {len(settings.calibration)}"
            if settings.calibration
            else "16 synthetic eye frames"
        ),
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    write_text_atomic(model_json_path(out), json.dumps(info, indent=1) + "\n")
    return info


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
