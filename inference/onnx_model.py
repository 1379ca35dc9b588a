"""An exported ONNX graph (export.py) as a member of the one engine, run by onnxruntime.

`model.onnx` comes with `model.json` beside it (the same name with .json): its classes, input
contract, the TTA views the graph already averages (`tta`), its precision, sources and the
agreement measured at export. `load_onnx_model` checks both and returns an `OnnxModel`, an
nn.Module the engine calls like a SegmentationModel: uint8 frames (B, 1, H, W) in, logits
(B, C, H, W) out. The engine passes frames once to a graph whose fused views are the run's own
(inference/engine.py), applies its views to a graph exported with `tta: none`, and refuses
any other mix.

Threads: onnxruntime runs with as many intra-op threads as torch uses in this process
(`torch.get_num_threads()`, which follows OMP_NUM_THREADS and the CPU affinity), and one
inter-op thread, so an ONNX member takes the cores a PyTorch one would, no more; its threads
sleep instead of spinning between operators.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from config.ensemble import FUSABLE_TTA
from models.export import INPUT_NAME, OUTPUT_NAME
from utils.errors import InputError
from utils.sidecar import read_sidecar

__all__ = [
    "MODEL_JSON_FORMAT",
    "OnnxModel",
    "model_json_path",
    "load_onnx_model",
    "onnx_session",
    "file_sha256",
]

MODEL_JSON_FORMAT = "openeds-seg-onnx/1"


def model_json_path(onnx_path: Path | str) -> Path:
    """model.onnx -> model.json (the same folder and name)."""
    return Path(onnx_path).with_suffix(".json")


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def onnx_session(path: Path | str, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with all graph optimisations and this process's thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # No busy-waiting between operators: spinning threads take the cores from the DataLoader
    # workers and from anything else running (BENCHMARKS.md: x1.8 slower with it on a busy 2-core CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings would break the one-line output
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """An onnxruntime session behind the SegmentationModel call the engine makes.

    `fused_tta` names the views the graph averages inside (`none` or `hflip`); `scale` is 1.0:
    the graph carries its own input scale, so only views at the graph's own scale can be run.
    """

    def __init__(self, path: Path, session: Any, info: dict[str, Any]) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = session
        self.info = info
        self.fused_tta: str = info["tta"]
        self.scale = 1.0

    def forward(self, frames: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if scale not in (None, 1.0):
            raise InputError(
                "an exported graph runs at the scale it was exported with: TTA views at other scales "
                "(hflip+scales) need the checkpoints, not the .onnx",
                self.path,
            )
        if frames.dtype != torch.uint8:
            frames = frames.float().round().clamp(0, 255).to(torch.uint8)
        array = np.ascontiguousarray(frames.detach().cpu().numpy())
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0]
        return torch.from_numpy(logits).to(frames.device)  # the CPU provider; CUDA members may sit beside it

    def to_channels_last(self) -> OnnxModel:
        """Nothing to do: onnxruntime chooses its own layouts."""
        return self


class ModelInfo(BaseModel):
    """model.json, as export.py writes it (inference/export.py); the keys read back are checked."""

    model_config = ConfigDict(extra="allow")
    format: Literal[MODEL_JSON_FORMAT]  # type: ignore[valid-type]
    sha256: str
    num_classes: int = Field(ge=2)
    tta: Literal[FUSABLE_TTA]  # type: ignore[valid-type] - the views a graph can fuse
    input: dict[str, Any]
    output: dict[str, Any]
    sources: list[Any]


def _read_info(onnx_path: Path) -> dict[str, Any]:
    json_path = model_json_path(onnx_path)
    if not json_path.is_file():
        raise InputError(
            f"{json_path.name} not found beside it (export.py writes the two together; keep them together)",
            onnx_path,
        )
    return read_sidecar(json_path, ModelInfo, "model.json of export.py").model_dump()


def load_onnx_model(path: Path | str) -> OnnxModel:
    """Check an exported .onnx and its model.json, and open it in onnxruntime.

    One-line InputError for a missing file, a missing or foreign model.json (its sha256 must be
    the .onnx's), an unreadable graph, or a graph whose input/output is not the contract's.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("ONNX model not found", path)
    info = _read_info(path)
    digest = file_sha256(path)
    if info["sha256"] != digest:
        raise InputError(
            f"does not match {model_json_path(path).name} (sha256 {digest[:12]}... vs "
            f"{str(info['sha256'])[:12]}... recorded at export): the graph or its model.json was replaced",
            path,
        )
    try:
        session = onnx_session(path)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
        detail = " ".join(str(exc).split())[:160]
        raise InputError(f"not a readable ONNX graph ({type(exc).__name__}: {detail})", path) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if (
        len(inputs) != 1
        or inputs[0].name != INPUT_NAME
        or inputs[0].type != "tensor(uint8)"
        or not any(output.name == OUTPUT_NAME and output.type == "tensor(float)" for output in outputs)
    ):
        raise InputError(
            f"graph's input/output is not '{INPUT_NAME}' uint8 -> '{OUTPUT_NAME}' float32 (export it with export.py)",
            path,
        )
    return OnnxModel(path, session, info)
