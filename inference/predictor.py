"""The one front door to the engine: a Predictor built once from members, device, precision, TTA
and batch size (the shape of nnU-Net's predictor), used by predict_ensemble.py, segment.py's
Segmenter, distillation's teacher run and export's check (inference/export.py) alike.

    spec, members = ensemble_members(["fold_0/best.pt", "fold_1/best.pt"], None)
    predictor = Predictor.build(members, spec_tta=spec.tta, gpu="cpu")
    predictor.engine.logits(frames)          # inference/engine.EnsemblePredictor
    print(predictor.runtime)                 # precision, memory layout, exported graphs, and why

What it decides, once for every caller: the device (`--gpu`, runtime/device.select_device),
the autocast precision (`--precision`, runtime.precision_choice), the TTA (the caller's, else the
ensemble file's, else DEFAULT_TTA), the batch size (8 on CUDA, 1 on a CPU, where a camera frame
then waits for no other and batch 4 measured no faster on 2 cores: BENCHMARKS.md), each member's
memory layout (runtime/hardware.channels_last_choice), and the engine's min-area step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from config.ensemble import DEFAULT_TTA, TTA_NAMES
from inference.engine import EnsemblePredictor
from inference.members import Member
from runtime.device import precision_choice, select_device
from runtime.hardware import channels_last_choice
from utils.errors import InputError

__all__ = ["Predictor", "default_batch_size", "runtime_line"]


def default_batch_size(device: torch.device) -> int:
    """Frames per engine call: 8 on CUDA, 1 on a CPU (module docstring)."""
    return 8 if device.type == "cuda" else 1


def runtime_line(members: list[Member], device: torch.device, amp_dtype: torch.dtype | None, why: str) -> str:
    """What a prediction runs with, in one line: precision (and why), memory layout (and why), and
    the exported graphs among the members (onnxruntime runs them as they were exported)."""
    layout = channels_last_choice(members[0].config.channels_last, device)
    precision = "fp32" if amp_dtype is None else str(amp_dtype).replace("torch.", "")
    line = (
        f"precision: {precision} ({why}); channels_last: {'on' if layout.value else 'off'} ({layout.reason})"
    )
    graphs = sum(member.checkpoint.suffix.lower() == ".onnx" for member in members)
    if graphs:
        line += (
            f"; onnxruntime: {graphs} exported graph(s) with the precision and views they were exported with, "
            f"{torch.get_num_threads()} threads (--precision applies to checkpoints only)"
        )
    return line


@dataclass
class Predictor:
    """The engine over loaded members and every setting it runs with (module docstring)."""

    members: list[Member]
    engine: EnsemblePredictor
    device: torch.device
    amp_dtype: torch.dtype | None
    tta: str
    batch_size: int
    min_area: tuple[int, ...] | None
    runtime: str  # one line for the log: precision, memory layout, and why

    @classmethod
    def build(
        cls,
        members: list[Member],
        *,
        tta: str | None = None,
        spec_tta: str | None = None,
        gpu: str | None = None,
        device: torch.device | None = None,
        precision: str = "auto",
        batch_size: int | None = None,
        min_area: tuple[int, ...] | None = None,
        doing: str = "predicting",
    ) -> Predictor:
        """tta: the caller's (--tta), else `spec_tta` (the ensemble file's), else DEFAULT_TTA.
        device: a device already chosen, else `gpu` as every script's --gpu. min_area: per class,
        None or all zeros for off."""
        tta = tta or spec_tta or DEFAULT_TTA
        if tta not in TTA_NAMES:
            raise InputError(f"unknown TTA {tta!r}; choose one of {', '.join(TTA_NAMES)}")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"the batch size must be >= 1, got {batch_size}")
        device = device if device is not None else select_device(gpu, doing=doing)
        amp_dtype, why = precision_choice(precision, device)
        for member in members:
            if channels_last_choice(member.config.channels_last, device).value:
                member.model.to_channels_last()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # the batches of a run have one shape
        min_area = min_area if min_area is not None and any(min_area) else None
        engine = EnsemblePredictor(
            [(member.model, member.weight) for member in members],
            tta=tta,
            device=device,
            amp_dtype=amp_dtype,
            min_area=min_area,
        )
        return cls(
            members=members,
            engine=engine,
            device=device,
            amp_dtype=amp_dtype,
            tta=tta,
            batch_size=batch_size or default_batch_size(device),
            min_area=min_area,
            runtime=runtime_line(members, device, amp_dtype, why),
        )
