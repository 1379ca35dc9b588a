"""Student latency: parameters and batch-1 ms/frame of candidate students (and the teacher),
exported alone to ONNX and timed with onnxruntime and with PyTorch, natively and AVX2-limited.

    python -m bench.student [--models all|NAME,...] [--checkpoint NAME=PATH ...] [--runs 40] [--threads 2]

Every figure is one frame (batch 1, uint8 (1, 1, 400, 640)) through the whole model: normalising,
input scale, padding, the network and the bilinear resize of the logits back to 400 x 640 (the
full-resolution output; the argmax is not timed). The ONNX graph is the model exported alone
with torch.onnx.export (dynamo) here, not export.py's graph. Each model runs in a fresh child
process per ISA setting, alternating native and AVX2-limited (bench.avx2, tools/avx2.py), so both columns
share the machine's conditions.

What the AVX2 columns mean: PyTorch (ATen, oneDNN) honours ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2. onnxruntime does not: its kernels (MLAS) choose from CPUID at start-up,
and no variable or session option caps them. tools/avx2.py hides AVX-512, AVX-VNNI and AMX from
CPUID itself (CPUID faulting), so both runtimes pick their AVX2 kernels. Where this machine cannot
do that (no `cpuid_fault`, no C compiler), the onnxruntime AVX2 column says "AVX-512!": its
figure is then the native kernels' one.

Models are random-init unless a checkpoint is given (latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if not __package__:  # run as a file (python bench/student.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch
from torch import nn

from bench import ISA_LIMIT_VARS, machine_info
from tools.avx2 import LIMIT_VAR, avx2_env, cpuid_library

__all__ = ["CANDIDATES", "TEACHER", "build_candidate", "count_parameters", "time_model", "main"]

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "configs" / "student.yaml"
TEACHER_CONFIG = ROOT / "configs" / "cpu_fast.yaml"
TEACHER = "teacher"  # the demo's ensemble: 2 cpu_fast members x hflip, as predict_ensemble.py runs it

# name -> (config, --set overrides). Unet decoders on tiny timm encoders; "ritnet_size" is the
# RITnet-sized reference: ~0.25M parameters at full resolution, as RITnet runs.
_FPN = "network_params={decoder_pyramid_channels: 32, decoder_segmentation_channels: 32}"
_D16 = "network_params={decoder_channels: [32, 16, 16, 16, 16]}"  # wider last stages than the student
CANDIDATES: dict[str, tuple[Path, list[str]]] = {
    "ritnet_size": (STUDENT, ["encoder=tu-lcnet_035", "input.scale=1.0"]),
    "unet_lcnet035_s04": (STUDENT, ["encoder=tu-lcnet_035", "input.scale=0.4"]),
    "unet_mnv3s050_s05": (STUDENT, ["encoder=tu-mobilenetv3_small_050", "input.scale=0.5"]),
    "fpn_lcnet035_s04": (STUDENT, ["network=fpn", "encoder=tu-lcnet_035", "input.scale=0.4", _FPN]),
    "fpn_mnv3s050_s05": (
        STUDENT,
        ["network=fpn", "encoder=tu-mobilenetv3_small_050", "input.scale=0.5", _FPN],
    ),
    "unet_lcnet035_s05_d16": (STUDENT, ["encoder=tu-lcnet_035", "input.scale=0.5", _D16]),
    "unet_lcnet035_s03_d16": (STUDENT, ["encoder=tu-lcnet_035", "input.scale=0.3", _D16]),
    "unet_lcnet035_s025_d16": (STUDENT, ["encoder=tu-lcnet_035", "input.scale=0.25", _D16]),
    "unet_mnv3s050_s04_d16": (STUDENT, ["encoder=tu-mobilenetv3_small_050", _D16]),
    "dlv3p_mnv3s050_s05": (
        STUDENT,
        [
            "network=deeplabv3plus",
            "encoder=tu-mobilenetv3_small_050",
            "input.scale=0.5",
            "network_params={decoder_channels: 32, encoder_output_stride: 16}",
        ],
    ),  # fmt: skip
    "student": (STUDENT, []),
    "cpu_fast": (TEACHER_CONFIG, []),
    TEACHER: (TEACHER_CONFIG, []),
}


class _Ensemble(nn.Module):
    """Mean logits of members x (frame, flipped frame): the teacher as the engine runs it."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        views = torch.cat([frames, frames.flip(-1)])
        total = None
        for member in self.members:
            plain, flipped = member(views).chunk(2)
            logits = plain + flipped.flip(-1)
            total = logits if total is None else total + logits
        return total / (2 * len(self.members))


