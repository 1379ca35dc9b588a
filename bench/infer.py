"""Inference throughput: the engine (EnsemblePredictor over a DataLoader, as predict_ensemble.py
runs it) against the recipe's naive loop, on the same checkpoints, one lever at a time.

Models: 2 members of the cpu_fast architecture (U-Net with configs/cpu_fast.yaml's encoder and
slim decoder; fp32, NCHW) at full resolution (input.scale 1.0, 400 -> 416 rows padded), with the recipe's
3-channel ImageNet input, so the naive loop's numpy pre-processing is the recipe's own. They
are random-init (no pretrained weights here), with BatchNorm statistics calibrated on a few
frames so activations and predictions are not degenerate; saved and loaded as checkpoints.

    python -m bench.infer --frames 16 [--compile] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

if not __package__:  # run as a file (python bench/infer.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import synthetic_data
from bench.naive import naive_predict
from config.ensemble import spec_from_checkpoints
from config.schema import Config, load_config
from dataset.openeds import OpenEDSIndex, UnlabeledDataset, image_relpath, read_image
from inference.engine import EnsemblePredictor
from inference.members import Member, load_members
from models.checkpoint import save_checkpoint
from models.zoo import build_model
from runtime.device import autocast_context

__all__ = ["BENCH_CONFIG", "BENCH_OVERRIDES", "make_checkpoints", "run_engine", "LEVERS", "run_levers"]

ROOT = Path(__file__).resolve().parents[1]
BENCH_CONFIG = ROOT / "configs" / "cpu_fast.yaml"
BENCH_OVERRIDES = [
    # The engine's levers are switched by the bench, not by the config.
    "channels_last=false",
    "cpu_bf16=false",
    "input.scale=1.0",
    "in_channels=3",
    "input.normalize={mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}",
]


def make_checkpoints(
    out_dir: Path, data_dir: Path, config: Config, count: int = 2, calibration_frames: int = 4
) -> list[Path]:
    """`count` random-init models (seeds 0..count-1) with BatchNorm statistics from real frames."""
    keys = OpenEDSIndex.from_dir(data_dir).all_keys()[:calibration_frames]
    frames = torch.stack([torch.from_numpy(read_image(data_dir / image_relpath(key)))[None] for key in keys])
    paths = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = build_model(config)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration pass
        model.train()
        with torch.no_grad():
            model(frames)
        path = Path(out_dir) / f"member_{seed}.pt"
        save_checkpoint(
            {"model": model.state_dict(), "config": config.model_dump(mode="json"), "epoch": 0}, path
        )
        paths.append(path)
    return paths


class SeparateViewsPredictor(EnsemblePredictor):
    """The engine with one forward pass per view (the recipe's way), to measure the batched views."""

    def _model_logits(self, model: torch.nn.Module, frames: torch.Tensor) -> torch.Tensor:
        total = None
        for view in self.views:
            batch = frames.flip(-1) if view.hflip else frames
            with autocast_context(self.device, self.amp_dtype):
                logits = model(batch, scale=getattr(model, "scale", 1.0) * view.scale).float()
            logits = logits.flip(-1) if view.hflip else logits
            total = logits if total is None else total + logits
        return total


class NoGradPredictor(EnsemblePredictor):
    """The engine under no_grad instead of inference_mode."""

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = frames.to(self.device)
        mean = None
        for model, weight in self.members:
            logits = self._model_logits(model, frames) * weight
            mean = logits if mean is None else mean + logits
        confidence, labels = (mean * self._norm).softmax(dim=1).max(dim=1)
        return labels.to(torch.uint8), confidence


@dataclass(frozen=True)
class Setting:
    """One engine configuration; the default is what predict_ensemble.py does on a CPU."""

    batch_size: int = 8
    workers: int = 2
    prefetch: int = 2
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    device: str = "cpu"
    predictor: type[EnsemblePredictor] = EnsemblePredictor


def run_engine(
    members: list[Member], data_dir: Path, keys: list[str], setting: Setting
) -> tuple[np.ndarray, float, float]:
    """Class maps (N, H, W), seconds for all frames, and seconds of the warm-up batch (compile included)."""
    models = []
    for member in members:
        model = member.model
        if setting.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if setting.compile:
            model.net = torch.compile(model.net)
        models.append((model, member.weight))
    predictor = setting.predictor(models, tta="hflip", device=setting.device, amp_dtype=setting.amp_dtype)
    dataset = UnlabeledDataset(data_dir, keys)
    warm = torch.stack([dataset[i]["image"] for i in range(min(setting.batch_size, len(keys)))])
    start = time.perf_counter()
    predictor.predict(warm)  # oneDNN primitives (and compiled graphs) for this batch shape
    warmup = time.perf_counter() - start
    loader = DataLoader(
        dataset,
        batch_size=setting.batch_size,
        num_workers=setting.workers,
        prefetch_factor=setting.prefetch if setting.workers else None,
        pin_memory=setting.device != "cpu",
    )
    start = time.perf_counter()
    labels = [batch_labels.numpy() for _, batch_labels, _ in predictor.predict_batches(loader)]
    seconds = time.perf_counter() - start
    for member in members:  # leave the shared models as they were
        member.model.to("cpu", memory_format=torch.contiguous_format)
        member.model.net = getattr(member.model.net, "_orig_mod", member.model.net)
    return np.concatenate(labels), seconds, warmup


BF16 = torch.bfloat16
# (name, setting, what it changes against the engine default). Measured one by one.
LEVERS: list[tuple[str, Setting, str]] = [
    ("engine default", Setting(), "batch 8, views in one batch, fp32, inference_mode, 2 workers"),
    ("batch 1", Setting(batch_size=1), "batch 1 instead of 8"),
    ("views as separate passes", Setting(predictor=SeparateViewsPredictor), "one forward pass per view"),
    ("no_grad", Setting(predictor=NoGradPredictor), "no_grad instead of inference_mode"),
    ("workers 0", Setting(workers=0), "decode in the main process"),
    ("prefetch 4", Setting(prefetch=4), "prefetch_factor 4 instead of 2"),
    ("channels_last", Setting(channels_last=True), "channels_last weights (CPU)"),
    ("bf16 autocast", Setting(amp_dtype=BF16), "bf16 autocast"),
    ("batch 1 + channels_last", Setting(batch_size=1, channels_last=True), "fp32: the best fp32 combination"),
    (
        "batch 1 + channels_last + bf16",
        Setting(batch_size=1, channels_last=True, amp_dtype=BF16),
        "the fp32 combination plus bf16 (fast only with AMX)",
    ),
]
# On CUDA (bench/gpu_smoke.sh): what predict_ensemble.py does there (fp16 autocast, channels_last).
FP16 = torch.float16
CUDA_LEVERS: list[tuple[str, Setting, str]] = [
    ("engine fp32", Setting(device="cuda"), "batch 8, views in one batch, fp32"),
    ("engine fp16", Setting(device="cuda", amp_dtype=FP16), "fp16 autocast (predict_ensemble.py's auto)"),
    ("engine fp16 + channels_last", Setting(device="cuda", amp_dtype=FP16, channels_last=True), "as above"),
]
COMPILE_LEVER = ("torch.compile", Setting(batch_size=1, channels_last=True, compile=True), "inductor, fp32")


def run_levers(
    work_dir: Path,
    frames: int = 16,
    compile: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    levers: list[tuple[str, Setting, str]] | None = None,
) -> dict:
    """Naive loop and every lever on the same `frames` frames and checkpoints; rows for the report."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data_dir = synthetic_data(work_dir / "data")
    config = load_config(BENCH_CONFIG, BENCH_OVERRIDES)
    paths = make_checkpoints(work_dir, data_dir, config)
    members = load_members(spec_from_checkpoints([str(p) for p in paths]))
    keys = OpenEDSIndex.from_dir(data_dir).all_keys()[:frames]

    for member in members:
        member.model.to(device)
    naive_predict([m.model for m in members], data_dir, keys[:1])  # warm-up
    reference, seconds = naive_predict([m.model for m in members], data_dir, keys)
    naive_fps = len(keys) / seconds
    classes = np.bincount(reference.ravel(), minlength=4) / reference.size
    rows = [{"name": "naive loop", "fps": naive_fps, "speedup": 1.0, "agree": 1.0, "note": "the recipe"}]
    log(f"naive loop: {naive_fps:.2f} frames/s (predicted class shares {np.round(classes, 3).tolist()})")
    if levers is None:
        levers = CUDA_LEVERS if device == "cuda" else LEVERS + ([COMPILE_LEVER] if compile else [])
    for name, setting, note in levers:
        labels, seconds, warmup = run_engine(members, data_dir, keys, setting)
        fps = len(keys) / seconds
        agree = float((labels == reference).mean())
        row = {"name": name, "fps": fps, "speedup": fps / naive_fps, "agree": agree, "note": note}
        if setting.compile:
            row["note"] += f", first batch (compile) {warmup:.0f} s"
        rows.append(row)
        log(f"{name}: {fps:.2f} frames/s, x{fps / naive_fps:.2f}, agreement {agree:.4%}")
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": f"2 x {config.network}/{config.encoder}, in_channels 3, scale 1.0 (416x640), random init",
        "frames": len(keys),
        "class_shares": classes.round(3).tolist(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--work-dir", type=Path, help="reuse this folder (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_levers(args.work_dir or Path(tmp), args.frames, args.compile, args.device)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
