"""The OpenEDS 2020 sparse-segmentation layout: names, readers, frame index and torch Datasets.

Layout under the data root: ``S_<k>/<n>.png`` (8-bit gray, 640x400), sparse ``S_<k>/label_<n>.npy``
(uint8 (400, 640), values 0..3), and optional ``images.txt`` / ``labels.txt`` listing them. In memory
a frame is always the key ``"S_<k>/<n>"``; files and sample lists use the relpaths built from it.
Every reader checks what it reads and raises a one-line ``InputError`` naming the file.

The other layout, your frames in a plain folder (``images/`` + ``masks/``, dataset/folder.py), is
told apart here, by the data root (`is_folder_layout`): `open_index` gives the index of either,
and the Datasets, sample lists and prediction names take the frames of either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dataset.folder import IMAGES_DIR, FolderIndex, KeyIndex, check_folder_key, folder_key_of
from dataset.model_frame import (
    CLASS_NAMES,
    IGNORE_INDEX,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    NUM_CLASSES,
    read_image_bytes,
)
from utils.atomic import write_bytes_atomic
from utils.errors import InputError

__all__ = [
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
    "NUM_CLASSES",
    "IGNORE_INDEX",
    "CLASS_NAMES",
    "parse_sample_name",
    "frame_key",
    "in_data_dir",
    "image_relpath",
    "label_relpath",
    "pred_relpath",
    "read_image",
    "read_image_bytes",
    "read_label",
    "check_image_header",
    "check_label_header",
    "read_sample_list",
    "write_sample_list",
    "OpenEDSIndex",
    "is_folder_layout",
    "open_index",
    "frame_reader",
    "LabeledDataset",
    "UnlabeledDataset",
]

# "S_0/label_3.npy" (label), "S_0/3.png" (image), "S_0/3.npy" (prediction / test GT) or the key "S_0/3".
_SAMPLE_RE = re.compile(r"(S_\d+)/(?:label_(\d+)\.npy|(\d+)(?:\.png|\.npy)?)")
_SEQUENCE_RE = re.compile(r"S_(\d+)")
_IMAGE_FILE_RE = re.compile(r"(\d+)\.png")
_LABEL_FILE_RE = re.compile(r"label_(\d+)\.npy")


def parse_sample_name(name: str) -> tuple[str, int]:
    """Split any sample name form into (sequence, frame); ValueError if it is not one."""
    match = _SAMPLE_RE.fullmatch(name.strip())
    if match is None:
        raise ValueError(f"not an OpenEDS sample name: {name!r}")
    return match.group(1), int(match.group(2) or match.group(3))


def frame_key(sequence: str, frame: int) -> str:
    """The canonical in-memory key of a frame: ``"S_0/3"``."""
    return f"{sequence}/{frame}"


def image_relpath(key: str) -> str:
    """``"S_0/3"`` -> ``"S_0/3.png"``."""
    sequence, frame = parse_sample_name(key)
    return f"{sequence}/{frame}.png"


def label_relpath(key: str) -> str:
    """``"S_0/3"`` -> ``"S_0/label_3.npy"`` (also the form used by sample lists)."""
    sequence, frame = parse_sample_name(key)
    return f"{sequence}/label_{frame}.npy"


def pred_relpath(key: str) -> str:
    """``"S_0/3"`` -> ``"S_0/3.npy"`` (submission and test ground-truth form); a plain folder's
    ``"left/0001"`` -> ``"left/0001.npy"``: a prediction mirrors its frame's key."""
    try:
        sequence, frame = parse_sample_name(key)
    except ValueError:
        return f"{check_folder_key(key)}.npy"
    return f"{sequence}/{frame}.npy"


def read_image(path: Path) -> np.ndarray:
    """Read one frame as uint8 (400, 640).

    Only 8-bit single-channel PNGs are accepted, as in the challenge data: silently converting
    colour or 16-bit images would hide a wrong data folder.
    """
    data = read_image_bytes(path)
    # An empty buffer is an OpenCV assertion error, not a None.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if image is None:
        raise InputError("not a readable image (corrupt or truncated PNG?)", path)
    if image.ndim != 2:
        raise InputError(f"expected a grayscale image, got {image.shape[2]} channels", path)
    if image.dtype != np.uint8:
        raise InputError(f"expected an 8-bit image, got {image.dtype}", path)
    if image.shape != (IMAGE_HEIGHT, IMAGE_WIDTH):
        raise InputError(
            f"expected {IMAGE_WIDTH}x{IMAGE_HEIGHT} (WxH), got {image.shape[1]}x{image.shape[0]}", path
        )
    return image


