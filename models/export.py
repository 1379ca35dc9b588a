"""The exportable graph: an ensemble x hflip as one module, and its ONNX file (fp32 or int8).

`FusedEnsemble` takes what an exported model takes, uint8 frames (N, 1, H, W), and returns the
weighted mean logits (N, C, H, W) of its members over the views, so the ONNX graph holds the
whole input pipeline (normalisation, scale, padding, resize back) and the averaging. It runs
fewer operations than the engine's loop over members and views, for the same logits up to
float rounding: members that share an input scale share one downscaled frame; the frame and
its mirror go through each network as one batch; and their logits are averaged at the
network's resolution, then cropped and resized back once (bilinear resizing, flipping and
averaging are all linear, and the half-pixel bilinear grid is mirror-symmetric, so the order
does not change the result beyond rounding).

`export_onnx` writes it with torch.onnx's dynamo exporter (opset 18: the antialiased
downscale is a Resize with `antialias=1`; the TorchScript exporter fails on the model's
`round()` of the scaled size), with a dynamic batch dimension. `quantize_int8` is
onnxruntime's static QDQ quantization of that file, calibrated on given frames.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.zoo import PAD_MULTIPLE, SegmentationModel
from utils.atomic import atomic_path

__all__ = ["FusedEnsemble", "export_onnx", "quantize_int8", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

INPUT_NAME, OUTPUT_NAME = "frames", "logits"
OPSET = 18


class FusedEnsemble(nn.Module):
    """Weighted mean logits of `members` over the views (the frame, and its mirror if `hflip`).

    Shape:
        frames (N, 1, H, W) uint8 or float 0..255 -> logits (N, num_classes, H, W) float32.
    """

    def __init__(self, members: Sequence[tuple[SegmentationModel, float]], hflip: bool) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.models = nn.ModuleList(model.eval() for model, _ in members)
        self.weights = [float(weight) for _, weight in members]
        self.hflip = hflip
        self._norm = 1.0 / (sum(self.weights) * (2 if hflip else 1))
        # Members grouped by input scale: each group shares one downscaled, padded frame.
        self.groups: dict[float, list[int]] = {}
        for index, model in enumerate(self.models):
            self.groups.setdefault(float(model.scale), []).append(index)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        x = frames.float()
        total = None
        for scale, indices in self.groups.items():
            small = x
            if scale != 1.0:
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                small = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            if self.hflip:  # mirrored before padding, as the engine's hflip view is
                small = torch.cat([small, small.flip(-1)])
            h, w = small.shape[-2:]
            ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
            top, left = ph // 2, pw // 2
            if ph or pw:
                small = F.pad(small, (left, pw - left, top, ph - top), value=0.0)
            group = None
            for index in indices:
                model = self.models[index]
                z = small * model._mul + model._add
                if model.in_channels == 3 and z.shape[1] == 1:
                    z = z.expand(-1, 3, -1, -1)
                logits = model.net(z)
                logits = logits[..., top : top + h, left : left + w]
                if self.hflip:
                    count = frames.shape[0]
                    logits = logits[:count] + logits[count:].flip(-1)
                logits = logits * self.weights[index]
                group = logits if group is None else group + logits
            if (h, w) != (height, width):
                group = F.interpolate(group, size=(height, width), mode="bilinear", align_corners=False)
            total = group if total is None else total + group
        return total * self._norm


def export_onnx(module: nn.Module, path: Path, example: torch.Tensor) -> None:
    """Write `module` as ONNX (input `frames`, output `logits`, dynamic N), atomically.

    The dynamo exporter's progress lines and warnings are kept off the console; a failure
    raises with them.
    """
    batch = torch.export.Dim("N", min=1)
    log = io.StringIO()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(log):
            program = torch.onnx.export(
                module.eval(),
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"frames": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
        program.save(str(tmp))


def quantize_int8(fp32_path: Path, path: Path, calibration: np.ndarray) -> None:
    """Static int8 quantization (QDQ, per-channel weights) of an exported graph, atomically.

    calibration: uint8 frames (N, 1, H, W) whose activation ranges set the scales.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{INPUT_NAME: frame[None]} for frame in calibration])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime.quantization logs per tensor
    with tempfile.TemporaryDirectory() as work, atomic_path(path) as tmp:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            _Frames(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
