"""Frames from what a user has: an image file, a folder of images, a video file or a camera.

`open_frames(path)` decides what `path` is and returns a FrameSource that yields, in order,
`Frame`s (an 8-bit gray image at the input's own size, its number, time and name) and, for a
folder, `BadFrame`s for images it cannot read (the run lists and skips them). Reading:

- images: png, jpg/jpeg, bmp, tif/tiff, 8- or 16-bit, gray or colour, read as the plain-folder
  layout reads them (dataset/model_frame.py's `read_any_image`: colour -> gray, 16 -> 8 bits);
- a folder: the image files under it, recursively, in natural order (`2.png` before `10.png`);
- a video: anything OpenCV's VideoCapture opens; time_s from the container's timestamps. A
  video that yields fewer frames than its header announces broke mid-stream: `broken` says so
  once the frames read have been yielded;
- a camera: `--input 0` (a digit that is not a file): OpenCV's camera of that index; time_s
  from the clock, 0 at the first frame.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.model_frame import IMAGE_SUFFIXES, read_any_image, to_gray8
from utils.errors import InputError

__all__ = ["IMAGE_SUFFIXES", "Frame", "BadFrame", "FrameSource", "open_frames", "read_any_image", "to_gray8"]


@dataclass
class Frame:
    """One input frame: gray uint8 (H, W) at the input's size."""

    image: np.ndarray
    index: int  # 0-based position in the input (for a folder: in its sorted file list)
    time_s: float | None  # video/camera time; None for images
    name: str  # output name without suffix: the image's path under the input folder, or 000123
    source: str  # the image file, the video file, or "camera 0"


@dataclass
class BadFrame:
    """An image of a folder that could not be read."""

    index: int
    name: str
    error: str  # one line naming the file


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


class FrameSource:
    """What open_frames found: kind ('image', 'folder', 'video', 'camera'), a frame count when known."""

    def __init__(self, kind: str, path: Path | int, total: int | None, fps: float | None = None) -> None:
        self.kind, self.path, self.total, self.fps = kind, path, total, fps
        self.broken: str | None = None  # set when a video ends before its announced frame count
        self.files: list[Path] = []
        self._capture: cv2.VideoCapture | None = None

    @property
    def is_stream(self) -> bool:
        """A video or a camera: one output stream (masks/000000.png, overlay.mp4, pupil.png)."""
        return self.kind in ("video", "camera")

    @property
    def label(self) -> str:
        return f"camera {self.path}" if self.kind == "camera" else str(self.path)

    def frames(self, max_frames: int | None = None) -> Iterator[Frame | BadFrame]:
        """Yield the frames in order, at most `max_frames` of them."""
        if self.is_stream:
            yield from self._stream(max_frames)
            return
        root = self.path if self.kind == "folder" else self.path.parent
        for index, file in enumerate(self.files[:max_frames]):
            name = file.relative_to(root).with_suffix("").as_posix()
            try:
                image = read_any_image(file)
            except InputError as exc:
                yield BadFrame(index, name, str(exc))
                continue
            yield Frame(image, index, None, name, str(file))

    def _stream(self, max_frames: int | None) -> Iterator[Frame]:
        capture = self._capture
        start, index, previous = None, 0, -1.0
        try:
            while max_frames is None or index < max_frames:
                try:
                    ok, image = capture.read()
                except cv2.error:  # some decoders raise on a damaged packet instead of returning False
                    ok, image = False, None
                if not ok or image is None:
                    break
                if self.kind == "camera":
                    now = time.monotonic()
                    start = now if start is None else start
                    time_s = now - start
                else:
                    time_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    if index and self.fps and not time_s > previous:  # a container without timestamps
                        time_s = index / self.fps
                    previous = time_s
                yield Frame(to_gray8(image, self.label), index, time_s, f"{index:06d}", self.label)
                index += 1
            if (
                self.kind == "video"
                and self.total
                and index < self.total
                and (max_frames is None or index < max_frames)
            ):
                self.broken = (
                    f"the video ended after {index} of its {self.total} frames (truncated or damaged?); "
                    f"the outputs of the {index} frames read are written"
                )
        finally:
            capture.release()


def open_frames(path: str | Path, exclude: Path | None = None) -> FrameSource:
    """An image, a folder of images, a video file or a camera index -> its FrameSource.

    `exclude`: a folder whose files are never read as input (segment.py's output folder, when it
    lies inside the input folder). A video or camera that cannot be opened is an InputError.
    """
    text = str(path)
    candidate = Path(text)
    if not candidate.exists() and text.isdigit():
        capture = cv2.VideoCapture(int(text))
        if not capture.isOpened():
            raise InputError(f"camera {text}: cannot open it (no such camera, or in use)")
        source = FrameSource("camera", int(text), None, capture.get(cv2.CAP_PROP_FPS) or None)
        source._capture = capture
        return source
    if candidate.is_dir():
        skip = exclude.resolve() if exclude is not None else None
        files = [
            file
            for file in candidate.rglob("*")
            if file.suffix.lower() in IMAGE_SUFFIXES
            and file.is_file()
            and not (skip is not None and file.resolve().is_relative_to(skip))
        ]
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", candidate)
        source = FrameSource("folder", candidate, len(files))
        source.files = sorted(files, key=_natural_key)
        names: dict[Path, Path] = {}
        for file in source.files:  # a.png and a.jpg would write the same masks/a.png
            twin = names.setdefault(file.with_suffix(""), file)
            if twin != file:
                raise InputError(
                    f"{twin.name} and {file.name} would get the same output name; rename one", file.parent
                )
        return source
    if not candidate.is_file():
        raise InputError(
            "input not found (an image, a folder of images, a video file or a camera index)", candidate
        )
    if candidate.suffix.lower() in IMAGE_SUFFIXES:
        read_any_image(candidate)  # an unreadable image fails here, before anything is written
        source = FrameSource("image", candidate, 1)
        source.files = [candidate]
        return source
    capture = cv2.VideoCapture(str(candidate))
    if not capture.isOpened():
        raise InputError("cannot open the video (not a format OpenCV reads, or damaged)", candidate)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    source = FrameSource(
        "video", candidate, count if count > 0 else None, capture.get(cv2.CAP_PROP_FPS) or None
    )
    source._capture = capture
    return source
