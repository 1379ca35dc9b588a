"""Pupil and iris measurements from a class map: fitted ellipses, areas, the open flag, fit checks.

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

No impossible ellipse: cv2.fitEllipse on a few nearly collinear points (a small arc left by a
lid, a sliver, a fragment) returns ellipses far larger than the region, centred far outside it
(a real video gave a 23,000 px pupil). A fit that leaves the region it was fitted to is refused
(`pupil_fit` / `iris_fit` "refused", no ellipse): its centre lies outside the component's
bounding box grown on every side by FIT_MARGIN x the box's longer side + FIT_SLACK_PX, or its
major axis exceeds the box's diagonal x (1 + FIT_MARGIN) + FIT_SLACK_PX. On true masks a pupil
under a straight lid passes while about a quarter of its height shows (a fifth of its area; the
centre rule goes first); below that even a clean arc's fit is an extrapolation
(tests/test_segment.py: a lid lowered over a pupil; fragments and slivers).

`pupil_confidence` (0..1) says how far the pupil ellipse can be trusted; below
PUPIL_CONFIDENCE_THRESHOLD lie at least 90% of the rendered frames whose fitted centre is more than
2 px off (experiments/pupil_confidence.py, BENCHMARKS.md "Pupil confidence"). It is the product of
- p ** PROBABILITY_POWER, p the model's mean probability of the pupil class over the pupil's
  pixels (the power spreads the 0.85-0.99 where p lies; on the calibration frames it told good
  fits from bad ones better than p itself);
- the visible share of the fitted ellipse's outline: the share of VISIBLE_BINS equal sectors
  (of the ellipse's own angle) holding a non-occluded outline point (the lid rule above);
- exp(-residual / RESIDUAL_SCALE_PX), residual the mean distance (px) of the outline points
  fitted to the ellipse (measured along the ray from its centre).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = [
    "CSV_COLUMNS",
    "Ellipse",
    "EyeMeasurements",
    "Fit",
    "measure_eye",
    "fit_region",
    "FIT_MARGIN",
    "FIT_SLACK_PX",
    "PUPIL_CONFIDENCE_THRESHOLD",
    "PUPIL",
    "IRIS",
    "SCLERA",
]

SCLERA, IRIS, PUPIL = 1, 2, 3
# The share of a region's outline that must remain after dropping occluded points for the fit to
# use only the remaining points (below it, the fit takes the whole outline), and at least 5 points.
OCCLUDED_FIT_MIN = 0.3
# A fit may leave its component's box by this share of the box's longer side (centre) or of its
# diagonal (major axis), plus FIT_SLACK_PX for pixel rounding; beyond it the fit is refused.
FIT_MARGIN = 0.25
FIT_SLACK_PX = 2.0
# pupil_confidence's parts (module docstring) and the threshold below which a frame's pupil is
# not to be trusted: calibrated on rendered frames, experiments/pupil_confidence.py.
VISIBLE_BINS = 24
PROBABILITY_POWER = 4
RESIDUAL_SCALE_PX = 2.0
PUPIL_CONFIDENCE_THRESHOLD = 0.64
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
    "pupil_fit",
    "iris_fit",
    "pupil_confidence",
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
class Fit:
    """One region's fit: the ellipse (None unless status is "ok") and how well it is supported.

    status: "ok", "refused" (the region is there but no trustworthy ellipse: the fit left the
    region, or the outline has fewer than 5 points) or "none" (no pixel of the region).
    visible: share of the ellipse's outline sectors holding a non-occluded outline point;
    residual: mean distance (px) of the fitted outline points to the ellipse.
    """

    ellipse: Ellipse | None = None
    status: str = "none"
    visible: float | None = None
    residual: float | None = None


@dataclass(frozen=True)
class EyeMeasurements:
    """What one frame's class map says about the eye (pixel units of the mask)."""

    pupil: Ellipse | None
    iris: Ellipse | None
    pupil_area: int
    iris_area: int
    sclera_area: int
    confidence: float | None = None  # mean ensemble probability of the chosen class (see measure_eye)
    pupil_fit: str = "none"  # Fit.status of the pupil and the iris
    iris_fit: str = "none"
    pupil_confidence: float | None = None  # how far the pupil ellipse can be trusted (module docstring)
    pupil_visible: float | None = None  # its parts (Fit.visible, Fit.residual), not in the CSV
    pupil_residual: float | None = None

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
        row |= {"confidence": self.confidence, "pupil_fit": self.pupil_fit, "iris_fit": self.iris_fit}
        row["pupil_confidence"] = self.pupil_confidence
        return row


