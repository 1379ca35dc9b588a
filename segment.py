"""Segment your own eye images, folders and videos: masks, overlays, pupil and iris measurements.

    python segment.py --input eye.mp4 --out seg          # the default model, weights/default.pt
    python segment.py --checkpoints runs/cpu_fast/fold_0/best.pt runs/cpu_fast/fold_1/best.pt \\
        --input eye.mp4 --out seg --overlay
    python segment.py --ensemble configs/ensemble.yaml --input frames/ --out seg --masks npy
    python segment.py --checkpoints best.pt --input 0 --out live --max-frames 600 --preview   # camera 0

--input: an image (png, jpg, bmp, tiff; 8- or 16-bit; gray or colour), a folder of them
(recursive, natural order), a video OpenCV reads, or a camera index (Ctrl-C or --max-frames ends
it). Frames of any size are fitted into the models' 640 x 400 (a plain resize at the same 1.6
aspect, else centred on black padding) and the class maps brought back to the input's size.

--out gets masks/ (values 0..3), measurements.csv (one row per frame, written as frames finish:
pupil and iris ellipses, areas, open, confidence, pupil fit checks and pupil_confidence, blink;
with --mm-per-px or --iris-mm the pupil diameter in mm, with --smooth the one-euro filtered pupil
centre and diameter, dropped), summary.json; with --overlay overlays/ (images) or overlay.mp4 (a
video or camera, H.264); for a video or camera pupil.png (pupil diameter and centre over time,
blinks shaded). README, "Segment your own images and videos", gives the meaning of every column.

Frames are read, segmented (--workers engine calls side by side) and written in separate threads,
in order. A camera's frames that arrive while the engine is behind are not queued but written as
dropped rows (--no-drop: queue them all), so a live run keeps up with its camera.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2

from config.ensemble import DEFAULT_TTA, TTA_NAMES
from evaluation.blinks import DEFAULT_BLINK_GAP, DEFAULT_BLINK_MIN, parse_span
from inference.engine import DEFAULT_MIN_AREA
from inference.frames import open_frames
from inference.segment_run import (
    MASK_FORMATS,
    MeasureOptions,
    prepare_output_dir,
    read_measurements,
    run_segmentation,
)
from inference.segmenter import Segmenter, SegmentResult
from runtime.device import PRECISIONS
from utils.cli import HelpFormatter
from utils.errors import InputError, cli_entry
from viz.segmentation import draw_segmentation, plot_pupil

EXIT_CTRL_C = 130
# The shipped default model (make pretrain, weights/default.json), used when no model is named.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    models = parser.add_mutually_exclusive_group()
    models.add_argument(
        "--checkpoints", nargs="+",
        help=f"checkpoints, weight 1 each (configs embedded); with neither this nor --ensemble: {DEFAULT_WEIGHTS}",
    )  # fmt: skip
    models.add_argument(
        "--ensemble", type=Path, help="ensemble YAML: members (checkpoint globs, weights), tta"
    )
    parser.add_argument(
        "--input", required=True, help="image, folder of images, video file, or camera index (0)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--tta", choices=TTA_NAMES, help=f"overrides the ensemble file's (default {DEFAULT_TTA})"
    )
    parser.add_argument(
        "--masks", choices=MASK_FORMATS, default="png",
        help="mask files (default png); labelme: the frames and their masks as a LabelMe project in OUT/labelme, "
        "to correct and import (python -m dataset.importers labelme --src OUT/labelme --out DATA)",
    )  # fmt: skip
    parser.add_argument("--overlay", action="store_true", help="also write overlays (PNGs, or overlay.mp4)")
    parser.add_argument("--gpu", help="CUDA device (0), or cpu (default: cuda:0 if present)")
    parser.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto")
    parser.add_argument(
        "--batch-size", type=int, help="frames per engine call (default 8 on CUDA, 1 on a CPU)"
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument(
        "--workers", type=int,
        help="engine calls side by side, each on its share of the cores; 0: no threads (default 2, 1 on one core)",
    )  # fmt: skip
    parser.add_argument(
        "--no-drop", action="store_true",
        help="a camera: segment every frame however far behind it falls (default: frames the engine has no "
        "room for are written as dropped rows)",
    )  # fmt: skip
    parser.add_argument(
        "--preview", action="store_true",
        help="show each segmented frame in a window (q or Esc ends the run); needs OpenCV with a GUI "
        "(pip install opencv-python) and a display",
    )  # fmt: skip
    parser.add_argument(
        "--min-area", default=str(DEFAULT_MIN_AREA),
        help="drop a class (but background) from a frame where it covers fewer pixels of the models' 640 x 400 "
        f"frame than this, as predict_ensemble.py's --min-area (default {DEFAULT_MIN_AREA}: off)",
    )  # fmt: skip
    parser.add_argument(
        "--blink-min", default=f"{DEFAULT_BLINK_MIN.value:g}",
        help="shortest blink: frames (3) or milliseconds (80ms, a video or camera) "
        f"(default {DEFAULT_BLINK_MIN})",
    )  # fmt: skip
    parser.add_argument(
        "--blink-gap", default=f"{DEFAULT_BLINK_GAP.value:g}",
        help="frames with a pupil (or ms) between two runs without one that still make one blink "
        f"(default {DEFAULT_BLINK_GAP})",
    )  # fmt: skip
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--mm-per-px", type=float, help="millimetres per pixel at the pupil: adds pupil_diameter_mm"
    )
    scale.add_argument(
        "--iris-mm", type=float,
        help="the iris's diameter in mm (about 11.7 in adults): adds pupil_diameter_mm, scaled per frame by the "
        "fitted iris",
    )  # fmt: skip
    parser.add_argument(
        "--smooth", action="store_true",
        help="add the pupil centre and diameter smoothed over time (one-euro filter; a video or camera)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of an earlier run in --out"
    )
    return parser.parse_args(argv)


def open_preview(title: str) -> Callable[[SegmentResult], bool]:
    """A window showing each segmented frame; the callable returns False once q or Esc is pressed."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise InputError("--preview needs a display (no DISPLAY or WAYLAND_DISPLAY is set)")
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise InputError(
            "--preview needs OpenCV with a GUI: this one has none (opencv-python-headless); "
            "pip uninstall opencv-python-headless, then pip install opencv-python"
        ) from None

    def show(result: SegmentResult) -> bool:
        cv2.imshow(title, draw_segmentation(result))
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    return show