def _load_label(path: Path, *, header_only: bool) -> np.ndarray:
    """np.load a mask and check what its header says: one array, (400, 640), an integer dtype.
    With ``header_only`` the file is memory-mapped, so only its header is read."""
    try:
        label = np.load(path, mmap_mode="r" if header_only else None, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("label not found", path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable .npy array ({exc})", path) from None
    if not isinstance(label, np.ndarray):
        raise InputError("expected a single .npy array, got an .npz archive", path)
    if label.shape != (IMAGE_HEIGHT, IMAGE_WIDTH):
        raise InputError(f"expected shape ({IMAGE_HEIGHT}, {IMAGE_WIDTH}), got {label.shape}", path)
    if not np.issubdtype(label.dtype, np.integer):
        raise InputError(f"expected an integer (uint8) array, got {label.dtype}", path)
    return label


def read_label(path: Path, *, allow_ignore: bool = False) -> np.ndarray:
    """Read one mask as uint8 (400, 640) with values 0..3 (and 255 when ``allow_ignore``).

    Integer arrays of any dtype are accepted and cast when their values are in range; float, bool
    and object arrays are refused because their meaning as class ids is ambiguous.
    """
    label = _load_label(path, header_only=False)
    valid = (label >= 0) & (label < NUM_CLASSES)
    if allow_ignore:
        valid |= label == IGNORE_INDEX
    if not valid.all():
        bad = np.unique(label[~valid])[:5].tolist()
        allowed = f"0..{NUM_CLASSES - 1}" + (f" or {IGNORE_INDEX}" if allow_ignore else "")
        raise InputError(f"values must be {allowed}, found {bad}", path)
    return label.astype(np.uint8, copy=False)


def in_data_dir(path: Path, data_dir: Path) -> Path:
    """``path`` as given, unless only the same relative path under the data dir exists.

    The recipe joined its --label-file to --data-dir; a path that exists as given still wins.
    """
    path, data_dir = Path(path), Path(data_dir)
    return data_dir / path if not path.exists() and (data_dir / path).exists() else path


def check_image_header(path: Path) -> None:
    """Check a frame's PNG header only (format, 8-bit gray, 640x400) without decoding its pixels.

    The cheap check of frames a run reads later and does not keep (pseudo-labelled frames): a
    truncated pixel stream still passes, anything else read_image refuses does not.
    """
    try:
        with Image.open(path) as image:
            kind, mode, (width, height) = image.format, image.mode, image.size
    except FileNotFoundError:
        raise InputError("image not found", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError("not a readable image (corrupt or truncated PNG?)", path) from None
    if kind != "PNG":
        raise InputError(f"expected a PNG image, got {kind}", path)
    if mode not in ("L", "1"):  # cv2 expands 1-bit gray to 8 bits, as read_image accepts
        raise InputError(f"expected an 8-bit grayscale image, got PIL mode {mode}", path)
    if (height, width) != (IMAGE_HEIGHT, IMAGE_WIDTH):
        raise InputError(f"expected {IMAGE_WIDTH}x{IMAGE_HEIGHT} (WxH), got {width}x{height}", path)


def check_label_header(path: Path) -> None:
    """Check a mask's .npy header and length (shape (400, 640), integer dtype), not its values."""
    _load_label(path, header_only=True)


def _listed_key(line: str) -> str:
    """The key of a sample-list line: an OpenEDS name in any form, or a plain folder's mask or image."""
    try:
        return frame_key(*parse_sample_name(line))
    except ValueError:
        return folder_key_of(line)


def read_sample_list(path: Path) -> list[str]:
    """Read a sample list into frame keys: ``S_0/label_3.npy`` (or a plain folder's ``masks/left/0001.png``)
    per line, blank lines ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise InputError("sample list not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read sample list ({exc})", path) from None
    keys: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            key = _listed_key(line)
        except ValueError:
            raise InputError(
                f"line {number}: not a sample name like S_0/label_3.npy or masks/<name>.png: {line!r}", path
            ) from None
        if key in seen:
            raise InputError(f"line {number}: duplicate sample {line.strip()!r}", path)
        seen.add(key)
        keys.append(key)
    if not keys:
        raise InputError("no samples", path)
    return keys


_STYLES: dict[str, Callable[[str], str]] = {
    "label": label_relpath,
    "image": image_relpath,
    "pred": pred_relpath,
}


def write_sample_list(path: Path, keys: Iterable[str], style: str | Callable[[str], str] = "label") -> None:
    """Write keys one per line as label (default), image or pred relpaths, or as `style(key)`
    (an index's `sample_name`, for a plain folder's keys); atomically."""
    to_name = style if callable(style) else _STYLES[style]
    text = "".join(f"{to_name(key)}\n" for key in keys)
    write_bytes_atomic(Path(path), text.encode(), what="sample list")


def _read_listed_frames(path: Path) -> list[tuple[str, int]]:
    return [parse_sample_name(key) for key in read_sample_list(path)]


def _scan_frames(root: Path, pattern: re.Pattern[str]) -> list[tuple[str, int]]:
    """(sequence, frame) of every file in ``root/S_<k>/`` whose name matches ``pattern``."""
    found = []
    for seq_dir in root.iterdir():
        if seq_dir.is_dir() and _SEQUENCE_RE.fullmatch(seq_dir.name):
            for entry in os.scandir(seq_dir):
                match = pattern.fullmatch(entry.name)
                if match:
                    found.append((seq_dir.name, int(match.group(1))))
    return found


@dataclass
class OpenEDSIndex(KeyIndex):
    """Which frames exist and which carry labels, in natural order (S_2 before S_10)."""

    root: Path
    sequences: list[str]
    frames: dict[str, list[int]]
    labeled: set[str]

    @classmethod
    def from_dir(cls, root: Path) -> OpenEDSIndex:
        """Index a data root from images.txt / labels.txt, scanning the folders for a missing list.

        Files are only checked for existence (labels and their images), never decoded.
        """
        root = Path(root)
        if not root.exists():
            raise InputError("data directory not found", root)
        if not root.is_dir():
            raise InputError("data directory is not a directory", root)
        images_txt, labels_txt = root / "images.txt", root / "labels.txt"
        images = (
            _read_listed_frames(images_txt) if images_txt.is_file() else _scan_frames(root, _IMAGE_FILE_RE)
        )
        labels = (
            _read_listed_frames(labels_txt) if labels_txt.is_file() else _scan_frames(root, _LABEL_FILE_RE)
        )
        labeled: set[str] = set()
        for sequence, frame in labels:
            key = frame_key(sequence, frame)
            if not (root / label_relpath(key)).is_file():
                raise InputError(f"label listed in {labels_txt.name} not found", root / label_relpath(key))
            if not (root / image_relpath(key)).is_file():
                raise InputError(f"image of label {label_relpath(key)} not found", root / image_relpath(key))
            labeled.add(key)
        frames: dict[str, set[int]] = {}
        for sequence, frame in [*images, *labels]:
            frames.setdefault(sequence, set()).add(frame)
        if not frames:
            raise InputError("no sequences found (expected S_<k>/<n>.png files)", root)
        sequences = sorted(frames, key=lambda name: int(name[2:]))
        return cls(root, sequences, {sequence: sorted(frames[sequence]) for sequence in sequences}, labeled)

    def all_keys(self) -> list[str]:
        """Every frame key, by sequence then frame number."""
        return [frame_key(sequence, frame) for sequence in self.sequences for frame in self.frames[sequence]]

    @staticmethod
    def sequence_of(key: str) -> str:
        """``"S_0/3"`` -> ``"S_0"``."""
        return parse_sample_name(key)[0]

    @staticmethod
    def sample_name(key: str) -> str:
        """How sample lists name a frame: ``S_0/label_3.npy`` (another layout's key as it is)."""
        try:
            return label_relpath(key)
        except ValueError:
            return key

    def image_path(self, key: str) -> Path:
        return self.root / image_relpath(key)

    def label_path(self, key: str) -> Path:
        return self.root / label_relpath(key)


def is_folder_layout(root: Path) -> bool:
    """A plain folder (dataset/folder.py): an images/ folder and no OpenEDS S_<k>/ folders."""
    root = Path(root)
    if not (root / IMAGES_DIR).is_dir():
        return False
    return not any(_SEQUENCE_RE.fullmatch(entry.name) and entry.is_dir() for entry in root.iterdir())


def open_index(root: Path) -> OpenEDSIndex | FolderIndex:
    """The frame index of a data root in either layout (OpenEDS S_<k>/ folders, or images/ + masks/)."""
    return FolderIndex.from_dir(root) if is_folder_layout(root) else OpenEDSIndex.from_dir(root)


class _OpenEDSFrames:
    """Frames of an OpenEDS root read by key: what the Datasets, the prediction runs and the
    scoring need of a layout (dataset.folder.FolderIndex is the plain folder's)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def key(self, name: str) -> str:
        """The canonical key of any name form; a plain folder's name is an error naming the root."""
        try:
            return frame_key(*parse_sample_name(name))
        except ValueError:
            raise InputError(
                f"{name!r} is not an OpenEDS frame name (S_<k>/<n>), but this data dir has the OpenEDS "
                "layout (a list made for another data dir?)",
                self.root,
            ) from None

    def image_path(self, key: str) -> Path:
        return self.root / image_relpath(self.key(key))

    def label_path(self, key: str) -> Path:
        return self.root / label_relpath(self.key(key))

    def read_image(self, key: str) -> np.ndarray:
        return read_image(self.image_path(key))

    def read_label(self, key: str) -> np.ndarray:
        return read_label(self.label_path(key))

    def check_image(self, key: str) -> None:
        check_image_header(self.image_path(key))

    def check_label(self, key: str) -> None:
        check_label_header(self.label_path(key))


def frame_reader(root: Path) -> _OpenEDSFrames | FolderIndex:
    """Reads the frames and labels of a data root in either layout by key (uint8 (400, 640) arrays)."""
    return FolderIndex.from_dir(root) if is_folder_layout(root) else _OpenEDSFrames(root)


def _image_tensor(image: Any) -> torch.Tensor:
    """(H, W) or (H, W, C) array -> (C, H, W) tensor, dtype kept; tensors pass through unchanged."""
    if isinstance(image, torch.Tensor):
        return image
    image = np.ascontiguousarray(image)  # flips leave negative strides that torch refuses
    tensor = torch.from_numpy(image)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _mask_tensor(mask: Any) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        return mask.long()
    return torch.from_numpy(np.ascontiguousarray(mask)).long()


class _FrameDataset(Dataset):
    """Frames by key with an optional per-process cache of the decoded arrays."""

    def __init__(self, root: Path, keys: list[str], cache: bool = False) -> None:
        self.root = Path(root)
        self.frames = frame_reader(self.root)  # either layout
        self.keys = [self.frames.key(key) for key in keys]
        self.cache = cache
        # Filled lazily, so each DataLoader worker keeps its own copy (~0.25 MB per image, 0.5 with mask).
        self._cached: dict[str, tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _load(self, key: str) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def _check_headers(self, key: str) -> None:
        raise NotImplementedError

    def check_all(self, *, decode: bool) -> list[str]:
        """Check every frame now; the one-line errors of the bad ones (empty if all are good).

        decode: read and check each frame in full (and keep it when caching, so nothing is
        decoded twice); else check file headers only.
        """
        errors = []
        for key in self.keys:
            try:
                if not decode:
                    self._check_headers(key)
                elif self.cache:
                    self._cached[key] = self._load(key)
                else:
                    self._load(key)
            except InputError as exc:
                errors.append(str(exc))
        return errors

    def _arrays(self, key: str) -> tuple[np.ndarray, ...]:
        if not self.cache:
            return self._load(key)
        if key not in self._cached:
            self._cached[key] = self._load(key)
        # Copies: the tensors handed out share memory with these arrays, and augmentation
        # (training/augment.py) may work on them in place.
        return tuple(array.copy() for array in self._cached[key])


class LabeledDataset(_FrameDataset):
    """Labeled frames -> ``{"image": uint8 (1, H, W), "mask": int64 (H, W), "name": key}``.

    Augmentation is training's (training/augment.py wraps this dataset). ``label_dir`` reads
    ``S_<k>/label_<n>.npy`` from another folder (pseudo-labels), whose masks may hold IGNORE_INDEX;
    OpenEDS layout only. A plain folder's masks may hold IGNORE_INDEX too.
    """

    def __init__(
        self,
        root: Path,
        keys: list[str],
        label_dir: Path | None = None,
        cache: bool = False,
    ) -> None:
        super().__init__(root, keys, cache)
        self.label_dir = Path(label_dir) if label_dir is not None else None
        if self.label_dir is not None and isinstance(self.frames, FolderIndex):
            raise InputError(
                "pseudo-labels are read for data dirs of the OpenEDS layout only, not a plain images/ + masks/ folder",
                self.label_dir,
            )

    def _load(self, key: str) -> tuple[np.ndarray, ...]:
        image = self.frames.read_image(key)
        if self.label_dir is None:
            return image, self.frames.read_label(key)
        return image, read_label(self.label_dir / label_relpath(key), allow_ignore=True)

    def _check_headers(self, key: str) -> None:
        self.frames.check_image(key)
        if self.label_dir is None:
            self.frames.check_label(key)
        else:
            check_label_header(self.label_dir / label_relpath(key))

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.keys[index]
        image, mask = self._arrays(key)
        return {"image": _image_tensor(image), "mask": _mask_tensor(mask), "name": key}


class UnlabeledDataset(_FrameDataset):
    """Frames without labels (inference, pseudo-labelling) -> ``{"image": uint8 (1, H, W), "name": key}``."""

    def _load(self, key: str) -> tuple[np.ndarray, ...]:
        return (self.frames.read_image(key),)

    def _check_headers(self, key: str) -> None:
        self.frames.check_image(key)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self.keys[index]
        (image,) = self._arrays(key)
        return {"image": _image_tensor(image), "name": key}
