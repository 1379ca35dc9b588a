"""Calibrate pupil_confidence on rendered frames: the threshold below which the bad pupils lie.

    python -m experiments.pupil_confidence [--checkpoints weights/default.pt] [--frames 600] [--seed 0]
        [--check-frames 300] [--check-seed 1] [--tta hflip] [--json out.json]

Frame i of dataset/synthetic/stream.RenderedFrames (the headset, closeup and remote styles in
turn) goes through segment.py's Segmenter and measurement; its pupil ellipse is compared with the
renderer's exact one (EyeSequence.ellipses of the same sequence and frame). A frame holding a
pupil ellipse is *bad* when its centre is more than BAD_PX (2 px) from the true centre, or when
the truth shows no pupil pixel at all. The aim: below the threshold lie at least RECALL (90%) of
the bad frames. The threshold is the lowest pupil_confidence below which CALIBRATION_RECALL (93%)
of the calibration frames' (`--seed`) bad frames lie: the margin because the 90% point moves by a
few hundredths between sets of 300 bad frames (a first calibration at exactly 90%, 0.60, held
89.4% of another seed's bad frames). The documented evaluation.measure.PUPIL_CONFIDENCE_THRESHOLD is
checked on both sets, and on held-out frames of another seed (`--check-seed`). Also reported: the share of good frames below the threshold (what
a user loses by dropping flagged frames), and the frames whose fit was refused (no ellipse).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.synthetic.render import EyeSequence
from dataset.synthetic.stream import SEQUENCE_FRAMES, RenderedFrames
from evaluation.measure import PUPIL, PUPIL_CONFIDENCE_THRESHOLD
from experiments import publish
from inference.frames import Frame
from inference.segmenter import Segmenter
from utils.errors import cli_entry

__all__ = [
    "STYLES",
    "BAD_PX",
    "RECALL",
    "CALIBRATION_RECALL",
    "true_pupil",
    "frame_records",
    "threshold_for",
    "summarise",
    "main",
]

STYLES = ("headset", "closeup", "remote")
BAD_PX = 2.0
RECALL = 0.9
CALIBRATION_RECALL = 0.93
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "default.pt"


def true_pupil(frames: RenderedFrames, index: int) -> tuple[float, ...]:
    """The exact pupil ellipse (cx, cy, major, minor, angle) of RenderedFrames frame `index`.

    The same sequence and frame RenderedFrames renders (dataset/synthetic/stream.py).
    """
    style = frames.styles[index % len(frames.styles)]
    sequence = EyeSequence(frames.seed, 10**6 + index, SEQUENCE_FRAMES, style)
    return sequence.ellipses(index * 5 % SEQUENCE_FRAMES)["pupil"]


def frame_records(segmenter: Segmenter, frames: int, seed: int) -> list[dict]:
    """Per frame: style, fit status, pupil_confidence and its parts, centre error (inf: no true pupil)."""
    rendered = RenderedFrames(list(STYLES), frames, seed)
    records = []
    for index in range(frames):
        item = rendered[index]
        result = segmenter.segment([Frame(item["image"][0].numpy(), index, None, item["name"], "")])[0]
        m = result.measurements
        record = {"style": rendered.styles[index % len(STYLES)], "fit": m.pupil_fit, "error": None}
        if m.pupil is not None:
            cx, cy = true_pupil(rendered, index)[:2]
            has_pupil = bool((item["mask"] == PUPIL).any())
            record |= {
                "confidence": m.pupil_confidence,
                "visible": m.pupil_visible,
                "residual": m.pupil_residual,
                "error": math.hypot(m.pupil.cx - cx, m.pupil.cy - cy) if has_pupil else math.inf,
            }
        records.append(record)
    return records


def threshold_for(bad_confidences: list[float], recall: float = RECALL) -> float:
    """The lowest t (2 decimals, rounded up) with at least `recall` of the values below it."""
    if not bad_confidences:
        return 0.0
    values = np.sort(np.asarray(bad_confidences, dtype=float))
    needed = math.ceil(recall * len(values))
    t = math.floor(values[needed - 1] * 100) / 100 + 0.01  # above the needed-th lowest value
    return round(t, 2)


def summarise(records: list[dict], threshold: float) -> dict:
    """Counts and shares at `threshold` (module docstring)."""
    fitted = [r for r in records if r["error"] is not None]
    bad = [r for r in fitted if r["error"] > BAD_PX]
    good = [r for r in fitted if r["error"] <= BAD_PX]
    below_bad = sum(r["confidence"] < threshold for r in bad)
    below_good = sum(r["confidence"] < threshold for r in good)
    return {
        "frames": len(records),
        "with_ellipse": len(fitted),
        "refused": sum(r["fit"] == "refused" for r in records),
        "bad": len(bad),
        "bad_below": below_bad,
        "recall": round(below_bad / len(bad), 4) if bad else None,
        "good_below": below_good,
        "good_below_share": round(below_good / len(good), 4) if good else None,
        "centre_error_median": round(float(np.median([r["error"] for r in fitted])), 3) if fitted else None,
    }


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", default=[str(DEFAULT_CHECKPOINT)])
    parser.add_argument("--frames", type=int, default=600, help="calibration frames (the styles in turn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-frames", type=int, default=300, help="held-out frames (0: none)")
    parser.add_argument("--check-seed", type=int, default=1)
    parser.add_argument("--tta", default="hflip")
    parser.add_argument("--gpu", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    segmenter = Segmenter.from_checkpoints(args.checkpoints, tta=args.tta, gpu=args.gpu)
    began = time.perf_counter()
    calibration = frame_records(segmenter, args.frames, args.seed)
    bad = [r["confidence"] for r in calibration if r["error"] is not None and r["error"] > BAD_PX]
    measured = threshold_for(bad, CALIBRATION_RECALL)
    report = {
        "checkpoints": args.checkpoints,
        "tta": args.tta,
        "styles": list(STYLES),
        "measured_threshold": measured,
        "documented_threshold": PUPIL_CONFIDENCE_THRESHOLD,
        "calibration": summarise(calibration, PUPIL_CONFIDENCE_THRESHOLD),
    }
    if args.check_frames:
        report["held_out"] = summarise(
            frame_records(segmenter, args.check_frames, args.check_seed), PUPIL_CONFIDENCE_THRESHOLD
        )
    report["seconds"] = round(time.perf_counter() - began, 1)
    return publish(report, args.json)


if __name__ == "__main__":
    main()
