"""segment.py's run: a FrameSource through a Segmenter into an output folder.

What it writes in the output folder (every file atomically):

- masks/<name>.png (values 0..3) or .npy, at the input's size: for images <name> is the path
  under the input folder without its suffix; for a video or camera, the frame number 000000..;
  or, with masks "labelme", labelme/<name>.png (the frame) and labelme/<name>.json (the mask as
  LabelMe polygons, dataset.importers.write_labelme) to correct in LabelMe and import back
  (`python -m dataset.importers labelme --src OUT/labelme --out DATA`);
- with an overlay function: overlays/<name>.png per image, or overlay.mp4 (mp4v) for a video;
- measurements.csv: one row per frame read, the columns of evaluation.measure.CSV_COLUMNS, then
  `blink` (1 in a run of frames without a pupil, evaluation.measure.blinks);
- summary.json: input, frames, time, frames/s, blinks, unreadable images, why it ended.

Whatever ends the run (the last frame, --max-frames, Ctrl-C, a video that breaks mid-stream,
unreadable images of a folder), the outputs of every frame read are complete when it returns;
the caller turns `RunSummary.error` into the one-line error. An output folder that holds another
run's outputs is refused unless `overwrite`, which deletes them first.
"""

from __future__ import annotations

import contextlib
import csv
import io
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
from evaluation.measure import CSV_COLUMNS, blinks
from inference.frames import BadFrame, FrameSource
from inference.predict import save_npy_atomic
from inference.segmenter import Segmenter, SegmentResult
from utils.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from utils.errors import InputError

__all__ = ["MASK_FORMATS", "OUTPUT_NAMES", "RunSummary", "prepare_output_dir", "run_segmentation"]

MASK_FORMATS = ("png", "npy", "labelme", "none")
# What a run writes at the top of its folder; their presence marks a folder as holding a run.
OUTPUT_NAMES = ("masks", "labelme", "overlays", "overlay.mp4", "measurements.csv", "pupil.png", "summary.json")
DEFAULT_CAMERA_FPS = 30.0


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
    bad_images: list[str] = field(default_factory=list)
    ended: str = "end of input"  # or "max frames", "ctrl-c", "broken"
    error: str | None = None  # the one-line error the caller raises, with every output written
    rows: list[dict[str, object]] = field(default_factory=list, repr=False)


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
    """Empty for an absent value; pixels, degrees and seconds to 3 decimals, confidence to 4."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if key == "confidence" else f"{value:.3f}"
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


def _rows_with_blinks(rows: list[dict[str, object]]) -> list[tuple[int, int]]:
    runs = blinks([int(row["pupil_area"]) for row in rows])
    for row in rows:
        row["blink"] = 0
    for first, last in runs:
        for row in rows[first : last + 1]:
            row["blink"] = 1
    return runs


def write_measurements(path: Path, rows: list[dict[str, object]]) -> None:
    """measurements.csv: CSV_COLUMNS, then blink; empty cells for absent values."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, "blink"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _cell(key, value) for key, value in row.items()} for row in rows)
    write_text_atomic(path, buffer.getvalue())


def run_segmentation(
    segmenter: Segmenter,
    source: FrameSource,
    out_dir: Path,
    masks: str = "png",
    overlay: Callable[[SegmentResult], np.ndarray] | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> RunSummary:
    """Segment every frame of `source` into `out_dir` (module docstring); returns what happened."""
    if masks not in MASK_FORMATS:
        raise InputError(f"--masks must be one of {', '.join(MASK_FORMATS)}, got {masks!r}")
    summary = RunSummary(input=source.label, kind=source.kind)
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
            try:
                for item in segmenter.stream(source.frames(max_frames)):
                    if isinstance(item, BadFrame):
                        summary.bad_images.append(item.error)
                    else:
                        writers.add(item)
                        row = {"frame": item.frame, "time_s": item.time_s, "source": item.source}
                        summary.rows.append(row | item.measurements.row())
                    bar.update(1)
            except KeyboardInterrupt:
                summary.ended = "ctrl-c"
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    _finish(summary, segmenter, source, out_dir, max_frames)
    return summary


def _finish(
    summary: RunSummary, segmenter: Segmenter, source: FrameSource, out_dir: Path, max_frames: int | None
) -> None:
    rows = summary.rows
    summary.frames = len(rows)
    summary.engine_seconds = segmenter.engine_seconds
    summary.frames_per_s = len(rows) / summary.seconds if summary.seconds > 0 else 0.0
    if summary.engine_seconds > 0:
        summary.engine_frames_per_s = len(rows) / summary.engine_seconds
    runs = _rows_with_blinks(rows)
    summary.blinks = [(rows[first]["frame"], rows[last]["frame"]) for first, last in runs]
    write_measurements(out_dir / "measurements.csv", rows)
    if source.broken:
        summary.ended, summary.error = "broken", f"{source.label}: {source.broken}"
    elif (
        summary.ended != "ctrl-c"
        and max_frames is not None
        and len(rows) + len(summary.bad_images) >= max_frames
    ):
        summary.ended = "max frames"
    if summary.bad_images:
        shown = "; ".join(summary.bad_images[:3])
        more = f"; and {len(summary.bad_images) - 3} more" if len(summary.bad_images) > 3 else ""
        count = len(summary.bad_images) + len(rows)
        summary.error = (
            f"{source.label}: {len(summary.bad_images)} of {count} images could not be read "
            f"(the others were segmented and written): {shown}{more}"
        )
    info = {key: value for key, value in asdict(summary).items() if key != "rows"}
    write_text_atomic(out_dir / "summary.json", json.dumps(info, indent=1) + "\n")
