"""The one tiler: caption strips above BGR tiles, and tiles laid out in rows."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["caption", "tile_grid"]


def caption(tile: np.ndarray, lines: list[str], scale: float = 0.5) -> np.ndarray:
    """Put a white strip with one or more lines of black text above a BGR tile."""
    line_h = int(34 * scale) + 4
    strip = np.full((line_h * len(lines) + 4, tile.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        baseline = line_h * (i + 1) - 2
        cv2.putText(strip, text, (5, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, tile])


def tile_grid(tiles: list[np.ndarray], columns: int, gutter: int = 4) -> np.ndarray:
    """Same-size BGR tiles in rows of ``columns`` (white padding), with a white gutter of ``gutter`` px."""
    padded = [
        cv2.copyMakeBorder(t, 0, gutter, 0, gutter, cv2.BORDER_CONSTANT, value=(255, 255, 255)) for t in tiles
    ]
    columns = min(columns, len(padded))
    padded += [np.full_like(padded[0], 255)] * (-len(padded) % columns)
    rows = [np.hstack(padded[i : i + columns]) for i in range(0, len(padded), columns)]
    return np.vstack(rows)
