"""Overlays of the worst frames: truth and prediction outlines on the gray image, plus a contact sheet.

Each class is outlined in its own colour, the truth as a solid line and the prediction dashed,
and pixels where the two disagree are tinted, so a wrong frame reads at a glance.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dataset.openeds import CLASS_NAMES, frame_reader
from evaluation.report import FrameScore, GroundTruth, read_prediction, write_bytes_atomic
from utils.errors import InputError
from viz.palette import PALETTE
from viz.tiles import caption, tile_grid

__all__ = ["draw_overlay", "write_worst_overlays"]

WRONG_TINT = np.array([0, 70, 255], np.float32)  # orange-red: prediction != truth
DASH = 5  # pixels on, then off, along a predicted outline
SHEET_TILE = (320, 200)  # contact-sheet tile (W, H): half size
SHEET_COLUMNS = 4


def _outlines(mask: np.ndarray, cls: int) -> list[np.ndarray]:
    """Contours of the region of class ``cls`` and the classes inside it.

    Classes nest from outside in (sclera around iris around pupil), so ``mask >= cls`` gives one
    boundary per class instead of the sclera's inner edge doubling the iris's outer edge.
    """
    contours, _ = cv2.findContours((mask >= cls).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return list(contours)


def _draw_dashed(canvas: np.ndarray, contour: np.ndarray, colour: tuple[int, int, int]) -> None:
    points = contour.reshape(-1, 2)
    for start in range(0, len(points), 2 * DASH):
        dash = points[start : start + DASH + 1]
        if len(dash) > 1:
            cv2.polylines(canvas, [dash.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Gray (H, W) image -> BGR (H, W, 3) with wrong pixels tinted, truth solid, prediction dashed."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    wrong = truth != pred
    canvas[wrong] = (0.55 * canvas[wrong] + 0.45 * WRONG_TINT).astype(np.uint8)
    for cls in range(1, len(PALETTE)):  # background has no outline
        colour = tuple(int(c) for c in PALETTE[cls])
        cv2.drawContours(canvas, _outlines(truth, cls), -1, colour, 1, cv2.LINE_AA)
        for contour in _outlines(pred, cls):
            _draw_dashed(canvas, contour, colour)
    return canvas


def _encode_png(image: np.ndarray, path: Path) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise InputError("could not encode the overlay as PNG", path)
    return data.tobytes()


def _score_text(score: FrameScore) -> str:
    parts = [f"{name} {iou:.3f}" for name, iou in zip(CLASS_NAMES[1:], score.class_iou[1:], strict=True)]
    return "  ".join(parts)


def write_worst_overlays(
    out_dir: Path, worst: list[FrameScore], data_dir: Path, truth: GroundTruth, pred_dir: Path
) -> list[Path]:
    """One PNG per frame of ``worst`` (rank-prefixed names) and ``out_dir/worst.png``, their sheet.

    Everything is drawn in memory first, so a missing image fails before any file is written.
    Returns the written paths, the sheet last.
    """
    out_dir = Path(out_dir)
    legend = "truth solid, prediction dashed, wrong pixels orange"
    width = len(str(len(worst)))
    pictures: list[tuple[Path, np.ndarray]] = []
    tiles: list[np.ndarray] = []
    frames = frame_reader(Path(data_dir))  # either layout, in the models' 640 x 400 as scored
    for rank, score in enumerate(worst, start=1):
        image = frames.read_image(score.key)
        body = draw_overlay(image, truth.load(score.key), read_prediction(pred_dir, score.key))
        title = f"#{rank} {score.key}  mIoU {score.miou:.4f}"
        path = out_dir / f"{rank:0{width}d}_{score.key.replace('/', '_')}.png"
        pictures.append((path, caption(body, [title, f"{_score_text(score)}   ({legend})"], scale=0.5)))
        small = cv2.resize(body, SHEET_TILE, interpolation=cv2.INTER_AREA)
        tiles.append(caption(small, [title], scale=0.45))
    sheet_path = out_dir / "worst.png"
    sheet = caption(
        tile_grid(tiles, SHEET_COLUMNS), [f"{len(worst)} worst frames by mIoU, worst first ({legend})"], 0.55
    )
    pictures.append((sheet_path, sheet))
    for path, picture in pictures:
        write_bytes_atomic(path, _encode_png(picture, path))
    return [path for path, _ in pictures]
