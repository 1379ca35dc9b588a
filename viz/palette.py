"""The one class palette of every picture (overlays, contact sheet, report), in OpenCV's BGR order."""

from __future__ import annotations

import numpy as np

__all__ = ["PALETTE", "colour_label"]

# Per class: background black, sclera green, iris cyan, pupil magenta. None of them is near the
# orange-red that overlays use for wrong pixels.
PALETTE = np.array([[0, 0, 0], [60, 220, 60], [255, 200, 0], [255, 60, 255]], np.uint8)


def colour_label(label: np.ndarray) -> np.ndarray:
    """Map a (H, W) class mask to a (H, W, 3) BGR picture."""
    return PALETTE[np.clip(label, 0, len(PALETTE) - 1)]