def count_parameters(model: nn.Module) -> int:
    return sum(param.numel() for param in model.parameters())


def build_candidate(name: str, checkpoints: dict[str, list[Path]]) -> nn.Module:
    """The named model in eval mode: a checkpoint's (or checkpoints', for the teacher) or random-init."""
    from config.schema import load_config
    from models.checkpoint import model_from_checkpoint
    from models.zoo import build_model

    if name in checkpoints:
        models = [model_from_checkpoint(path)[0].eval() for path in checkpoints[name]]
    else:
        config_path, overrides = CANDIDATES[name]
        config = load_config(config_path, ["encoder_weights=null", *overrides])
        count = 2 if name == TEACHER else 1
        models = [build_model(config).eval() for _ in range(count)]
    return _Ensemble(models).eval() if name == TEACHER else models[0]


def _median_ms(run: object, frames: list, runs: int) -> float:
    for frame in frames[:5]:  # warm-up
        run(frame)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        run(frames[i % len(frames)])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _median_cpu_ms(run: object, frames: list, runs: int) -> float:
    """Median process CPU time of one call: robust to other jobs on the machine (one thread, no spinning)."""
    for frame in frames[:3]:
        run(frame)
    times = []
    for i in range(runs):
        start = time.process_time()
        run(frames[i % len(frames)])
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def time_model(model: nn.Module, threads: int, runs: int) -> dict[str, float]:
    """Batch-1 median ms/frame with onnxruntime (model exported here) and with PyTorch.

    Wall-clock with `threads` threads (the target), and CPU time on one thread (the figure that
    stays put while other jobs share the machine).
    """
    import numpy as np
    import onnxruntime as ort

    from models.zoo import SegmentationModel
    from runtime.hardware import channels_last_choice

    torch.set_num_threads(threads)
    generator = np.random.default_rng(0)
    frames = [generator.integers(0, 256, (1, 1, 400, 640), dtype=np.uint8) for _ in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.from_numpy(frames[0]),), str(path), input_names=["frames"],
                              output_names=["logits"], dynamo=True, verbose=False)  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ort_ms = _median_ms(lambda frame: session.run(None, {"frames": frame}), frames, runs)
        reference = session.run(None, {"frames": frames[0]})[0]
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        single = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ort_cpu1 = _median_cpu_ms(lambda frame: single.run(None, {"frames": frame}), frames, runs)
    with torch.inference_mode():
        expected = model(torch.from_numpy(frames[0])).numpy()
        # PyTorch as the engine runs it here: NHWC where runtime.hardware chooses it (x86).
        if channels_last_choice("auto", torch.device("cpu")).value:
            for member in model.modules():
                if isinstance(member, SegmentationModel):
                    member.to_channels_last()
        torch_ms = _median_ms(lambda frame: model(torch.from_numpy(frame)), frames, runs)
        torch.set_num_threads(1)
        torch_cpu1 = _median_cpu_ms(lambda frame: model(torch.from_numpy(frame)), frames, runs)
    return {"ort_ms": ort_ms, "ort_cpu1_ms": ort_cpu1, "torch_ms": torch_ms, "torch_cpu1_ms": torch_cpu1,
            "max_abs_diff": float(abs(reference - expected).max())}  # fmt: skip


