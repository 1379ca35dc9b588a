"""Your frames in a plain folder: ``images/<name>.<png|jpg|jpeg|bmp|tif|tiff>`` with ``masks/<name>.png``.

Layout under the data root (what dataset.importers writes):
- ``images/<name>.<suffix>``: a frame of any size, 8- or 16-bit, gray or colour, read as
  segment.py reads frames (dataset.model_frame.read_any_image). Hidden files are skipped.
- ``masks/<name>.png``: its class mask, one channel (8-bit gray or palette PNG), class index 0..3,
  255 = ignore, at the frame's size. A frame without a mask is unlabelled; a mask without a frame
  is an error, and so is a mask in another format (masks must be lossless).
- ``<name>`` may hold sub-folders. The first one is the frame's group (``"."`` for frames directly
  under images/), which plays the part of an OpenEDS sequence: ``create_kfolds --by sequence``
  holds out whole groups, and validate.py reports per group.

A frame's key is its name (``"left/0001"``, where OpenEDS has ``"S_0/3"``); sample lists name its
mask relative to the root (``masks/left/0001.png``, as OpenEDS lists name ``S_0/label_3.npy``) and
its prediction is ``<save-dir>/left/0001.npy``.

Frames and masks are fitted into the models' 640 x 400 as segment.py fits frames
(dataset.model_frame: resized keeping the aspect ratio and centred on black; masks
nearest-neighbour). The padding is labelled background (0), not ignore (255): segment.py shows the
models these black bars, so they learn that the bars are background (left unlabelled, a dark bar
beside the eye would be free to read as pupil). The price: a score counts the bars as (easy)
background pixels, in training's validation and validate.py alike; this touches the background
IoU only, and frames of the 1.6 aspect have no bars. Predictions are written in the same
640 x 400 frame (uint8 .npy, as for OpenEDS), so validate.py scores them against the fitted masks;
segment.py gives masks at each frame's own size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dataset.model_frame import (
    IGNORE_INDEX,
    IMAGE_SUFFIXES,
    NUM_CLASSES,
    place_in_model_frame,
    place_mask_in_model_frame,
    read_any_image,
)
from utils.errors import InputError

__all__ = [
    "KeyIndex",
    "IMAGES_DIR",
    "MASKS_DIR",
    "ROOT_GROUP",
    "group_of",
    "check_folder_key",
    "folder_key_of",
    "natural_order",
    "FolderIndex",
]

IMAGES_DIR = "images"
MASKS_DIR = "masks"
MASK_SUFFIX = ".png"
ROOT_GROUP = "."  # the group of frames directly under images/

_SUFFIXES = "|".join(re.escape(suffix[1:]) for suffix in IMAGE_SUFFIXES)
# A sample-list line: the mask (masks/<key>.png) or the frame (images/<key>.<suffix>).
_LINE_RE = re.compile(rf"{MASKS_DIR}/(.+)\.png|{IMAGES_DIR}/(.+)\.(?:{_SUFFIXES})", re.IGNORECASE)


def group_of(key: str) -> str:
    """A key's group: its first folder (``"left/0001"`` -> ``"left"``, ``"S_0/3"`` -> ``"S_0"``), else ``"."``."""
    return key.split("/", 1)[0] if "/" in key else ROOT_GROUP


def check_folder_key(key: str) -> str:
    """``key`` if it can name a frame of a plain folder (a relative path without empty, . or .. parts), else ValueError."""
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a plain-folder frame name: {key!r}")
    return key


def folder_key_of(line: str) -> str:
    """The key a sample-list line names (``masks/left/0001.png`` or ``images/left/0001.jpg``); ValueError if none."""
    match = _LINE_RE.fullmatch(line.strip())
    if match is None:
        raise ValueError(f"not a plain-folder sample name: {line!r}")
    return check_folder_key(match.group(1) or match.group(2))