def _largest_component(region: np.ndarray) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The largest 8-connected component of a boolean mask, or None if empty: uint8 0/1 inside the
    region's bounding box grown by 1 px (clipped to the frame), and that box's (x, y) in the frame.

    Labelled inside the box, not the frame: a pupil is a few hundred of a frame's 256,000 pixels,
    and the 1 px keeps every outline point's 3 x 3 neighbourhood (_fit's occlusion rule) inside.
    """
    region = region.astype(np.uint8)
    x, y, width, height = cv2.boundingRect(region)
    if width == 0:
        return None
    x0, y0 = max(x - 1, 0), max(y - 1, 0)
    crop = region[y0 : y + height + 1, x0 : x + width + 1]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == biggest).astype(np.uint8), (x0, y0)


def fit_region(points: np.ndarray, box: tuple[int, int, int, int]) -> Ellipse | None:
    """cv2.fitEllipse of (N, 2) outline points, or None when the fit leaves the region's box.

    box: (x, y, width, height) of the region's pixels (cv2.boundingRect); the rule and its margin
    are the module docstring's. The returned axes include the +1 px of the outline's half pixel.
    """
    (cx, cy), (w, h), angle = cv2.fitEllipse(points.astype(np.float32))
    if not all(math.isfinite(v) for v in (cx, cy, w, h, angle)):
        return None
    # OpenCV's width lies along `angle`; turn it into (major, minor, angle of the major axis).
    if w < h:
        w, h, angle = h, w, angle + 90.0
    x0, y0, width, height = box
    grow = FIT_MARGIN * max(width, height) + FIT_SLACK_PX
    inside = x0 - grow <= cx <= x0 + width - 1 + grow and y0 - grow <= cy <= y0 + height - 1 + grow
    if not inside or w + 1.0 > math.hypot(width, height) * (1 + FIT_MARGIN) + FIT_SLACK_PX:
        return None
    return Ellipse(float(cx), float(cy), float(w) + 1.0, float(h) + 1.0, float(angle % 180.0))


def _support(ellipse: Ellipse, fitted: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(visible share, residual px) of an ellipse: sectors holding a clean point; mean point distance."""
    a, b = (ellipse.major - 1.0) / 2, (ellipse.minor - 1.0) / 2
    theta = math.radians(ellipse.angle)
    cos, sin = math.cos(theta), math.sin(theta)

    def frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = points[:, 0] - ellipse.cx, points[:, 1] - ellipse.cy
        return (dx * cos + dy * sin) / max(a, 1e-6), (-dx * sin + dy * cos) / max(b, 1e-6)

    u, v = frame(fitted.astype(np.float64))
    radius = np.hypot(u, v)  # 1 on the ellipse; the distance along the ray is |1 - 1/r| x |p - c|
    distance = np.abs(1 - 1 / np.maximum(radius, 1e-6)) * np.hypot(
        fitted[:, 0] - ellipse.cx, fitted[:, 1] - ellipse.cy
    )
    visible = 0.0
    if len(clean):
        u, v = frame(clean.astype(np.float64))
        sectors = np.floor((np.arctan2(v, u) + math.pi) / (2 * math.pi) * VISIBLE_BINS).astype(int)
        visible = len(np.unique(np.clip(sectors, 0, VISIBLE_BINS - 1))) / VISIBLE_BINS
    return visible, float(distance.mean())


