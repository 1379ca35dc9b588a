"""segment.py's pictures: a frame with its classes and fitted ellipses; pupil.png over time.

The overlay tints each class with the one palette (viz/palette.py) and draws the fitted pupil
and iris ellipses (evaluation/measure.py) in white, with the pupil diameter written in the
corner. pupil.png: pupil diameter (major and minor axis) and centre over time, blinks shaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; servers have no display
import matplotlib.pyplot as plt  # noqa: E402

from inference.segmenter import SegmentResult  # noqa: E402
from utils.atomic import atomic_path  # noqa: E402
from viz.palette import colour_label  # noqa: E402

__all__ = ["draw_segmentation", "plot_pupil"]

TINT = 0.35  # weight of the class colour over the gray frame
WHITE = (255, 255, 255)


def draw_segmentation(result: SegmentResult) -> np.ndarray:
    """BGR overlay at the input's size: class tints, the fitted ellipses, the pupil diameter."""
    canvas = cv2.cvtColor(result.image, cv2.COLOR_GRAY2BGR)
    eye = result.mask > 0
    canvas[eye] = ((1 - TINT) * canvas[eye] + TINT * colour_label(result.mask)[eye]).astype(np.uint8)
    m = result.measurements
    thickness = max(1, round(min(result.image.shape) / 250))
    for ellipse in (m.iris, m.pupil):
        if ellipse is not None:
            box = ((ellipse.cx, ellipse.cy), (ellipse.major - 1, ellipse.minor - 1), ellipse.angle)
            cv2.ellipse(canvas, box, WHITE, thickness, cv2.LINE_AA)
    text = f"pupil {m.pupil.major:.1f} px" if m.pupil is not None else ("no pupil" if m.open else "closed")
    scale = max(0.35, min(result.image.shape) / 500)
    cv2.putText(
        canvas, text, (4, int(18 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, WHITE, 1, cv2.LINE_AA
    )
    return canvas


def _floats(rows: Sequence[dict[str, object]], key: str) -> np.ndarray:
    return np.array([float(row[key]) if row.get(key) not in (None, "") else np.nan for row in rows])


def plot_pupil(rows: Sequence[dict[str, object]], path: Path, title: str = "") -> None:
    """pupil.png: diameter and centre over time (time_s, else frame), blink frames shaded."""
    has_time = all(row.get("time_s") not in (None, "") for row in rows)
    x = _floats(rows, "time_s" if has_time else "frame")
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(x, _floats(rows, "pupil_major"), ".-", label="major axis")
    top.plot(x, _floats(rows, "pupil_minor"), ".-", alpha=0.6, label="minor axis")
    top.set_ylabel("pupil diameter (px)")
    bottom.plot(x, _floats(rows, "pupil_cx"), ".-", label="centre x")
    bottom.plot(x, _floats(rows, "pupil_cy"), ".-", label="centre y")
    bottom.set_ylabel("pupil centre (px)")
    bottom.set_xlabel("time (s)" if has_time else "frame")
    blink = [int(row.get("blink") or 0) for row in rows]
    count = 0
    for i, value in enumerate(blink):
        if value:
            count += i == 0 or not blink[i - 1]
            for ax in (top, bottom):
                ax.axvspan(x[i] - step / 2, x[i] + step / 2, color="0.8", lw=0)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    heading = (
        f"{len(rows)} frames, {count} blink{'s' if count != 1 else ''} (shaded: blinks, evaluation/blinks.py)"
    )
    top.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