def natural_order(text: str) -> list[object]:
    """Sort key that puts ``S_2`` before ``S_10`` and ``left/2`` before ``left/10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _hidden(path: Path, under: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(under).parts)


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise InputError("image not found", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError("not a readable image (corrupt, truncated or not an image?)", path) from None


def _open_mask(path: Path, image: Path) -> Image.Image:
    """The mask file opened (header read only) and checked: PNG, one channel, its image's size."""
    image_width, image_height = _image_size(image)
    try:
        mask = Image.open(path)
    except FileNotFoundError:
        raise InputError("mask not found", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError("not a readable PNG mask (corrupt or truncated?)", path) from None
    if mask.format != "PNG" or mask.mode not in ("L", "P"):
        kind = f"a {mask.format} image in PIL mode {mask.mode}"
        mask.close()
        raise InputError(
            f"expected a one-channel 8-bit PNG of class indices (gray or palette), got {kind}", path
        )
    width, height = mask.size
    if (width, height) != (image_width, image_height):
        mask.close()
        raise InputError(
            f"mask is {width}x{height} (WxH) but its image {image.name} is {image_width}x{image_height}", path
        )
    return mask


class KeyIndex:
    """What both layouts' indexes share: `all_keys()` in index order and the `labeled` set give
    the labelled and unlabelled keys (dataset.openeds.OpenEDSIndex and FolderIndex)."""

    labeled: set[str]

    def all_keys(self) -> list[str]:
        raise NotImplementedError

    def labeled_keys(self) -> list[str]:
        """Keys of frames with a label, in index order."""
        return [key for key in self.all_keys() if key in self.labeled]

    def unlabeled_keys(self) -> list[str]:
        """Keys of frames without a label, in index order."""
        return [key for key in self.all_keys() if key not in self.labeled]


@dataclass
class FolderIndex(KeyIndex):
    """Which frames of a plain folder exist and which carry masks, in natural order by group.

    The same interface as dataset.openeds.OpenEDSIndex (groups stand for sequences, `frames` maps a
    group to its keys), plus the readers the Datasets use: frames and masks fitted into 640 x 400.
    """

    root: Path
    sequences: list[str]
    frames: dict[str, list[str]]
    labeled: set[str]
    images: dict[str, Path]
    masks: dict[str, Path]

    @classmethod
    def from_dir(cls, root: Path) -> FolderIndex:
        """Index ``root/images`` and ``root/masks`` (file names only; nothing is decoded)."""
        root = Path(root)
        images_dir, masks_dir = root / IMAGES_DIR, root / MASKS_DIR
        if not images_dir.is_dir():
            raise InputError("data directory has no images/ folder", root)
        images: dict[str, Path] = {}
        for path in sorted(images_dir.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not _hidden(path, images_dir):
                key = path.relative_to(images_dir).with_suffix("").as_posix()
                if key in images:
                    raise InputError(
                        f"{images[key].name} and {path.name} are the same frame; keep one", path.parent
                    )
                images[key] = path
        if not images:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", images_dir)
        masks: dict[str, Path] = {}
        for path in sorted(masks_dir.rglob("*")) if masks_dir.is_dir() else []:
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() or _hidden(path, masks_dir):
                continue
            if path.suffix.lower() != MASK_SUFFIX:
                raise InputError(f"masks must be PNG files (lossless class indices), got {path.suffix}", path)
            key = path.relative_to(masks_dir).with_suffix("").as_posix()
            if key not in images:
                raise InputError(f"mask without an image (no {IMAGES_DIR}/{key}.<{_SUFFIXES}>)", path)
            masks[key] = path
        frames: dict[str, list[str]] = {}
        for key in sorted(images, key=natural_order):
            frames.setdefault(group_of(key), []).append(key)
        groups = sorted(frames, key=natural_order)
        return cls(root, groups, {group: frames[group] for group in groups}, set(masks), images, masks)

    def all_keys(self) -> list[str]:
        """Every frame key, by group then name."""
        return [key for group in self.sequences for key in self.frames[group]]

    @staticmethod
    def sequence_of(key: str) -> str:
        """A key's group: ``"left/0001"`` -> ``"left"``."""
        return group_of(key)

    @staticmethod
    def sample_name(key: str) -> str:
        """How sample lists name a frame: its mask, ``masks/<key>.png``."""
        return f"{MASKS_DIR}/{key}{MASK_SUFFIX}"

    @staticmethod
    def key(name: str) -> str:
        """Keys are names already (OpenEDS frames have several name forms, plain ones one)."""
        return name

    def image_path(self, key: str) -> Path:
        """The frame's file (``images/<key>`` with no suffix for a key this folder does not hold)."""
        return self.images.get(key, self.root / IMAGES_DIR / key)

    def label_path(self, key: str) -> Path:
        return self.masks.get(key, self.root / MASKS_DIR / f"{key}{MASK_SUFFIX}")

    def read_image(self, key: str) -> np.ndarray:
        """The frame as uint8 (400, 640), fitted into the model frame."""
        return place_in_model_frame(read_any_image(self.image_path(key)))[0]

    def read_label(self, key: str) -> np.ndarray:
        """The mask as uint8 (400, 640), fitted like its frame: values 0..3 and 255 (ignore)."""
        path = self.label_path(key)
        with _open_mask(path, self.image_path(key)) as mask_file:
            try:
                mask = np.array(mask_file)  # palette PNGs give their indices, as labelling tools mean them
            except (OSError, ValueError, SyntaxError):
                raise InputError("not a readable PNG mask (corrupt or truncated?)", path) from None
        valid = (mask < NUM_CLASSES) | (mask == IGNORE_INDEX)
        if not valid.all():
            bad = np.unique(mask[~valid])[:5].tolist()
            raise InputError(
                f"values must be 0..{NUM_CLASSES - 1} or {IGNORE_INDEX} (ignore), found {bad}", path
            )
        return place_mask_in_model_frame(mask)

    def check_image(self, key: str) -> None:
        """The frame's header only (readable, a size)."""
        _image_size(self.image_path(key))

    def check_label(self, key: str) -> None:
        """The mask's header only: PNG, one channel, its frame's size."""
        _open_mask(self.label_path(key), self.image_path(key)).close()
