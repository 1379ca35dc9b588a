"""The models' frame: 640 x 400 and four classes; any image read as 8-bit gray and fitted into it.

Every model sees frames of IMAGE_WIDTH x IMAGE_HEIGHT, the OpenEDS size. Frames of other kinds
(segment.py's inputs, the plain-folder layout's frames) are read by `read_any_image`: png,
jpg/jpeg, bmp, tif/tiff, 8- or 16-bit, gray or colour (colour -> gray with OpenCV's BGR weights).
16-bit frames are scaled to 8 bits by the bit depth their brightest pixel needs, at least 8 (a 10-
or 12-bit sensor's values in a 16-bit file fill 0..255; a frame whose brightest pixel is darker
than the sensor's full scale comes out brighter).

`place_in_model_frame` fits a frame of another size inside 640 x 400 keeping its aspect ratio,
centred on a black canvas (black as the model's own padding and the IR headset's dark vignette);
a frame of the same 1.6 aspect is a plain resize. `place_mask_in_model_frame` fits its class mask
the same way, nearest-neighbour, the padding background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from utils.errors import InputError

__all__ = [
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
    "NUM_CLASSES",
    "IGNORE_INDEX",
    "CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "read_image_bytes",
    "to_gray8",
    "read_any_image",
    "Placement",
    "model_frame_placement",
    "place_in_model_frame",
    "place_mask_in_model_frame",
]

IMAGE_HEIGHT = 400
IMAGE_WIDTH = 640
NUM_CLASSES = 4
IGNORE_INDEX = 255
CLASS_NAMES = ("background", "sclera", "iris", "pupil")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image_bytes(path: Path) -> bytes:
    """An image file's bytes; a one-line InputError naming it when it is missing or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("image not found", path) from None
    except OSError as exc:
        raise InputError(f"cannot read image ({exc.strerror})", path) from None


def to_gray8(image: np.ndarray, path: object = None) -> np.ndarray:
    """Any image OpenCV decodes (gray, BGR, BGRA; 8- or 16-bit) -> gray uint8 (see module docstring)."""
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code) if image.shape[2] in (3, 4) else image[..., 0]
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        bits = max(8, int(image.max()).bit_length())
        return cv2.convertScaleAbs(image, alpha=255.0 / ((1 << bits) - 1))
    raise InputError(f"unsupported pixel type {image.dtype} (8- or 16-bit images only)", path)


def read_any_image(path: Path) -> np.ndarray:
    """Read an image file as gray uint8 at its own size; a one-line InputError naming it otherwise."""
    data = read_image_bytes(path)
    # IMREAD_ANYDEPTH keeps 16 bits and (without IMREAD_COLOR) reads colour as gray. An empty
    # buffer is an OpenCV assertion, not a None.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH) if data else None
    if image is None or image.size == 0:
        raise InputError("not a readable image (corrupt, truncated or not an image?)", path)
    return to_gray8(image, path)


@dataclass(frozen=True)
class Placement:
    """Where a frame sits in the model's 640 x 400 canvas: its resized box (x, y, width, height)."""

    x: int
    y: int
    width: int
    height: int


def model_frame_placement(height: int, width: int) -> Placement:
    """The box a (height, width) frame takes in the canvas: as large as fits, centred."""
    scale = min(IMAGE_WIDTH / width, IMAGE_HEIGHT / height)
    w = min(IMAGE_WIDTH, max(1, round(width * scale)))
    h = min(IMAGE_HEIGHT, max(1, round(height * scale)))
    return Placement((IMAGE_WIDTH - w) // 2, (IMAGE_HEIGHT - h) // 2, w, h)


def _on_canvas(array: np.ndarray, box: Placement, interpolation: int) -> np.ndarray:
    """`array` resized into `box` of a zero (black, background) 400 x 640 canvas."""
    height, width = array.shape
    if (box.width, box.height) != (width, height):
        array = cv2.resize(array, (box.width, box.height), interpolation=interpolation)
    if (box.width, box.height) == (IMAGE_WIDTH, IMAGE_HEIGHT):
        return array
    canvas = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH), np.uint8)
    canvas[box.y : box.y + box.height, box.x : box.x + box.width] = array
    return canvas


def place_in_model_frame(image: np.ndarray) -> tuple[np.ndarray, Placement]:
    """Gray uint8 (H, W) -> (the model's 400 x 640 canvas, where the frame sits in it); see the module docstring."""
    box = model_frame_placement(*image.shape)
    shrink = box.width < image.shape[1] or box.height < image.shape[0]
    return _on_canvas(image, box, cv2.INTER_AREA if shrink else cv2.INTER_LINEAR), box


def place_mask_in_model_frame(mask: np.ndarray) -> np.ndarray:
    """Class mask uint8 (H, W) -> (400, 640) where place_in_model_frame puts a frame of its size.

    Nearest-neighbour, so no class value is invented; OpenCV's INTER_NEAREST_EXACT samples at pixel
    centres as the image's resize does (plain INTER_NEAREST shifts the mask by half a source pixel).
    The padding is 0, background.
    """
    return _on_canvas(mask, model_frame_placement(*mask.shape), cv2.INTER_NEAREST_EXACT)
