"""segment.py's run: a FrameSource through a Segmenter into an output folder.

What it writes in the output folder (every file atomically):

- masks/<name>.png (values 0..3) or .npy, at the input's size: for images <name> is the path
  under the input folder without its suffix; for a video or camera, the frame number 000000..;
  or, with masks "labelme", labelme/<name>.png (the frame) and labelme/<name>.json (the mask as
  LabelMe polygons, dataset.importers.write_labelme) to correct in LabelMe and import back
  (`python -m dataset.importers labelme --src OUT/labelme --out DATA`);
- with an overlay function: overlays/<name>.png per image, or overlay.mp4 (mp4v) for a video;
- measurements.csv: one row per frame read: the columns of evaluation.measure.CSV_COLUMNS, then
  with MeasureOptions.mm_per_px `pupil_diameter_mm`, with .smooth `pupil_cx_smooth`,
  `pupil_cy_smooth`, `pupil_major_smooth` (and `pupil_diameter_mm_smooth` with both;
  evaluation.smoothing), then `blink` (evaluation.blinks). Not written atomically but row by row,
  flushed as frames finish, so a reader can tail it: a row waits only until its blink state is
  known (at most about blink_min + blink_gap frames; evaluation.blinks.BlinkTracker holds those);
- summary.json: input, frames, time, frames/s, blinks, pupil fits, unreadable images, why it ended.

Whatever ends the run (the last frame, --max-frames, Ctrl-C, a video that breaks mid-stream,
unreadable images of a folder), the outputs of every frame read are complete when it returns;
the caller turns `RunSummary.error` into the one-line error. An output folder that holds another
run's outputs is refused unless `overwrite`, which deletes them first. Every file but
measurements.csv is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dataset.importers import write_labelme
from evaluation.blinks import DEFAULT_BLINK_GAP, DEFAULT_BLINK_MIN, BlinkTracker, Span
from evaluation.measure import CSV_COLUMNS
from evaluation.smoothing import PupilSmoother
from inference.frames import BadFrame, FrameSource
from inference.predict import save_npy_atomic
from inference.segmenter import Segmenter, SegmentResult
from utils.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from utils.errors import InputError

__all__ = [
    "MASK_FORMATS",
    "OUTPUT_NAMES",
    "MeasureOptions",
    "RunSummary",
    "prepare_output_dir",
    "read_measurements",
    "run_segmentation",
]

MASK_FORMATS = ("png", "npy", "labelme", "none")
# What a run writes at the top of its folder; their presence marks a folder as holding a run.
OUTPUT_NAMES = ("masks", "labelme", "overlays", "overlay.mp4", "measurements.csv", "pupil.png", "summary.json")
DEFAULT_CAMERA_FPS = 30.0


@dataclass(frozen=True)
class MeasureOptions:
    """Per-run measurement settings: blink rule, physical units, smoothing (README, segment.py)."""

    blink_min: Span = DEFAULT_BLINK_MIN
    blink_gap: Span = DEFAULT_BLINK_GAP
    mm_per_px: float | None = None  # pupil_diameter_mm = pupil_major x mm_per_px
    smooth: bool = False  # one-euro filtered pupil centre and diameter (evaluation.smoothing)

    def check(self, source: FrameSource) -> None:
        """Refuse what the input cannot give: times (ms blink lengths, smoothing) need a video or camera."""
        if self.mm_per_px is not None and not (self.mm_per_px > 0 and np.isfinite(self.mm_per_px)):
            raise InputError(f"--mm-per-px must be a positive number of millimetres, got {self.mm_per_px}")
        needs_times = [
            flag
            for flag, needed in (
                (f"--blink-min {self.blink_min}", self.blink_min.unit == "ms"),
                (f"--blink-gap {self.blink_gap}", self.blink_gap.unit == "ms"),
                ("--smooth", self.smooth),
            )
            if needed
        ]
        if needs_times and not source.is_stream:
            raise InputError(
                f"{' and '.join(needs_times)} {'need' if len(needs_times) > 1 else 'needs'} frame times, "
                "which a video or camera has and "
                f"{'a folder' if source.kind == 'folder' else 'an image'} has not; give blink lengths in frames"
            )

    def columns(self) -> list[str]:
        """measurements.csv's header."""
        extra = ["pupil_diameter_mm"] if self.mm_per_px is not None else []
        if self.smooth:
            extra += ["pupil_cx_smooth", "pupil_cy_smooth", "pupil_major_smooth"]
            extra += ["pupil_diameter_mm_smooth"] if self.mm_per_px is not None else []
        return [*CSV_COLUMNS, *extra, "blink"]


