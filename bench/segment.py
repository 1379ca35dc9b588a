"""segment.py's speed and measurement accuracy on a synthetic eye video with exact geometry.

    python -m bench.segment [--checkpoints demo/runs/cpu_fast/fold_*/best.pt] [--frames 40]
                            [--size 320x200] [--batch-sizes 1 4] [--tta hflip]
    python -m bench.avx2 python -m bench.segment ...   # an AVX2 CPU (bench/avx2.py)

The video is `make demo`'s (dataset/synthetic/video.py: one simulated person, a blink in the
middle, mp4v at 10 fps), rendered at `--size`. Speed: frames/s of Segmenter.stream over the
decoded video (engine, resizing back, measurements; no files), per batch size, after one warm-up
batch, beside the engine alone (EnsemblePredictor.logits) on the same frames placed in 640 x 400. Accuracy: first the measurement function alone on true 640 x 400 masks of 6 sequences; then
pupil and iris ellipses (evaluation/measure.py) of the true masks and of the
checkpoints' predicted masks against the renderer's exact ellipses mapped into the video's
pixels, over the frames whose true mask shows a pupil (or iris): centre error (px) and diameter
error (major axis, %), median and 90th percentile; and frames where the prediction finds a pupil
exactly when the truth has one.
"""

from __future__ import annotations

import argparse
import glob
import math
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", default=[DEFAULT_CHECKPOINTS], help="paths or globs")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="320x200", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tta", default="hflip")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