def _fit(found: tuple[np.ndarray, tuple[int, int]], mask: np.ndarray, outside: int) -> Fit:
    """Fit an ellipse to the component's outer outline, leaving out occluded outline points.

    found: _largest_component's (component in its box, the box's corner). `outside` is the class
    that surrounds the region in an open eye; an outline point with any other class (or the image
    border) in its 3x3 neighbourhood lies on an occluding edge.
    """
    component, (x0, y0) = found
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=len).reshape(-1, 2)
    if len(outline) < 5:
        return Fit(status="refused")
    height, width = mask.shape
    around = mask[y0 : y0 + component.shape[0], x0 : x0 + component.shape[1]]
    # Foreign: neither the region itself nor its natural surround; dilate so 8-neighbours count.
    foreign = ((component == 0) & (around != outside)).astype(np.uint8)
    foreign = cv2.dilate(foreign, np.ones((3, 3), np.uint8))
    xs, ys = outline[:, 0], outline[:, 1]
    occluded = foreign[ys, xs].astype(bool)
    outline = outline + np.array([x0, y0], dtype=outline.dtype)  # into the frame's pixels
    xs, ys = outline[:, 0], outline[:, 1]
    occluded |= (xs == 0) | (ys == 0) | (xs == width - 1) | (ys == height - 1)
    clean = outline[~occluded]
    points = clean if len(clean) >= max(5, OCCLUDED_FIT_MIN * len(outline)) else outline
    bx, by, bw, bh = cv2.boundingRect(component)
    ellipse = fit_region(points, (bx + x0, by + y0, bw, bh))
    if ellipse is None:
        return Fit(status="refused")
    visible, residual = _support(ellipse, points, clean)
    return Fit(ellipse, "ok", visible, residual)


def measure_eye(mask: np.ndarray, confidence: np.ndarray | None = None) -> EyeMeasurements:
    """Measure one (H, W) class map (0 background, 1 sclera, 2 iris, 3 pupil).

    confidence: optional (H, W) probability of each pixel's chosen class (the ensemble's softmax);
    the frame's confidence is its mean over the eye's pixels (classes 1-3), or over the whole
    frame when no eye pixel is found (how sure the model is that the eye is closed). The pupil's
    class probability in pupil_confidence is its mean over the pupil's component (1 without it).
    """
    mask = np.asarray(mask)
    counts = np.bincount(mask.ravel(), minlength=4)
    pupil = _largest_component(mask == PUPIL)
    iris_disk = _largest_component((mask == IRIS) | (mask == PUPIL))
    pupil_fit = _fit(pupil, mask, IRIS) if pupil is not None else Fit()
    iris_fit = _fit(iris_disk, mask, SCLERA) if iris_disk is not None else Fit()
    mean_confidence = pupil_confidence = None
    if confidence is not None:
        eye = int(counts[1:].sum())
        mean_confidence = float(
            np.dot(confidence.ravel(), (mask > 0).ravel()) / eye if eye else confidence.mean()
        )
    if pupil_fit.ellipse is not None:
        probability = 1.0
        if confidence is not None:
            component, (x0, y0) = pupil
            around = confidence[y0 : y0 + component.shape[0], x0 : x0 + component.shape[1]]
            probability = float(around[component > 0].mean())
        fit_term = math.exp(-pupil_fit.residual / RESIDUAL_SCALE_PX)
        pupil_confidence = probability**PROBABILITY_POWER * pupil_fit.visible * fit_term
    return EyeMeasurements(
        pupil=pupil_fit.ellipse,
        iris=iris_fit.ellipse,
        pupil_area=int(counts[PUPIL]),
        iris_area=int(counts[IRIS]),
        sclera_area=int(counts[SCLERA]),
        confidence=mean_confidence,
        pupil_fit=pupil_fit.status,
        iris_fit=iris_fit.status,
        pupil_confidence=pupil_confidence,
        pupil_visible=pupil_fit.visible,
        pupil_residual=pupil_fit.residual,
    )