@dataclass
class RunSummary:
    """What a run did (also written as summary.json)."""

    input: str
    kind: str
    frames: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0
    frames_per_s: float = 0.0
    engine_frames_per_s: float = 0.0
    blinks: list[tuple[float | int, float | int]] = field(default_factory=list)  # (first, last) frame numbers
    blink_rule: str = ""
    pupil_fits: dict[str, int] = field(default_factory=lambda: {"ok": 0, "refused": 0, "none": 0})
    bad_images: list[str] = field(default_factory=list)
    ended: str = "end of input"  # or "max frames", "ctrl-c", "broken"
    error: str | None = None  # the one-line error the caller raises, with every output written


def prepare_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the folder; refuse one that holds another run's outputs unless `overwrite`, which clears them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output folder is a file", out_dir)
    present = [name for name in OUTPUT_NAMES if (out_dir / name).exists()]
    if present and not overwrite:
        raise InputError(
            f"holds the outputs of an earlier run ({', '.join(present)}); pass --overwrite to replace them "
            "or choose another folder",
            out_dir,
        )
    for name in present:
        target = out_dir / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder ({exc.strerror})", out_dir) from None


def _encode_png(image: np.ndarray, path: Path) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise InputError("could not encode PNG", path)
    return data.tobytes()


def _cell(key: str, value: object) -> object:
    """Empty for an absent value; pixels, degrees, mm and seconds to 3 decimals, confidences to 4."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if key.endswith("confidence") else f"{value:.3f}"
    return value


class _Writers:
    """The per-frame outputs of one run: masks, overlays (PNGs or one video).

    The overlay video is written to a temporary file entered on `stack`: it is renamed into place
    when the run's `with` block ends, Ctrl-C and a broken input included, and deleted if the run
    fails with an exception.
    """

    def __init__(
        self,
        out_dir: Path,
        source: FrameSource,
        masks: str,
        overlay: Callable[[SegmentResult], np.ndarray] | None,
        stack: contextlib.ExitStack,
    ) -> None:
        self.out_dir, self.source, self.masks, self.overlay, self.stack = (
            out_dir,
            source,
            masks,
            overlay,
            stack,
        )
        self.video: cv2.VideoWriter | None = None

    def add(self, result: SegmentResult) -> None:
        if self.masks == "labelme":
            frame = self.out_dir / "labelme" / f"{result.name}.png"
            frame.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(frame, _encode_png(result.image, frame), "frame")
            write_labelme(result.mask, frame.name, frame.with_suffix(".json"))
        elif self.masks != "none":
            path = self.out_dir / "masks" / f"{result.name}.{self.masks}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.masks == "png":
                write_bytes_atomic(path, _encode_png(result.mask, path), "mask")
            else:
                save_npy_atomic(path, result.mask)
        if self.overlay is None:
            return
        picture = self.overlay(result)
        if not self.source.is_stream:
            path = self.out_dir / "overlays" / f"{result.name}.png"
            write_bytes_atomic(path, _encode_png(picture, path), "overlay")
            return
        if self.video is None:
            tmp = self.stack.enter_context(atomic_path(self.out_dir / "overlay.mp4", keep_suffix=True))
            fps = self.source.fps or DEFAULT_CAMERA_FPS
            height, width = picture.shape[:2]
            self.video = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            self.stack.callback(self.video.release)  # runs before the rename (last in, first out)
            if not self.video.isOpened():
                raise InputError("cannot write the overlay video", self.out_dir / "overlay.mp4")
        self.video.write(picture)


class _MeasurementsFile:
    """measurements.csv written as frames finish: each row flushed once its blink state is known."""

    def __init__(self, path: Path, options: MeasureOptions, stack: contextlib.ExitStack) -> None:
        self.options = options
        self.handle = stack.enter_context(open(path, "w", newline=""))  # noqa: SIM115 - closed by the stack
        self.writer = csv.DictWriter(self.handle, fieldnames=options.columns(), lineterminator="\n")
        self.writer.writeheader()
        self.handle.flush()
        self.blinks: BlinkTracker[dict[str, object]] = BlinkTracker(options.blink_min, options.blink_gap)
        self.smoother = PupilSmoother() if options.smooth else None
        self.rows = 0

    def add(self, result: SegmentResult) -> None:
        m = result.measurements
        row = {"frame": result.frame, "time_s": result.time_s, "source": result.source} | m.row()
        pupil = m.pupil
        if self.options.mm_per_px is not None:
            row["pupil_diameter_mm"] = None if pupil is None else pupil.major * self.options.mm_per_px
        if self.smoother is not None:
            smooth = self.smoother(
                float(result.time_s or 0.0),
                None if pupil is None else (pupil.cx, pupil.cy),
                None if pupil is None else pupil.major,
            )
            keys = ("pupil_cx_smooth", "pupil_cy_smooth", "pupil_major_smooth")
            row |= dict(zip(keys, smooth or (None, None, None), strict=True))
            if self.options.mm_per_px is not None:
                row["pupil_diameter_mm_smooth"] = None if smooth is None else smooth[2] * self.options.mm_per_px
        self._write(self.blinks.add(row, m.pupil_area == 0, result.time_s))

    def finish(self) -> list[dict[str, object]]:
        """Write the rows still held; the blinks' (first, last) rows."""
        self._write(self.blinks.finish())
        return self.blinks.blinks

    def _write(self, decided: list[tuple[dict[str, object], int]]) -> None:
        for row, blink in decided:
            row["blink"] = blink
            self.writer.writerow({key: _cell(key, value) for key, value in row.items()})
            self.rows += 1
        if decided:
            self.handle.flush()


