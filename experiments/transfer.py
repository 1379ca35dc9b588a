"""Transfer across camera styles: mIoU of checkpoints on freshly rendered frames of each style.

    python -m experiments.transfer --checkpoints weights/default.pt [--styles classic,headset,closeup,remote]
                             [--frames 60] [--seed 12345] [--json scores.json]

Frames come from dataset/synthetic/stream.RenderedFrames with a seed of their own, so none of
them is a frame any training run rendered (training streams use the config's seed). The score is
the project's metric (evaluation/metrics.py: per-frame mIoU, classes absent from both count 1),
through segment.py's engine (inference/segmenter.Segmenter) at the given TTA. Leave-one-style-out:
train with `--set data.render.styles=[...]` without a style, then score that style here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a file: import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.synthetic.stream import RenderedFrames
from dataset.synthetic.style import STYLES, parse_styles
from evaluation.metrics import SegmentationMeter
from inference.frames import Frame
from inference.segmenter import Segmenter
from utils.atomic import write_text_atomic
from utils.errors import cli_entry

__all__ = ["score_styles", "main"]


def score_styles(segmenter: Segmenter, styles: tuple[str, ...], frames: int, seed: int) -> dict[str, dict]:
    """{style: {"miou", "per_class_iou", "n_images"}} over `frames` fresh frames of each style."""
    out = {}
    for style in styles:
        meter, rendered = SegmentationMeter(), RenderedFrames([style], frames, seed)
        for start in range(0, frames, 8):
            items = [rendered[i] for i in range(start, min(frames, start + 8))]
            batch = [
                Frame(item["image"][0].numpy(), i, None, item["name"], style) for i, item in enumerate(items)
            ]
            predicted = np.stack([result.mask for result in segmenter.segment(batch)])
            meter.update(predicted, np.stack([item["mask"].numpy() for item in items]))
        metrics = meter.compute()
        out[style] = {
            "miou": round(float(metrics["miou"]), 4),
            "per_class_iou": [round(float(v), 4) for v in metrics["per_class_iou"]],
            "n_images": int(metrics["n_images"]),
        }
    return out


@cli_entry
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", nargs="+", required=True)
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated (default: every style)")
    parser.add_argument("--frames", type=int, default=60, help="fresh frames per style")
    parser.add_argument(
        "--seed", type=int, default=12345, help="of the rendered frames (not a training seed)"
    )
    parser.add_argument("--tta", default="hflip")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args(argv)
    styles = parse_styles(args.styles)
    segmenter = Segmenter.from_checkpoints(args.checkpoints, tta=args.tta, gpu="cpu")
    began = time.perf_counter()
    scores = score_styles(segmenter, styles, args.frames, args.seed)
    result = {"checkpoints": [str(c) for c in args.checkpoints], "frames_per_style": args.frames,
              "seed": args.seed, "tta": args.tta, "styles": scores}  # fmt: skip
    print(
        f"{'style':<9} {'mIoU':>7}  bg / sclera / iris / pupil IoU ({args.frames} fresh frames each, tta {args.tta})"
    )
    for style, row in scores.items():
        print(f"{style:<9} {row['miou']:7.4f}  " + " / ".join(f"{v:.3f}" for v in row["per_class_iou"]))
    print(f"({time.perf_counter() - began:.0f} s)")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
