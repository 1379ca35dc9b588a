"""segment.py --smooth on a real video: fixation jitter and accuracy, raw and smoothed.

    python -m experiments.pupil_smoothing [--checkpoints weights/default.pt]
        [--video ../shared/real/deepvog/demo.mp4] [--ellipses VIDEO_FOLDER/pupil_ellipses.json]
        [--tta hflip] [--json out.json]

Every frame goes through segment.py's Segmenter and measurement, and its pupil ellipse through
evaluation.smoothing.PupilSmoother as `segment.py --smooth` feeds it (the video's frame times; a
frame without an ellipse restarts it). The video is read where it lies, never copied.
- fixation frames: the labelled centre (pupil_ellipses.json) moves less than FIXATION_STEP_PX at
  each of the FIXATION_STEPS frame steps around the frame (half before, half after);
- jitter: the median frame-to-frame change of the measured centre (px) over the steps between two
  fixation frames, and of the diameter (major axis); and, as the eye drifts during a fixation, the
  jitter about that drift: the median |c(t-1) - 2 c(t) + c(t+1)| of the centre over three
  fixation frames in a row (0 for a steady drift; the labels' own figure is printed beside it);
- accuracy: the centre error against the labels over every labelled frame with an ellipse,
  median and p90 (a smoother that lags behind saccades shows there);
- impossible ellipses: rows longer than the frame's diagonal or centred outside the frame (the
  issue counted 35 of 1,112 on this video with the demo's models), and refused fits;
- pupil_confidence against the labels, a check of its calibration on rendered frames
  (experiments/pupil_confidence.py): of the frames more than 2 px from the labelled centre, and of the
  others, the share below evaluation.measure.PUPIL_CONFIDENCE_THRESHOLD.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from evaluation.measure import PUPIL_CONFIDENCE_THRESHOLD
from evaluation.smoothing import PupilSmoother
from experiments import publish
from experiments.real_eye import DEFAULT_VIDEO
from inference.segmenter import Segmenter
from utils.errors import InputError, cli_entry

__all__ = ["FIXATION_STEP_PX", "FIXATION_STEPS", "pupil_series", "fixation_frames", "compare", "main"]

FIXATION_STEP_PX = 1.0
FIXATION_STEPS = 4
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "default.pt"


def pupil_series(segmenter: Segmenter, video: Path) -> tuple[list[dict], tuple[int, int]]:
    """Per frame: time, fit status, raw and smoothed (cx, cy, major) or None; and the frame size."""
    smoother, rows, shape = PupilSmoother(), [], (0, 0)
    for result in segmenter.video(video):
        shape = result.mask.shape
        pupil = result.measurements.pupil
        raw = None if pupil is None else (pupil.cx, pupil.cy, pupil.major)
        smooth = smoother(
            result.time_s or 0.0, None if raw is None else raw[:2], None if raw is None else raw[2]
        )
        m = result.measurements
        rows.append(
            {
                "time_s": result.time_s,
                "fit": m.pupil_fit,
                "confidence": m.pupil_confidence,
                "raw": raw,
                "smooth": smooth,
            }
        )
    return rows, shape


def fixation_frames(labels: list[dict | None]) -> set[int]:
    """Frames whose labelled centre moves < FIXATION_STEP_PX at each of the FIXATION_STEPS steps around them."""
    centres = np.array([[e["cx"], e["cy"]] if e else [np.nan, np.nan] for e in labels])
    steps = np.hypot(
        *np.diff(centres, axis=0).T
    )  # steps[i]: frame i -> i + 1 (nan next to an unlabelled frame)
    half = FIXATION_STEPS // 2
    return {
        i
        for i in range(half, len(labels) - half)
        if np.all(steps[i - half : i + half] < FIXATION_STEP_PX)  # nan compares False
    }


def _jitter(series: list[tuple[float, ...] | None], fixation: set[int]) -> dict:
    """Median centre and diameter steps between fixation frames, and the centre's bend about its drift."""
    steps, diameter_steps, bends = [], [], []
    for i in range(len(series) - 1):
        value, following = series[i], series[i + 1]
        if value is None or following is None or not {i, i + 1} <= fixation:
            continue
        steps.append(math.dist(value[:2], following[:2]))
        diameter_steps.append(abs(following[2] - value[2]))
        before = series[i - 1] if i > 0 else None
        if before is not None and i - 1 in fixation:
            bends.append(
                math.hypot(
                    *(a - 2 * b + c for a, b, c in zip(before[:2], value[:2], following[:2], strict=True))
                )
            )

    def median(values: list[float]) -> float | None:
        return round(float(np.median(values)), 3) if values else None

    return {
        "fixation_steps": len(steps),
        "centre_jitter_px": median(steps),
        "centre_jitter_about_drift_px": median(bends),
        "diameter_jitter_px": median(diameter_steps),
    }


