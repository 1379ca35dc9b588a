"""segment.py's throughput at camera rate, and its measurement accuracy against exact ellipses.

    python -m bench.segment [--student S.pt] [--member M.pt] [--frames 200] [--runs 3]
    python -m bench.avx2 python -m bench.segment ...     # as on an AVX2 CPU (bench/avx2.py)
    python -m bench.segment --accuracy [--checkpoints demo/runs/cpu_fast/fold_*/best.pt]

Throughput (`make bench-segment`, natively then AVX2-limited): a rendered 640 x 400 eye video
(dataset/synthetic/video.py, mp4v) through segment.py's own run (inference/segment_run.py:
decoding, the engine, resizing, measurements, measurements.csv; masks off, `--masks none`), for
- the student: `--student` exported to ONNX with one view (export.py --tta none), onnxruntime;
- a teacher member: `--member` (default weights/default.pt, a cpu_fast ResNet-10-T U-Net)
  exported to ONNX with one view, onnxruntime;
- the teacher ensemble: two such members with hflip, PyTorch (`--member` twice: the compute of
  make demo's two folds).
Each is measured three ways, each in a fresh process (torch's thread count is per process):
"bare", the engine alone (EnsemblePredictor.logits, batch 1, all cores) on the decoded frames
already placed in 640 x 400; segment.py with `--workers 0` (read, segment, measure and write one
frame after another: how segment.py ran before the pipeline); and segment.py as it runs by
default (inference/pipeline.py). Median frames/s over `--runs` runs, after one warm-up frame.

Accuracy (`--accuracy`): the measurement function alone on true 640 x 400 masks of 6 sequences;
then pupil and iris ellipses of the true masks and of the checkpoints' predicted masks on a
`--size` video against the renderer's exact ellipses mapped into the video's pixels: centre
error (px) and diameter error (major axis, %), median and 90th percentile; and frames where the
prediction finds a pupil exactly when the truth has one.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if not __package__:  # run as a file (python bench/segment.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import isa_limit, machine_info
from dataset.synthetic.render import EyeSequence
from dataset.synthetic.video import VideoGeometry, write_eye_video
from evaluation import measure
from evaluation.measure import Ellipse, measure_eye
from inference.frames import open_frames
from inference.segmenter import Segmenter, place_in_model_frame

__all__ = ["main", "errors_against_truth"]

DEFAULT_CHECKPOINTS = "demo/runs/cpu_fast/fold_*/best.pt"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MEMBER = ROOT / "weights" / "default.pt"
MODES = ("bare", "workers 0", "default")


def errors_against_truth(fit: Ellipse | None, truth: tuple[float, ...]) -> tuple[float, float] | None:
    """(centre error px, major-axis error %) of a fitted ellipse, None when none was fitted."""
    if fit is None:
        return None
    return math.hypot(fit.cx - truth[0], fit.cy - truth[1]), 100 * (fit.major / truth[2] - 1)


def _stats(pairs: list[tuple[float, float]]) -> str:
    if not pairs:
        return "- | - | - | -"
    a = np.array(pairs)
    return (
        f"{np.median(a[:, 0]):.2f} | {np.percentile(a[:, 0], 90):.2f} | "
        f"{np.median(np.abs(a[:, 1])):.2f} | {np.percentile(np.abs(a[:, 1]), 90):.2f}"
    )


def truth_accuracy(sequences: int = 6, frames: int = 30, whole_outline: bool = False) -> None:
    """The measurement function alone: true 640 x 400 masks of `sequences` rendered sequences
    against their exact ellipses, split into whole and lid-covered pupils and irises.
    `whole_outline`: fit every outline point, lid edges included (without the occlusion rule)."""
    saved = measure.OCCLUDED_FIT_MIN
    measure.OCCLUDED_FIT_MIN = math.inf if whole_outline else saved
    try:
        _truth_table(
            sequences, frames, "every outline point" if whole_outline else "occluded outline points left out"
        )
    finally:
        measure.OCCLUDED_FIT_MIN = saved


def _truth_table(sequences: int, frames: int, method: str) -> None:
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for index in range(sequences):
        sequence = EyeSequence(seed=0, index=index, frames=frames)
        for n in range(frames):
            measured = measure_eye(sequence.render(n)[1])
            truth = sequence.ellipses(n)
            for name, fit, area in (
                ("pupil", measured.pupil, measured.pupil_area),
                ("iris", measured.iris, measured.pupil_area + measured.iris_area),
            ):
                share = area / (math.pi * truth[name][2] * truth[name][3] / 4)  # of the whole ellipse
                kind = "whole" if share > 0.98 else "covered (40-98% visible)" if share > 0.4 else None
                error = errors_against_truth(fit, truth[name])
                if kind and error:
                    found.setdefault((name, kind), []).append(error)
    print(f"\n## true masks, 640 x 400, {sequences} sequences x {frames} frames; fit: {method}")
    print(
        "\n| ellipse | visible | frames | centre error median (px) | p90 | diameter error median (%) | p90 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for (name, kind), pairs in sorted(found.items()):
        print(f"| {name} | {kind} | {len(pairs)} | {_stats(pairs)} |")


def accuracy(args: argparse.Namespace) -> None:
    """The accuracy tables (module docstring), with the speed of Segmenter.stream per batch size."""
    checkpoints = sorted(path for pattern in args.checkpoints for path in glob.glob(pattern))
    if not checkpoints:
        sys.exit(f"no checkpoints match {args.checkpoints} (run make demo first, or pass --checkpoints)")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    geometry = VideoGeometry(size)

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "eye.mp4"
        sequence = write_eye_video(video, frames=args.frames, fps=10.0, size=size)
        frames = list(open_frames(video).frames())
    truth_accuracy()
    truth_accuracy(whole_outline=True)
    seg = Segmenter.from_checkpoints(checkpoints, tta=args.tta, gpu="cpu")
    info = machine_info()
    print(
        f"# segment.py bench: {len(checkpoints)} checkpoints, tta {args.tta}, {len(frames)} frames {args.size}"
    )
    print(
        f"# {info.get('cpu', '')}; torch threads {info.get('threads', '')}; {isa_limit() or 'native ISA'}; {seg.runtime}"
    )
    print("\n| batch size | segment frames/s | engine alone frames/s |\n|---:|---:|---:|")
    results = None
    for batch_size in args.batch_sizes:
        seg.batch_size = batch_size
        list(seg.stream(frames[:batch_size]))  # warm-up: first calls of a shape build their kernels
        start = time.perf_counter()
        results = list(seg.stream(frames))
        segment_s = time.perf_counter() - start
        # The engine alone on the same frames, already placed in 640 x 400: what segment.py adds
        # (fitting frames in and out, softmax at the input's size, measurements) is the difference.
        canvases = torch.from_numpy(np.stack([place_in_model_frame(f.image)[0] for f in frames]))[:, None]
        start = time.perf_counter()
        for first in range(0, len(frames), batch_size):
            seg.predictor.logits(canvases[first : first + batch_size])
        engine_s = time.perf_counter() - start
        print(f"| {batch_size} | {len(frames) / segment_s:.2f} | {len(frames) / engine_s:.2f} |")

    found = {"true masks": {"pupil": [], "iris": []}, "predicted masks": {"pupil": [], "iris": []}}
    agree = 0
    for n, result in enumerate(results):
        true_mask = geometry.label(sequence.render(n)[1])
        truth = {name: geometry.ellipse(e) for name, e in sequence.ellipses(n).items()}
        measured = {"true masks": measure_eye(true_mask), "predicted masks": result.measurements}
        agree += (measured["true masks"].pupil_area > 0) == (result.measurements.pupil_area > 0)
        for name in ("pupil", "iris"):
            if getattr(measured["true masks"], name) is None:
                continue  # this class is not visible in the frame
            for kind, m in measured.items():
                error = errors_against_truth(getattr(m, name), truth[name])
                if error is not None:
                    found[kind][name].append(error)
    print("\n| masks | ellipse | frames | centre error median (px) | p90 | diameter error median (%) | p90 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, by_name in found.items():
        for name, pairs in by_name.items():
            print(f"| {kind} | {name} | {len(pairs)} | {_stats(pairs)} |")
    print(f"\npupil found in the prediction exactly when the truth shows one: {agree}/{len(results)} frames")


# --- throughput ------------------------------------------------------------------------------------


def one_run(models: list[str], tta: str, video: Path, mode: str) -> float:
    """frames/s of one mode (MODES) on `video`, in this process (the caller starts a fresh one)."""
    from inference.segment_run import MeasureOptions, run_segmentation

    workers = 0 if mode == "workers 0" else None
    seg = Segmenter.from_checkpoints(models, tta=tta, gpu="cpu", workers=0 if mode == "bare" else workers)
    frames = list(open_frames(video).frames())
    if mode == "bare":
        canvases = torch.from_numpy(np.stack([place_in_model_frame(f.image)[0] for f in frames]))[:, None]
        seg.predictor.logits(canvases[:1])  # warm-up
        start = time.perf_counter()
        for n in range(len(frames)):
            seg.predictor.logits(canvases[n : n + 1])
        return len(frames) / (time.perf_counter() - start)
    seg.segment(frames[:1])  # warm-up
    with tempfile.TemporaryDirectory() as out:
        summary = run_segmentation(
            seg, open_frames(video), Path(out), masks="none", progress=False, options=MeasureOptions()
        )
    return summary.frames_per_s


def throughput(args: argparse.Namespace) -> None:
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video, short = tmp_path / "eye.mp4", tmp_path / "eye_short.mp4"
        write_eye_video(video, frames=args.frames, fps=30.0, size=(640, 400))
        write_eye_video(short, frames=min(args.frames, args.teacher_frames), fps=30.0, size=(640, 400))
        rows = []
        if args.student:
            rows.append(
                ("student (ONNX, 1 view)", [_export(args.student, tmp_path / "student.onnx")], "none")
            )
        member = _export(args.member, tmp_path / "member.onnx")
        rows.append(("teacher member (ONNX, 1 view)", [member], "none"))
        rows.append(("teacher ensemble (PyTorch, 2 members x hflip)", [str(args.member)] * 2, "hflip"))
        print(f"# segment.py throughput: 640 x 400, {args.frames} frames ({args.teacher_frames} for the ensemble), masks none, measurements.csv; "
              f"median of {args.runs} runs")  # fmt: skip
        print(f"# {info.get('cpu', '')}; {info.get('threads', '')} threads; {isa_limit() or 'native ISA'}")
        print("\n| model | bare engine frames/s | segment.py --workers 0 | segment.py (pipelined) | "
              "pipelined / bare | pipelined / workers 0 |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        results = {}
        for name, models, tta in rows:
            fps = {}
            for mode in MODES:
                runs = [
                    _child(models, tta, short if "ensemble" in name else video, mode)
                    for _ in range(args.runs)
                ]
                fps[mode] = statistics.median(runs)
            results[name] = fps
            print(f"| {name} | {fps['bare']:.1f} | {fps['workers 0']:.1f} | {fps['default']:.1f} | "
                  f"x{fps['default'] / fps['bare']:.2f} | x{fps['default'] / fps['workers 0']:.2f} |", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "isa": isa_limit(), "fps": results}, indent=1)
        )


def _export(checkpoint: Path, out: Path) -> str:
    subprocess.run([sys.executable, str(ROOT / "export.py"), "--checkpoint", str(checkpoint), "--out", str(out),
                    "--tta", "none"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return str(out)


def _child(models: list[str], tta: str, video: Path, mode: str) -> float:
    """one_run in a fresh process."""
    spec = json.dumps({"models": models, "tta": tta, "video": str(video), "mode": mode})
    proc = subprocess.run(
        [sys.executable, "-m", "bench.segment", "--child", spec],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--student", type=Path, help="a student checkpoint (train.py --config configs/student.yaml)"
    )
    parser.add_argument("--member", type=Path, default=DEFAULT_MEMBER, help="a teacher member checkpoint")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--teacher-frames", type=int, default=60, help="frames for the slow teacher ensemble")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument(
        "--accuracy", action="store_true", help="the accuracy tables instead (module docstring)"
    )
    parser.add_argument(
        "--checkpoints", nargs="+", default=[DEFAULT_CHECKPOINTS], help="--accuracy: paths or globs"
    )
    parser.add_argument("--size", default="320x200", help="--accuracy: WIDTHxHEIGHT of the video")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4], help="--accuracy")
    parser.add_argument("--tta", default="hflip", help="--accuracy")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(one_run(spec["models"], spec["tta"], Path(spec["video"]), spec["mode"]))
    elif args.accuracy:
        accuracy(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
