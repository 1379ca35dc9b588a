"""Pupils on a real eye video with labelled pupil ellipses (DeepVOG's demo video in ../shared/real).

    python -m experiments.real_eye --checkpoints weights/default.pt
        [--video ../shared/real/deepvog/demo.mp4] [--ellipses VIDEO_FOLDER/pupil_ellipses.json]
        [--tta hflip] [--json out.json]

The video is never copied into the project; this only reads it where it lies. Every frame goes
through segment.py's engine (inference/segmenter.Segmenter) and measurement (evaluation/measure.py).
Against the labelled ellipses (`cx, cy, major, minor, angle`, as cv2.fitEllipse; null where no
pupil is labelled), over the labelled frames:
- pupil found: the share of frames whose mask yields a pupil ellipse;
- centre error: px between the fitted and the labelled centre, median and 90th percentile;
- diameter error: |d - d_true| / d_true with d = sqrt(major * minor), median;
- pupil IoU: class 3 of the mask against the labelled ellipse filled, median.
Black frames (mean gray level under 20, the camera's light off): how many hold a pupil ellipse.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from inference.segmenter import Segmenter
from utils.atomic import write_text_atomic
from utils.errors import InputError, cli_entry

__all__ = ["score_video", "main"]

DEFAULT_VIDEO = Path("../shared/real/deepvog/demo.mp4")
# Mean gray level under which a frame counts as black (DeepVOG's unlit frames sit well below it).
BLACK_LEVEL = 20


def _filled(ellipse: dict, shape: tuple[int, int]) -> np.ndarray:
    """A labelled ellipse as a filled boolean mask (sub-pixel, shift 4).

    The labels' `angle` is cv2.fitEllipse's: the direction of its first box side, which OpenCV
    returns as the shorter one (checked in tests/test_real_eye.py), so the minor axis lies along it.
    """
    canvas = np.zeros(shape, np.uint8)
    centre = (round(ellipse["cx"] * 16), round(ellipse["cy"] * 16))
    axes = (round(ellipse["minor"] * 8), round(ellipse["major"] * 8))
    cv2.ellipse(canvas, centre, axes, ellipse["angle"], 0, 360, 1, -1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def score_video(segmenter: Segmenter, video: Path, labels: list[dict | None]) -> dict:
    """The figures of the module docstring for one video."""
    centre, diameter, iou, found, labelled, black, black_pupil, frames = [], [], [], 0, 0, 0, 0, 0
    began = time.perf_counter()
    for result in segmenter.video(video):
        frames += 1
        truth = labels[result.frame] if result.frame < len(labels) else None
        pupil = result.measurements.pupil
        if float(result.image.mean()) < BLACK_LEVEL:
            black += 1
            black_pupil += pupil is not None
        if truth is None:
            continue
        labelled += 1
        inside = _filled(truth, result.mask.shape)
        predicted = result.mask == 3
        iou.append(float((inside & predicted).sum() / max(1, (inside | predicted).sum())))
        if pupil is None:
            continue
        found += 1
        centre.append(math.hypot(pupil.cx - truth["cx"], pupil.cy - truth["cy"]))
        d_true = math.sqrt(truth["major"] * truth["minor"])
        diameter.append(abs(math.sqrt(pupil.major * pupil.minor) - d_true) / d_true)
    seconds = time.perf_counter() - began

    def q(values: list[float], p: float) -> float | None:
        return round(float(np.percentile(values, p)), 3) if values else None

    return {
        "video": str(video), "frames": frames, "labelled_frames": labelled,
        "pupil_found": round(found / max(1, labelled), 4),
        "centre_error_median": q(centre, 50), "centre_error_p90": q(centre, 90),
        "diameter_error_median": q(diameter, 50), "pupil_iou_median": q(iou, 50),
        "black_frames": black, "black_frames_with_pupil": black_pupil,
        "frames_per_s": round(frames / seconds, 1),
    }  # fmt: skip


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--ellipses", type=Path, help="default: pupil_ellipses.json beside the video")
    parser.add_argument("--tta", default="hflip")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    ellipses = args.ellipses or args.video.parent / "pupil_ellipses.json"
    if not args.video.is_file():
        raise InputError("video not found", args.video)
    try:
        labels = json.loads(ellipses.read_text())["pupils"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"not a pupil ellipse file ({type(exc).__name__})", ellipses) from None
    segmenter = Segmenter.from_checkpoints(args.checkpoints, tta=args.tta, gpu="cpu")
    figures = {"checkpoints": [str(c) for c in args.checkpoints], "tta": args.tta,
               **score_video(segmenter, args.video, labels)}  # fmt: skip
    print(
        f"{args.video}: {figures['frames']} frames, {figures['labelled_frames']} labelled; pupil found "
        f"{figures['pupil_found']:.1%}; centre error median {figures['centre_error_median']} px, p90 "
        f"{figures['centre_error_p90']} px; diameter error median {figures['diameter_error_median']}; "
        f"pupil IoU median {figures['pupil_iou_median']}; black frames with a pupil "
        f"{figures['black_frames_with_pupil']} of {figures['black_frames']}; {figures['frames_per_s']} frames/s"
    )
    if args.json:
        write_text_atomic(args.json, json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
