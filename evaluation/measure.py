"""Pupil and iris measurements from a class map: fitted ellipses, areas, the open flag, blinks.

`measure_eye(mask)` fits an ellipse (cv2.fitEllipse) to the outline of the largest connected
component (cv2.connectedComponentsWithStats) of the pupil (class 3) and of the iris disk
(classes 2 and 3: the iris ring with the pupil inside it), in the mask's own pixel units:

- centre (cx, cy): pixel-index coordinates, x to the right, y down, (0, 0) the centre of the
  top-left pixel;
- major, minor: full axis lengths (diameters) in pixels. The outline runs through the centres
  of the region's edge pixels, half a pixel inside its true edge, so 1 px is added to both;
- angle: of the major axis, in degrees 0..180, from the +x axis towards +y (clockwise on
  screen);
- areas: pixel counts of each class (iris: the ring, class 2, without the pupil).

A lid that covers part of the pupil or iris cuts its outline with a straight-ish lid edge that
is not part of the ellipse. Outline points whose neighbourhood touches a class other than the
one just outside the ellipse in an open eye (iris around the pupil, sclera around the iris) or
the image border are left out of the fit when enough of the outline remains (OCCLUDED_FIT_MIN).
On true masks of lid-covered synthetic pupils this takes the median centre error from 8.8 px to
0.1 px and the diameter error from 5.1% to 0.1% (BENCHMARKS.md, "segment.py"; bench/segment.py).

Blinks (`blinks`): a blink is a run of consecutive frames in which no pupil is found: every
frame with open = 0 (neither pupil nor iris visible), and frames where the lid covers the whole
pupil but some iris shows. A lid over part of the pupil is not a blink (the pupil is measured,
with the occlusion rule above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = [
    "CSV_COLUMNS",
    "Ellipse",
    "EyeMeasurements",
    "measure_eye",
    "blinks",
    "PUPIL",
    "IRIS",
    "SCLERA",
]

SCLERA, IRIS, PUPIL = 1, 2, 3
# The share of a region's outline that must remain after dropping occluded points for the fit to
# use only the remaining points (below it, the fit takes the whole outline), and at least 5 points.
OCCLUDED_FIT_MIN = 0.3
# measurements.csv: these columns first, in this order (segment.py adds per-run columns after them).
CSV_COLUMNS = [
    "frame",
    "time_s",
    "source",
    "open",
    "pupil_cx",
    "pupil_cy",
    "pupil_major",
    "pupil_minor",
    "pupil_angle",
    "iris_cx",
    "iris_cy",
    "iris_major",
    "iris_minor",
    "iris_angle",
    "pupil_area",
    "iris_area",
    "sclera_area",
    "confidence",
]


@dataclass(frozen=True)
class Ellipse:
    """A fitted ellipse: centre, full axis lengths (major >= minor), major-axis angle in degrees."""

    cx: float
    cy: float
    major: float
    minor: float
    angle: float


@dataclass(frozen=True)
class EyeMeasurements:
    """What one frame's class map says about the eye (pixel units of the mask)."""

    pupil: Ellipse | None
    iris: Ellipse | None
    pupil_area: int
    iris_area: int
    sclera_area: int
    confidence: float | None = None  # mean ensemble probability of the chosen class (see measure_eye)

    @property
    def open(self) -> bool:
        """False when neither pupil nor iris is visible (a closed eye)."""
        return self.pupil_area > 0 or self.iris_area > 0

    def row(self) -> dict[str, object]:
        """The measurement columns of measurements.csv (None for an empty cell)."""
        row: dict[str, object] = {"open": int(self.open)}
        for name, ellipse in (("pupil", self.pupil), ("iris", self.iris)):
            fields = (
                asdict(ellipse)
                if ellipse is not None
                else dict.fromkeys(("cx", "cy", "major", "minor", "angle"))
            )
            row |= {f"{name}_{key}": value for key, value in fields.items()}
        row |= {"pupil_area": self.pupil_area, "iris_area": self.iris_area, "sclera_area": self.sclera_area}
        row["confidence"] = self.confidence
        return row


def _largest_component(region: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected component of a boolean mask as uint8 0/1, or None if empty."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == biggest).astype(np.uint8)


def _fit(component: np.ndarray, mask: np.ndarray, outside: int) -> Ellipse | None:
    """Fit an ellipse to the component's outer outline, leaving out occluded outline points.

    `outside` is the class that surrounds the region in an open eye; an outline point with any
    other class (or the image border) in its 3x3 neighbourhood lies on an occluding edge.
    """
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len).reshape(-1, 2)
    if len(outline) < 5:
        return None
    height, width = mask.shape
    # Foreign: neither the region itself nor its natural surround; dilate so 8-neighbours count.
    foreign = ((component == 0) & (mask != outside)).astype(np.uint8)
    foreign = cv2.dilate(foreign, np.ones((3, 3), np.uint8))
    xs, ys = outline[:, 0], outline[:, 1]
    occluded = foreign[ys, xs].astype(bool) | (xs == 0) | (ys == 0) | (xs == width - 1) | (ys == height - 1)
    clean = outline[~occluded]
    points = clean if len(clean) >= max(5, OCCLUDED_FIT_MIN * len(outline)) else outline
    (cx, cy), (w, h), angle = cv2.fitEllipse(points.astype(np.float32))
    if not all(math.isfinite(v) for v in (cx, cy, w, h, angle)):
        return None
    # OpenCV's width lies along `angle`; turn it into (major, minor, angle of the major axis).
    if w < h:
        w, h, angle = h, w, angle + 90.0
    return Ellipse(float(cx), float(cy), float(w) + 1.0, float(h) + 1.0, float(angle % 180.0))


def measure_eye(mask: np.ndarray, confidence: np.ndarray | None = None) -> EyeMeasurements:
    """Measure one (H, W) class map (0 background, 1 sclera, 2 iris, 3 pupil).

    confidence: optional (H, W) probability of each pixel's chosen class (the ensemble's softmax);
    the frame's confidence is its mean over the eye's pixels (classes 1-3), or over the whole
    frame when no eye pixel is found (how sure the model is that the eye is closed).
    """
    mask = np.asarray(mask)
    counts = np.bincount(mask.ravel(), minlength=4)
    pupil = _largest_component(mask == PUPIL)
    iris_disk = _largest_component((mask == IRIS) | (mask == PUPIL))
    mean_confidence = None
    if confidence is not None:
        eye = mask > 0
        mean_confidence = float(confidence[eye].mean() if eye.any() else confidence.mean())
    return EyeMeasurements(
        pupil=_fit(pupil, mask, IRIS) if pupil is not None else None,
        iris=_fit(iris_disk, mask, SCLERA) if iris_disk is not None else None,
        pupil_area=int(counts[PUPIL]),
        iris_area=int(counts[IRIS]),
        sclera_area=int(counts[SCLERA]),
        confidence=mean_confidence,
    )


def blinks(pupil_areas: Sequence[int]) -> list[tuple[int, int]]:
    """Blinks as (first, last) positions, inclusive: runs of consecutive frames without a pupil."""
    runs: list[tuple[int, int]] = []
    start = None
    for position, area in enumerate([*pupil_areas, 1]):  # a sentinel closes a run at the end
        if area <= 0 and start is None:
            start = position
        elif area > 0 and start is not None:
            runs.append((start, position - 1))
            start = None
    return runs
