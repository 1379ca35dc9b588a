"""segment.py's run: a FrameSource through a Segmenter into an output folder.

What it writes in the output folder (every file atomically):

- masks/<name>.png (values 0..3) or .npy, at the input's size: for images <name> is the path
  under the input folder without its suffix; for a video or camera, the frame number 000000..;
  or, with masks "labelme", labelme/<name>.png (the frame) and labelme/<name>.json (the mask as
  LabelMe polygons, dataset.importers.write_labelme) to correct in LabelMe and import back
  (`python -m dataset.importers labelme --src OUT/labelme --out DATA`);
- with an overlay function: overlays/<name>.png per image, or overlay.mp4 for a video or camera
  (H.264 through PyAV, the FFmpeg bindings pip installs: it plays in a browser);
- measurements.csv: one row per frame read: the columns of evaluation.measure.CSV_COLUMNS, then
  with MeasureOptions.mm_per_px `pupil_diameter_mm`, with .smooth `pupil_cx_smooth`,
  `pupil_cy_smooth`, `pupil_major_smooth` (and `pupil_diameter_mm_smooth` with both;
  evaluation.smoothing), then `blink` (evaluation.blinks) and `dropped` (1: a camera frame the
  engine had no room for, its measurement cells empty). Not written atomically but row by row,
  flushed as frames finish, so a reader can tail it: a row waits only until its blink state is
  known (at most about blink_min + blink_gap frames; evaluation.blinks.BlinkTracker holds those);
- summary.json: input, frames, time, frames/s, blinks, pupil fits, dropped frames, unreadable
  images, why it ended.

Frames go through the Segmenter's pipeline (inference/pipeline.py): read, segmented by its
workers side by side, and written here in order. With `drop` (default: a camera), a frame that
arrives while the engine is behind is not queued but written as a dropped row, so a live run
keeps up with its camera. A dropped row continues the blink state of the row before it.

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dataset.importers import write_labelme
from evaluation.blinks import DEFAULT_BLINK_GAP, DEFAULT_BLINK_MIN, BlinkTracker, Span
from evaluation.measure import CSV_COLUMNS
from evaluation.smoothing import PupilSmoother
from inference.frames import BadFrame, FrameSource
from inference.pipeline import DroppedFrame
from inference.segmenter import Segmenter, SegmentResult
from utils.atomic import atomic_path, save_npy_atomic, write_bytes_atomic, write_text_atomic
from utils.errors import InputError
from utils.folders import make_output_dir

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
OUTPUT_NAMES = (
    "masks",
    "labelme",
    "overlays",
    "overlay.mp4",
    "measurements.csv",
    "pupil.png",
    "summary.json",
)
DEFAULT_CAMERA_FPS = 30.0


@dataclass(frozen=True)
class MeasureOptions:
    """Per-run measurement settings: blink rule, physical units, smoothing (README, segment.py)."""

    blink_min: Span = DEFAULT_BLINK_MIN
    blink_gap: Span = DEFAULT_BLINK_GAP
    mm_per_px: float | None = None  # pupil_diameter_mm = pupil_major x mm_per_px
    smooth: bool = False  # one-euro filtered pupil centre and diameter (evaluation.smoothing)
    iris_mm: float | None = None  # pupil_diameter_mm = pupil_major / iris_major x iris_mm, per frame

    @property
    def in_mm(self) -> bool:
        return self.mm_per_px is not None or self.iris_mm is not None

    def mm_per_px_of(self, result: SegmentResult) -> float | None:
        """This frame's millimetres per pixel: --mm-per-px, or --iris-mm over the iris's fitted diameter."""
        if self.iris_mm is None:
            return self.mm_per_px
        iris = result.measurements.iris
        return None if iris is None else self.iris_mm / iris.major

    def check(self, source: FrameSource) -> None:
        """Refuse what the input cannot give: times (ms blink lengths, smoothing) need a video or camera."""
        for flag, value in (("--mm-per-px", self.mm_per_px), ("--iris-mm", self.iris_mm)):
            if value is not None and not (value > 0 and np.isfinite(value)):
                raise InputError(f"{flag} must be a positive number of millimetres, got {value}")
        if self.mm_per_px is not None and self.iris_mm is not None:
            raise InputError("--mm-per-px and --iris-mm both set the pupil's scale: give one")
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
        extra = ["pupil_diameter_mm"] if self.in_mm else []
        if self.smooth:
            extra += ["pupil_cx_smooth", "pupil_cy_smooth", "pupil_major_smooth"]
            extra += ["pupil_diameter_mm_smooth"] if self.in_mm else []
        return [*CSV_COLUMNS, *extra, "blink", "dropped"]


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
    dropped: int = 0  # camera frames written as dropped rows (the engine was behind)
    workers: int = 0
    bad_images: list[str] = field(default_factory=list)
    ended: str = "end of input"  # or "max frames", "ctrl-c", "broken"
    error: str | None = None  # the one-line error the caller raises, with every output written


def prepare_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Create the folder; refuse one that holds another run's outputs unless `overwrite`, which clears them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("output folder is a file", out_dir)  # before looking inside it
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
    make_output_dir(out_dir)


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
            self.video = H264Writer(tmp, self.source.fps or DEFAULT_CAMERA_FPS)
            self.stack.callback(self.video.close)  # runs before the rename (last in, first out)
        self.video.write(picture)


class H264Writer:
    """An H.264 MP4 (yuv420p, plays in browsers) through PyAV, FFmpeg's bindings with libx264 inside.

    OpenCV's pip wheels write only mp4v (MPEG-4 part 2), which browsers do not play. Frames of an
    odd width or height are padded by one black row or column (4:2:0 needs even sizes).
    """

    def __init__(self, path: Path, fps: float) -> None:
        import av  # imported here: only an overlay video needs it

        self.path = path
        try:
            self.container = av.open(str(path), mode="w")
            self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"cannot write the overlay video ({exc})", path) from None
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": "veryfast", "crf": "23"}
        self.av, self.frames = av, 0

    def write(self, picture: np.ndarray) -> None:
        height, width = picture.shape[:2]
        if height % 2 or width % 2:
            picture = cv2.copyMakeBorder(picture, 0, height % 2, 0, width % 2, cv2.BORDER_CONSTANT)
        if not self.frames:  # the first frame sets the size
            self.stream.width, self.stream.height = picture.shape[1], picture.shape[0]
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="bgr24")
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        try:
            if self.frames:
                self.container.mux(self.stream.encode(None))  # flush the encoder's delayed frames
        finally:
            self.container.close()


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
        self.missing = False  # the last row's blink state, which a dropped row continues

    def add_dropped(self, frame: DroppedFrame) -> None:
        """A camera frame the engine had no room for: its row, measurement cells empty."""
        row = {"frame": frame.index, "time_s": frame.time_s, "source": frame.source, "dropped": 1}
        self._write(self.blinks.add(row, self.missing, frame.time_s))

    def add(self, result: SegmentResult) -> None:
        m = result.measurements
        row = {"frame": result.frame, "time_s": result.time_s, "source": result.source} | m.row()
        row["dropped"] = 0
        pupil = m.pupil
        scale = self.options.mm_per_px_of(result)
        if self.options.in_mm:
            row["pupil_diameter_mm"] = None if pupil is None or scale is None else pupil.major * scale
        if self.smoother is not None:
            smooth = self.smoother(
                float(result.time_s or 0.0),
                None if pupil is None else (pupil.cx, pupil.cy),
                None if pupil is None else pupil.major,
            )
            keys = ("pupil_cx_smooth", "pupil_cy_smooth", "pupil_major_smooth")
            row |= dict(zip(keys, smooth or (None, None, None), strict=True))
            if self.options.in_mm:
                row["pupil_diameter_mm_smooth"] = (
                    None if smooth is None or scale is None else smooth[2] * scale
                )
        self.missing = m.pupil_area == 0
        self._write(self.blinks.add(row, self.missing, result.time_s))

    def finish(self) -> list[dict[str, object]]:
        """Write the rows still held; the blinks' (first, last) rows."""
        self._write(self.blinks.finish())
        return self.blinks.blinks

    def _write(self, decided: list[tuple[dict[str, object], int]]) -> None:
        for row, blink in decided:
            row["blink"] = blink
            self.writer.writerow({key: _cell(key, row.get(key)) for key in self.writer.fieldnames})
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
    drop: bool | None = None,
    preview: Callable[[SegmentResult], bool] | None = None,
) -> RunSummary:
    """Segment every frame of `source` into `out_dir` (module docstring); returns what happened.

    drop: write frames the engine has no room for as dropped rows instead of waiting for it
    (default: for a camera). preview: called with each result in the writer's thread (a window);
    False from it ends the run as Ctrl-C does.
    """
    if masks not in MASK_FORMATS:
        raise InputError(f"--masks must be one of {', '.join(MASK_FORMATS)}, got {masks!r}")
    options = options or MeasureOptions()
    options.check(source)
    drop = source.kind == "camera" if drop is None else drop
    summary = RunSummary(input=source.label, kind=source.kind, workers=segmenter.workers)
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
            pipe = stack.enter_context(segmenter.pipeline(source.frames(max_frames), drop=drop))

            def write(items: Iterator[object]) -> None:
                for item in items:
                    if isinstance(item, BadFrame):
                        summary.bad_images.append(item.error)
                    elif isinstance(item, DroppedFrame):
                        measurements.add_dropped(item)
                        summary.dropped += 1
                    else:
                        writers.add(item)
                        measurements.add(item)
                        summary.pupil_fits[item.measurements.pupil_fit] += 1
                        if preview is not None and not preview(item):
                            raise KeyboardInterrupt  # the window was closed: end as Ctrl-C does
                    bar.update(1)

            try:
                write(pipe.results())
            except KeyboardInterrupt:
                summary.ended = "ctrl-c"
                pipe.stop()  # read no more; the frames already read are written
                write(pipe.results())
            runs = measurements.finish()
            summary.blinks = [(first["frame"], last["frame"]) for first, last in runs]
            summary.frames = measurements.rows - summary.dropped
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
    if summary.engine_seconds > 0:  # the engine's capacity: its workers side by side
        summary.engine_frames_per_s = frames * max(1, segmenter.workers) / summary.engine_seconds
    if source.broken:
        summary.ended, summary.error = "broken", f"{source.label}: {source.broken}"
    elif (
        summary.ended != "ctrl-c"
        and max_frames is not None
        and frames + summary.dropped + len(summary.bad_images) >= max_frames
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
