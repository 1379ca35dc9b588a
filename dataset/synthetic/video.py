"""A synthetic eye video with exact labels and geometry, for segment.py's tests and the demo.

    python -m dataset.synthetic.video --out eye.mp4 [--frames 40 --fps 10 --size 320x200 --seed 0]

One simulated person (dataset/synthetic/render.py) with a full blink in the middle (two closed
frames, then one half-open), each frame taken from the 640 x 400 render: resized when `size` has
its 1.6 aspect, else the largest centred crop of that aspect, resized. Written with
cv2.VideoWriter: `.mp4` as mp4v, `.avi` as MJPG (both written and read back by this
opencv-python-headless; H.264 is not available in its wheels).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

if not __package__:  # run as a file (python dataset/synthetic/video.py): import from the repo root
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from dataset.synthetic.render import HEIGHT, WIDTH, EyeSequence
from utils.atomic import atomic_path
from utils.errors import InputError, cli_entry

__all__ = ["FOURCC", "VideoGeometry", "blinking_sequence", "write_eye_video", "main"]

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclasses.dataclass(frozen=True)
class VideoGeometry:
    """How a 640 x 400 render becomes a video frame: crop (x0, y0, w, h), then scale to `size`."""

    size: tuple[int, int]  # (width, height) of the video

    @property
    def crop(self) -> tuple[int, int, int, int]:
        width, height = self.size
        crop_w = min(WIDTH, round(HEIGHT * width / height))
        crop_h = min(HEIGHT, round(WIDTH * height / width))
        return (WIDTH - crop_w) // 2, (HEIGHT - crop_h) // 2, crop_w, crop_h

    @property
    def scale(self) -> float:
        return self.size[0] / self.crop[2]

    def frame(self, image: np.ndarray) -> np.ndarray:
        """A render as a video frame."""
        x0, y0, w, h = self.crop
        return cv2.resize(image[y0 : y0 + h, x0 : x0 + w], self.size, interpolation=cv2.INTER_AREA)

    def label(self, label: np.ndarray, classes: int = 4) -> np.ndarray:
        """A render's label at the video's size: each pixel takes the class covering most of its area.

        (Nearest-neighbour resizing would pick one source pixel per output pixel and shift every
        region by a fraction of a pixel.)
        """
        cover = np.stack([self.frame((label == c).astype(np.float32)) for c in range(classes)])
        return cover.argmax(0).astype(np.uint8)

    def ellipse(
        self, ellipse: tuple[float, float, float, float, float]
    ) -> tuple[float, float, float, float, float]:
        """An ellipse of the render (render.EyeSequence.ellipses) in the video's pixels."""
        cx, cy, major, minor, angle = ellipse
        x0, y0, _, _ = self.crop
        s = self.scale
        # Pixel centres: x_video + 0.5 = (x_render + 0.5 - x0) * s.
        return ((cx + 0.5 - x0) * s - 0.5, (cy + 0.5 - y0) * s - 0.5, major * s, minor * s, angle)


def blinking_sequence(frames: int, seed: int = 0, index: int = 0) -> EyeSequence:
    """An EyeSequence whose lids close fully at frames//2 and frames//2 + 1 and half reopen after."""
    sequence = EyeSequence(seed, index, frames)
    middle = frames // 2
    for n, openness in ((middle, 0.0), (middle + 1, 0.0), (middle + 2, 0.4 * sequence.open_base)):
        if n < frames:
            sequence.states[n] = dataclasses.replace(sequence.states[n], openness=openness)
    return sequence


def write_eye_video(
    path: Path, frames: int = 40, fps: float = 10.0, size: tuple[int, int] = (320, 200), seed: int = 0
) -> EyeSequence:
    """Render and write the video atomically; returns the sequence (its labels and ellipses)."""
    path = Path(path)
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise InputError(f"video suffix must be one of {', '.join(FOURCC)}", path)
    geometry = VideoGeometry(size)
    sequence = blinking_sequence(frames, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not writer.isOpened():
            raise InputError(f"cannot write a {fourcc} video here", path)
        try:
            for n in range(frames):
                image = geometry.frame(sequence.render(n)[0])
                writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
        finally:
            writer.release()
    return sequence


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 320x200, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError("a video frame must be at least 16 x 16")
    return width, height


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="the video file: .mp4 (mp4v) or .avi (MJPG)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--size", type=_size, default=(320, 200), help="WIDTHxHEIGHT (default 320x200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.fps <= 0:
        raise InputError("--frames must be >= 1 and --fps > 0")
    write_eye_video(args.out, args.frames, args.fps, args.size, args.seed)
    print(
        f"synthetic video: {args.frames} frames, {args.size[0]}x{args.size[1]} at {args.fps:g} fps -> {args.out}"
    )


if __name__ == "__main__":
    main()