def read_measurements(path: Path) -> list[dict[str, str]]:
    """The rows of a measurements.csv (strings; empty cells for absent values)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_segmentation(
    segmenter: Segmenter,
    source: FrameSource,
    out_dir: Path,
    masks: str = "png",
    overlay: Callable[[SegmentResult], np.ndarray] | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    options: MeasureOptions | None = None,
) -> RunSummary:
    """Segment every frame of `source` into `out_dir` (module docstring); returns what happened."""
    if masks not in MASK_FORMATS:
        raise InputError(f"--masks must be one of {', '.join(MASK_FORMATS)}, got {masks!r}")
    options = options or MeasureOptions()
    options.check(source)
    summary = RunSummary(input=source.label, kind=source.kind)
    summary.blink_rule = f"at least {options.blink_min}, gaps of up to {options.blink_gap} merged"
    total = source.total if max_frames is None else min(source.total or max_frames, max_frames)
    bar = tqdm(
        total=total,
        desc="segment",
        unit="frame",
        disable=not progress or source.kind == "image",
        mininterval=0.5 if sys.stderr.isatty() else 30,
    )
    segmenter.engine_seconds = 0.0
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            writers = _Writers(out_dir, source, masks, overlay, stack)
            measurements = _MeasurementsFile(out_dir / "measurements.csv", options, stack)
            try:
                for item in segmenter.stream(source.frames(max_frames)):
                    if isinstance(item, BadFrame):
                        summary.bad_images.append(item.error)
                    else:
                        writers.add(item)
                        measurements.add(item)
                        summary.pupil_fits[item.measurements.pupil_fit] += 1
                    bar.update(1)
            except KeyboardInterrupt:
                summary.ended = "ctrl-c"
            runs = measurements.finish()
            summary.blinks = [(first["frame"], last["frame"]) for first, last in runs]
            summary.frames = measurements.rows
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    _finish(summary, segmenter, source, out_dir, max_frames)
    return summary


def _finish(
    summary: RunSummary, segmenter: Segmenter, source: FrameSource, out_dir: Path, max_frames: int | None
) -> None:
    frames = summary.frames
    summary.engine_seconds = segmenter.engine_seconds
    summary.frames_per_s = frames / summary.seconds if summary.seconds > 0 else 0.0
    if summary.engine_seconds > 0:
        summary.engine_frames_per_s = frames / summary.engine_seconds
    if source.broken:
        summary.ended, summary.error = "broken", f"{source.label}: {source.broken}"
    elif (
        summary.ended != "ctrl-c"
        and max_frames is not None
        and frames + len(summary.bad_images) >= max_frames
    ):
        summary.ended = "max frames"
    if summary.bad_images:
        shown = "; ".join(summary.bad_images[:3])
        more = f"; and {len(summary.bad_images) - 3} more" if len(summary.bad_images) > 3 else ""
        count = len(summary.bad_images) + frames
        summary.error = (
            f"{source.label}: {len(summary.bad_images)} of {count} images could not be read "
            f"(the others were segmented and written): {shown}{more}"
        )
    write_text_atomic(out_dir / "summary.json", json.dumps(asdict(summary), indent=1) + "\n")
