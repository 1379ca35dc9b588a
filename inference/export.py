"""Export an ensemble (checkpoints x TTA) to ONNX, check it against the engine, describe it.

`export_members` builds models.export.FusedEnsemble from loaded members, writes the graph
(fp32, or int8 by onnxruntime's static quantization calibrated on frames), runs it with
onnxruntime on the caller's check frames (export.py renders synthetic eyes) and compares its
class maps with those of the engine's front door, inference/predictor.Predictor (fp32 on the CPU,
the same members and views): below the threshold (99.9% of pixels, 99.5% for int8) it refuses
with a one-line error and writes nothing. Otherwise the .onnx and its model.json
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

from config.ensemble import DEFAULT_TTA, FUSABLE_TTA, HFLIP_TTA
from dataset.openeds import read_image
from inference.members import Member
from inference.onnx_model import MODEL_JSON_FORMAT, OnnxModel, file_sha256, model_json_path, onnx_session
from inference.predictor import Predictor
from models.export import INPUT_NAME, OPSET, OUTPUT_NAME, FusedEnsemble, export_onnx, quantize_int8
from utils.atomic import atomic_path, write_text_atomic
from utils.errors import InputError

__all__ = ["CLASSES", "THRESHOLDS", "ExportSettings", "agreement", "calibration_frames", "export_members"]

CLASSES = ["background", "sclera", "iris", "pupil"]
THRESHOLDS = {"fp32": 0.999, "int8": 0.995}
HEIGHT, WIDTH = 400, 640


@dataclass
class ExportSettings:
    """Frames are (N, 1, 400, 640) uint8, as the graph takes them; the caller chooses them (export.py:
    rendered eyes, dataset/synthetic/render.eye_frames), so this module needs no renderer."""

    out: Path
    check_frames: np.ndarray  # the graph's class maps are compared with the engine's on these
    check_source: str = "synthetic eye frames"  # what they are, for the error and model.json
    tta: str = DEFAULT_TTA
    int8: bool = False
    calibration: np.ndarray | None = None  # int8: the frames whose activations set the scales
    calibration_source: str | None = None  # what they are, for model.json
    min_agreement: float | None = None  # None: THRESHOLDS[precision]; benchmarks pass 0 to measure any graph


def agreement(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Share of pixels where two class maps (or the argmax of two logit tensors) agree."""
    a, b = (np.asarray(x) for x in (a, b))
    if a.ndim == 4:
        a, b = a.argmax(1), b.argmax(1)
    return float((a == b).mean())


CALIBRATION_FRAMES = 32  # at most, spread evenly over the list: the calibrator holds every activation


def calibration_frames(paths: list[Path]) -> tuple[np.ndarray, str]:
    """At most CALIBRATION_FRAMES of a list's frames, spread evenly over it, and their description."""
    if not paths:
        raise ValueError("no calibration frames")  # read_sample_list refuses an empty list first
    chosen = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(len(paths), CALIBRATION_FRAMES))]
    frames = np.stack([read_image(path)[None] for path in dict.fromkeys(chosen)])
    return frames, f"{len(frames)} frames spread over a list of {len(paths)}"


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
    frames = settings.check_frames
    if (
        frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[1:] != (1, HEIGHT, WIDTH)
        or not len(frames)
    ):
        raise InputError(
            f"check frames must be (N, 1, {HEIGHT}, {WIDTH}) uint8, got {frames.shape} {frames.dtype}"
        )
    if settings.int8 and settings.calibration is None:
        raise InputError("an int8 export needs calibration frames")
    models = [(member.model.cpu().eval(), member.weight) for member in members]
    fused = FusedEnsemble(models, hflip=settings.tta == HFLIP_TTA)
    precision = "int8" if settings.int8 else "fp32"
    with tempfile.TemporaryDirectory() as work, atomic_path(out) as tmp:
        fp32 = Path(work) / "fp32.onnx" if settings.int8 else tmp
        # An example of batch 2: torch.export specialises a dimension of size 1.
        export_onnx(fused, fp32, torch.from_numpy(np.concatenate([frames[:1], frames[:1]])))
        if settings.int8:
            quantize_int8(fp32, tmp, settings.calibration)
        logits = onnx_session(tmp).run([OUTPUT_NAME], {INPUT_NAME: frames})[0]
        # The reference: the engine as every script builds it, pinned to fp32 on the CPU.
        engine = Predictor.build(
            members, tta=settings.tta, device=torch.device("cpu"), precision="fp32"
        ).engine
        reference = engine.logits(torch.from_numpy(frames)).numpy()
        agree = agreement(logits, reference)
        threshold = THRESHOLDS[precision] if settings.min_agreement is None else settings.min_agreement
        if agree < threshold:
            raise InputError(
                f"the {precision} graph agrees with the PyTorch engine on {agree:.4%} of pixels of "
                f"{len(frames)} {settings.check_source}, below the {threshold:.1%} required: not written",
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
            "against": f"the PyTorch engine in fp32 (same members and views) on {settings.check_source}",
        },
        "calibration": (settings.calibration_source or f"{len(settings.calibration)} frames")
        if settings.int8
        else None,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    write_text_atomic(model_json_path(out), json.dumps(info, indent=1) + "\n")
    return info


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