@cli_entry
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if (args.batch_size is not None and args.batch_size < 1) or (
        args.max_frames is not None and args.max_frames < 1
    ):
        raise InputError("--batch-size and --max-frames must be >= 1")
    if args.min_area == "auto":
        raise InputError(
            "--min-area auto reads the members' training labels (predict_ensemble.py --data-dir); "
            "segment.py has none: give a number of pixels"
        )
    if not args.min_area.isdigit():
        raise InputError(f"--min-area must be a whole number of pixels, got {args.min_area!r}")
    options = MeasureOptions(
        parse_span(args.blink_min, "--blink-min"),
        parse_span(args.blink_gap, "--blink-gap"),
        args.mm_per_px,
        args.smooth,
        args.iris_mm,
    )
    source = open_frames(args.input, exclude=args.out)
    options.check(source)
    checkpoints = args.checkpoints
    if checkpoints is None and args.ensemble is None:  # a user's own models always win
        if not DEFAULT_WEIGHTS.is_file():
            raise InputError(
                "no model named (--checkpoints or --ensemble) and the default model is missing",
                DEFAULT_WEIGHTS,
            )
        checkpoints = [str(DEFAULT_WEIGHTS)]
    preview = open_preview(source.label) if args.preview else None
    segmenter = Segmenter.from_checkpoints(
        checkpoints, args.ensemble, args.tta, args.gpu, args.precision, args.batch_size, int(args.min_area),
        args.workers,
    )  # fmt: skip
    prepare_output_dir(args.out, args.overwrite)
    print(f"{source.kind} {source.label}: {len(segmenter.members)} models; {segmenter.runtime}")
    overlay = draw_segmentation if args.overlay else None
    summary = run_segmentation(
        segmenter, source, args.out, args.masks, overlay, args.max_frames, options=options,
        drop=False if args.no_drop else None, preview=preview,
    )  # fmt: skip
    if source.is_stream and summary.frames:
        plot_pupil(
            read_measurements(args.out / "measurements.csv"), args.out / "pupil.png", title=source.label
        )
    print(
        f"segmented {summary.frames} frames in {summary.seconds:.1f} s: {summary.frames_per_s:.1f} frames/s "
        f"({summary.engine_frames_per_s:.1f} frames/s in the engine); {len(summary.blinks)} blinks; "
        f"pupil fits refused in {summary.pupil_fits['refused']} -> {args.out}"
    )
    if summary.dropped:
        print(
            f"dropped {summary.dropped} frames the engine had no room for (rows marked dropped); a lighter model, "
            "--tta none or --no-drop avoid it"
        )
    if summary.error:
        raise InputError(summary.error)
    if summary.ended == "ctrl-c":
        print(f"stopped by Ctrl-C after {summary.frames} frames; their outputs are written")
        if source.kind != "camera":
            sys.exit(EXIT_CTRL_C)


if __name__ == "__main__":
    main()