def compare(rows: list[dict], labels: list[dict | None], shape: tuple[int, int]) -> dict:
    """Jitter in fixations, accuracy against the labels, impossible ellipses: raw and smoothed."""
    fixation = fixation_frames(labels)
    height, width = shape
    out: dict = {
        "frames": len(rows),
        "fixation_frames": len(fixation),
        "refused": sum(row["fit"] == "refused" for row in rows),
        "impossible": sum(
            row["raw"] is not None
            and (
                row["raw"][2] > math.hypot(height, width)
                or not (0 <= row["raw"][0] < width and 0 <= row["raw"][1] < height)
            )
            for row in rows
        ),
    }
    for kind in ("raw", "smooth"):
        series = [row[kind] for row in rows]
        errors = [
            math.hypot(value[0] - truth["cx"], value[1] - truth["cy"])
            for value, truth in zip(series, labels, strict=False)
            if value is not None and truth is not None
        ]
        out[kind] = _jitter(series, fixation) | {
            "centre_error_median_px": round(float(np.median(errors)), 3) if errors else None,
            "centre_error_p90_px": round(float(np.percentile(errors, 90)), 3) if errors else None,
        }
    below: dict[bool, list[bool]] = {True: [], False: []}  # off by > 2 px: below the threshold?
    for row, truth in zip(rows, labels, strict=False):
        if row["raw"] is not None and truth is not None:
            off = math.hypot(row["raw"][0] - truth["cx"], row["raw"][1] - truth["cy"]) > 2.0
            below[off].append(row["confidence"] < PUPIL_CONFIDENCE_THRESHOLD)
    out["pupil_confidence"] = {
        "threshold": PUPIL_CONFIDENCE_THRESHOLD,
        "off_by_over_2px": len(below[True]),
        "their_share_below": round(float(np.mean(below[True])), 4) if below[True] else None,
        "others": len(below[False]),
        "others_share_below": round(float(np.mean(below[False])), 4) if below[False] else None,
    }
    out["labels"] = _jitter([None if e is None else (e["cx"], e["cy"], e["major"]) for e in labels], fixation)
    return out


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", default=[str(DEFAULT_CHECKPOINT)])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--ellipses", type=Path, help="default: pupil_ellipses.json beside the video")
    parser.add_argument("--tta", default="hflip")
    parser.add_argument("--gpu", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    ellipses = args.ellipses or args.video.parent / "pupil_ellipses.json"
    if not ellipses.is_file():
        raise InputError("no pupil_ellipses.json beside the video; give --ellipses", ellipses)
    labels = json.loads(ellipses.read_text())["pupils"]
    segmenter = Segmenter.from_checkpoints(args.checkpoints, tta=args.tta, gpu=args.gpu)
    began = time.perf_counter()
    rows, shape = pupil_series(segmenter, args.video)
    report = {"video": str(args.video), "checkpoints": args.checkpoints, "tta": args.tta}
    report |= compare(rows, labels, shape)
    report["seconds"] = round(time.perf_counter() - began, 1)
    return publish(report, args.json)


if __name__ == "__main__":
    main()