def cache_cost(teacher: list[Path], repeats: int = 6) -> tuple[float, float]:
    """CPU ms (one thread): a student training step per image (batch 4, forward, backward, AdamW)
    and the teacher's probabilities per frame (its members x hflip, as the cache computes them).

    What decides caching the teacher against computing it during training: on the fly, every
    draw of a teacher frame pays the teacher; cached, every frame pays it once.
    """
    from config.schema import load_config
    from inference.engine import EnsemblePredictor
    from models.checkpoint import model_from_checkpoint
    from models.zoo import build_model
    from training.criterion import build_criterion

    torch.set_num_threads(1)
    config = load_config(STUDENT, ["encoder_weights=null"])
    student = build_model(config).to_channels_last().train()
    optimizer = torch.optim.AdamW(student.parameters(), 1e-3)
    criterion = build_criterion(config)
    frames = torch.randint(0, 256, (4, 1, 400, 640), dtype=torch.uint8)
    masks = torch.randint(0, 4, (4, round(400 * config.input.scale), round(640 * config.input.scale)))

    def step() -> None:
        loss = criterion(student(frames, resize_back=False).float(), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    members = [(model_from_checkpoint(path)[0].to_channels_last(), 1.0) for path in teacher]
    predictor = EnsemblePredictor(members, tta="hflip")
    costs = []
    for run, per in ((step, 4), (lambda: predictor.probabilities(frames[:1]), 1)):
        run()
        start = time.process_time()
        for _ in range(repeats):
            run()
        costs.append((time.process_time() - start) / repeats / per * 1000)
    return costs[0], costs[1]


def _child(name: str, checkpoints: dict[str, list[Path]], threads: int, runs: int) -> None:
    model = build_candidate(name, checkpoints)
    result = {"name": name, "params": count_parameters(model), **time_model(model, threads, runs),
              "limit": os.environ.get(LIMIT_VAR, "native")}  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(name: str, args: argparse.Namespace, avx2: bool) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ISA_LIMIT_VARS}
    env = avx2_env(env, warn=False) if avx2 else env
    env |= {"OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "bench.student", "--child", name, "--runs", str(args.runs),
               "--threads", str(args.threads), *sum((["--checkpoint", c] for c in args.checkpoint), [])]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"error: {name} ({'AVX2' if avx2 else 'native'}) failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _parse_checkpoints(items: list[str]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for item in items:
        name, _, path = item.partition("=")
        if name not in CANDIDATES or not path:
            raise SystemExit(
                f"error: --checkpoint expects NAME=PATH with NAME one of {sorted(CANDIDATES)}, got {item!r}"
            )
        found.setdefault(name, []).append(Path(path))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="all", help=f"all, or a comma list of {', '.join(CANDIDATES)}")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="trained weights for a model (repeat NAME=PATH for the teacher's members)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=40, help="timed frames per model and runtime")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cache-cost", action="store_true",
        help="instead: CPU ms of a student training step per image vs the teacher per frame (--checkpoint teacher=...)",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checkpoints = _parse_checkpoints(args.checkpoint)
    if args.child:
        _child(args.child, checkpoints, args.threads, args.runs)
        return
    if args.cache_cost:
        if TEACHER not in checkpoints:
            raise SystemExit(
                "error: --cache-cost needs the teacher's members: --checkpoint teacher=PATH (repeat)"
            )
        step_ms, teacher_ms = cache_cost(checkpoints[TEACHER])
        print(f"student training step: {step_ms:.1f} CPU ms per image (batch 4, 1 thread)")
        print(
            f"teacher probabilities: {teacher_ms:.1f} CPU ms per frame ({len(checkpoints[TEACHER])} members x hflip, 1 thread)"
        )
        return
    names = list(CANDIDATES) if args.models == "all" else args.models.split(",")
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {unknown}; known: {sorted(CANDIDATES)}")
    info = machine_info()
    print(
        f"# bench.student: {info.get('cpu', '')}; {args.threads} threads, batch 1, 400x640 output, median of {args.runs}"
    )
    print(f"wall: {args.threads} threads, ms/frame; cpu1: CPU ms/frame on 1 thread (holds under contention)")
    print(
        "| model | params | ORT wall native | ORT wall AVX2 | ORT cpu1 native | ORT cpu1 AVX2 "
        "| torch wall native | torch wall AVX2 | torch cpu1 native | torch cpu1 AVX2 | frames/s (ORT wall native) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    env_only = False
    for name in names:
        native, avx2 = _run_child(name, args, avx2=False), _run_child(name, args, avx2=True)
        cells = [f"{cell:.1f}" for cell in (native["ort_ms"], avx2["ort_ms"], native["ort_cpu1_ms"], avx2["ort_cpu1_ms"],
                 native["torch_ms"], avx2["torch_ms"], native["torch_cpu1_ms"], avx2["torch_cpu1_ms"])]  # fmt: skip
        if avx2["limit"] != "cpuid":  # onnxruntime ran its AVX-512 kernels: mark its AVX2 cells
            env_only, cells[1], cells[3] = True, cells[1] + "*", cells[3] + "*"
        print(f"| {name} | {native['params'] / 1e6:.3f}M | {' | '.join(cells)} | {1000 / native['ort_ms']:.0f} |",
              flush=True)  # fmt: skip
    if env_only:
        print(f"* not AVX2: {cpuid_library()[1]}; onnxruntime chose its kernels from the real CPUID")


if __name__ == "__main__":
    main()
