"""Labelling tools -> a plain image/mask folder, and the model's masks -> LabelMe JSON.

    python -m dataset.importers cvat --src EXPORT --out DATA [--images FRAMES] [--map NAME=CLASS ...]
    python -m dataset.importers labelme --src JSONS --out DATA [--images FRAMES] [--map NAME=CLASS ...]

writes ``DATA/images/<name>.png`` (the frame: a PNG copied byte for byte, any other format decoded
and written as PNG at its own bit depth) and ``DATA/masks/<name>.png`` (uint8, one channel, class
index 0..3, 255 = ignore). ``<name>`` keeps the tool's sub-folders.

cvat: CVAT's "Segmentation mask 1.1" export. ``labelmap.txt`` names each colour, the colour PNGs
are ``SegmentationClass/<name>.png``, the frames listed in ``ImageSets/Segmentation/*.txt`` (every
mask when there is no list). The frames are ``JPEGImages/<name>.*`` of an export with images, else
``--images FRAMES/<name>.*``. A colour missing from labelmap.txt is an error.

labelme: one ``<name>.json`` per frame under SRC (sub-folders too), shapes ``polygon``,
``rectangle`` (2 corners) and ``circle`` (centre and a point on the circle); an ellipse drawn as a
polygon is a polygon. Other shape types (``mask``, ``line``, ``point``, ...) are errors. Shapes are
painted by class, background < sclera < iris < pupil < ignore, whatever their order in the file:
an iris drawn as a whole disk under the pupil is fine. Pixels no shape covers are background. The
frame is the JSON's ``imageData`` when it has one, else ``--images FRAMES/<name>.*``, else its
``imagePath`` (relative to the JSON's folder, as LabelMe reads it).

Class names (case, spaces, '_' and '-' do not matter):
    pupil -> 3; iris -> 2; sclera, eye white, eyewhite, white of the eye, white -> 1;
    background, bg, skin, eyelid, eyelids (LabelMe's _background_ too) -> 0;
    ignore, void, unknown, unlabeled, unlabelled -> 255.
``--map NAME=CLASS`` adds a name or overrides one (CLASS: 0, 1, 2, 3, 255 or a name above, e.g.
``--map "eye lash=ignore" --map lid=0``). A label with no class is an error naming it.

Nothing half-written: the folder is built in a hidden ``.<out>.<pid>.tmp`` next to OUT and renamed
to OUT at the end, so OUT must not exist yet (or be an empty folder). A bad file (missing, corrupt,
an unknown label or colour, a mask of another size than its frame) is a one-line error naming it,
exit code 2, and leaves no OUT. A killed import may leave the hidden folder, which is safe to delete.

`write_labelme` goes the other way: a class mask (the model's) as a LabelMe JSON that LabelMe
opens for correction and this importer reads back unchanged (see its docstring for the exceptions).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

if not __package__:  # run as a file (python dataset/importers.py): import from the repo root, as with -m
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataset.openeds import CLASS_NAMES, IGNORE_INDEX
from utils.atomic import write_text_atomic
from utils.errors import InputError, cli_entry

__all__ = [
    "TOOLS",
    "DEFAULT_CLASS_NAMES",
    "PAINT_ORDER",
    "IMAGE_SUFFIXES",
    "ImportResult",
    "class_mapping",
    "import_cvat",
    "import_labelme",
    "read_labelme",
    "write_labelme",
    "main",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Later classes are painted over earlier ones: the pupil wins over the iris, the iris over the
# sclera, and an ignore region over everything.
PAINT_ORDER = (0, 1, 2, 3, IGNORE_INDEX)
_CLASS_SYNONYMS: dict[int, tuple[str, ...]] = {
    3: ("pupil",),
    2: ("iris",),
    1: ("sclera", "eye white", "eyewhite", "white of the eye", "white"),
    0: ("background", "bg", "skin", "eyelid", "eyelids"),
    IGNORE_INDEX: ("ignore", "void", "unknown", "unlabeled", "unlabelled"),
}
DEFAULT_CLASS_NAMES: dict[str, int] = {name: cls for cls, names in _CLASS_SYNONYMS.items() for name in names}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LABELME_SHAPES = ("polygon", "rectangle", "circle")


def _class_name(cls: int) -> str:
    return "ignore" if cls == IGNORE_INDEX else CLASS_NAMES[cls]


def _normalise(name: str) -> str:
    """'Eye_White', ' eye-white ' and '_background_' -> 'eye white', 'background'."""
    return " ".join(re.split(r"[\s_\-]+", name.lower())).strip()


def class_mapping(overrides: list[str] | None = None) -> dict[str, int]:
    """Label name (normalised) -> class id: the defaults, then each ``NAME=CLASS`` of ``--map``."""
    mapping = dict(DEFAULT_CLASS_NAMES)
    for item in overrides or []:
        name, sep, target = item.partition("=")
        if not sep or not _normalise(name) or not target.strip():
            raise InputError(f"--map expects NAME=CLASS (e.g. 'eye white=sclera'), got {item!r}")
        target = target.strip()
        if target.isdigit() and int(target) in PAINT_ORDER:
            mapping[_normalise(name)] = int(target)
        elif _normalise(target) in DEFAULT_CLASS_NAMES:
            mapping[_normalise(name)] = DEFAULT_CLASS_NAMES[_normalise(target)]
        else:
            raise InputError(
                f"--map {item}: CLASS must be 0, 1, 2, 3, 255 or one of pupil, iris, sclera, background, ignore"
            )
    return mapping


def _label_class(label: object, mapping: dict[str, int], source: object, where: str = "") -> int:
    if not isinstance(label, str) or _normalise(label) not in mapping:
        raise InputError(
            f"{where}label {label!r} has no class: map it with --map {json.dumps(str(label))}=CLASS "
            "(CLASS: pupil, iris, sclera, background, ignore or 0..3, 255)",
            source,
        )
    return mapping[_normalise(label)]


@dataclass
class ImportResult:
    """What an import wrote: the frame names and the pixels of each class over all masks."""

    names: list[str] = field(default_factory=list)
    class_pixels: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PAINT_ORDER, 0))

    def summary(self) -> str:
        total = max(1, sum(self.class_pixels.values()))
        shares = ", ".join(
            f"{_class_name(cls)} {100 * n / total:.1f}%"
            for cls, n in self.class_pixels.items()
            if n or cls < 4
        )
        return f"{len(self.names)} frames; pixels: {shares}"


# --- reading and writing files ----------------------------------------------------------------


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV prints its own lines about a corrupt PNG on stderr; the InputError says it in one."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found", path) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc.strerror})", path) from None


def _decode(data: bytes, flags: int, source: object, what: str) -> np.ndarray:
    with _quiet_opencv():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if image is None:
        raise InputError(f"not a readable {what} (corrupt or truncated, or not an image?)", source)
    return image


def _frame_png(data: bytes, source: object) -> tuple[bytes, tuple[int, int]]:
    """A frame's file as PNG bytes (a PNG as it is) and its (height, width)."""
    image = _decode(data, cv2.IMREAD_UNCHANGED, source, "image")
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"expected an 8- or 16-bit image, got {image.dtype}", source)
    if not data.startswith(_PNG_SIGNATURE):
        data = _encode_png(image, source)
    return data, image.shape[:2]


def _encode_png(array: np.ndarray, source: object) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise InputError("cannot encode as PNG", source)
    return encoded.tobytes()


def _find_image(folder: Path, name: str) -> Path | None:
    """``folder/<name>.<any image suffix>``; None when there is none, an error when there are two."""
    parent = (folder / name).parent
    stem = Path(name).name
    try:
        found = sorted(
            p
            for p in parent.iterdir()
            if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    except OSError:  # the folder is not there
        return None
    if len(found) > 1:
        raise InputError(f"two frames for {name!r}: {', '.join(p.name for p in found)}; keep one", parent)
    return found[0] if found else None


class _OutputFolder:
    """OUT built in a hidden sibling and renamed at the end: nothing half-written is ever OUT."""

    def __init__(self, out: Path) -> None:
        """Refuse an OUT that exists, unless an empty folder, before anything is read."""
        self.out = Path(out)
        self.tmp = self.out.parent / f".{self.out.name}.{os.getpid()}.tmp"
        if self.out.exists() and not (self.out.is_dir() and not any(self.out.iterdir())):
            raise InputError(
                "already exists: give a new --out (an import never writes over a folder)", self.out
            )

    @contextlib.contextmanager
    def writing(self) -> Iterator[_OutputFolder]:
        try:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder ({exc.strerror})", self.tmp) from None
        try:
            yield self
            os.replace(self.tmp, self.out)  # an empty OUT folder is replaced too (POSIX rename)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name: str, image_png: bytes, mask: np.ndarray, result: ImportResult) -> None:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"frame name {name!r} leads out of the output folder", self.out)
        for kind, data in (("images", image_png), ("masks", _encode_png(mask, name))):
            path = self.tmp / kind / f"{name}.png"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # cli_entry's one line for a full disk
                    raise
                raise InputError(f"cannot write ({exc.strerror})", self.out / kind / f"{name}.png") from None
        result.names.append(name)
        values, counts = np.unique(mask, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            result.class_pixels[value] += count


def _check_size(
    mask_size: tuple[int, ...],
    image_size: tuple[int, ...],
    source: object,
    image: object,
    what: str = "mask is",
) -> None:
    if tuple(mask_size[:2]) != tuple(image_size[:2]):
        (mh, mw), (ih, iw) = mask_size[:2], image_size[:2]
        raise InputError(f"{what} {mw}x{mh} (WxH) but its frame {image} is {iw}x{ih}", source)


# --- CVAT "Segmentation mask 1.1" -------------------------------------------------------------


def _read_labelmap(path: Path, mapping: dict[str, int]) -> dict[int, int]:
    """labelmap.txt (``name:r,g,b:parts:actions`` lines) -> {packed RGB colour: class id}."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise InputError("labelmap.txt not found: not a CVAT 'Segmentation mask 1.1' export", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labelmap.txt ({exc})", path) from None
    colours: dict[int, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(":", 3)
        rgb = parts[1].split(",") if len(parts) == 4 else []
        if len(rgb) != 3 or not all(c.strip().isdigit() and int(c) < 256 for c in rgb):
            raise InputError(f"line {number}: expected 'name:r,g,b::', got {line!r}", path)
        cls = _label_class(parts[0], mapping, path, f"line {number}: ")
        r, g, b = (int(c) for c in rgb)
        colour = (r << 16) | (g << 8) | b
        if colours.get(colour, cls) != cls:
            raise InputError(
                f"line {number}: colour {r},{g},{b} is given to two labels of different classes", path
            )
        colours[colour] = cls
    if not colours:
        raise InputError("labelmap.txt lists no labels", path)
    return colours


def _cvat_names(src: Path) -> list[str]:
    """The frames of the export: its ImageSets lists, or every mask when it has none."""
    lists = sorted((src / "ImageSets" / "Segmentation").glob("*.txt"))
    if not lists:
        masks = src / "SegmentationClass"
        return sorted(p.relative_to(masks).with_suffix("").as_posix() for p in masks.rglob("*.png"))
    names: dict[str, None] = {}
    for path in lists:
        try:
            names.update(
                dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip())
            )
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the frame list ({exc})", path) from None
    return list(names)


def _cvat_mask(path: Path, colours: dict[int, int]) -> np.ndarray:
    bgr = _decode(_read_bytes(path, "mask"), cv2.IMREAD_COLOR, path, "mask PNG").astype(np.int32)
    packed = (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]
    values, inverse = np.unique(packed, return_inverse=True)
    unknown = [v for v in values.tolist() if v not in colours]
    if unknown:
        shown = ", ".join(f"{v >> 16},{(v >> 8) & 255},{v & 255}" for v in unknown[:3])
        raise InputError(
            f"colour(s) {shown} (RGB) not in labelmap.txt: a mask from another export, or a resized/"
            "smoothed mask?",
            path,
        )
    lut = np.array([colours[v] for v in values.tolist()], np.uint8)
    return lut[inverse.reshape(packed.shape)]


def import_cvat(
    src: Path, out: Path, mapping: dict[str, int] | None = None, images: Path | None = None
) -> ImportResult:
    """A CVAT "Segmentation mask 1.1" export -> OUT/images, OUT/masks (see the module docstring)."""
    src, output, result = Path(src), _OutputFolder(out), ImportResult()
    mapping = class_mapping() if mapping is None else mapping
    colours = _read_labelmap(src / "labelmap.txt", mapping)
    names = _cvat_names(src)
    if not names:
        raise InputError("no masks in SegmentationClass/ (export the task as 'Segmentation mask 1.1')", src)
    frames = Path(images) if images is not None else src / "JPEGImages"
    with output.writing():
        for name in names:
            mask_path = src / "SegmentationClass" / f"{name}.png"
            if not mask_path.is_file():
                raise InputError(f"mask of {name!r} not found (listed in ImageSets/Segmentation)", mask_path)
            mask = _cvat_mask(mask_path, colours)
            image_path = _find_image(frames, name)
            if image_path is None:
                raise InputError(
                    f"frame of {name!r} not found as {name}.<{'|'.join(s[1:] for s in IMAGE_SUFFIXES)}> "
                    "(an export without images: give the frames' folder with --images)",
                    frames,
                )
            image_png, size = _frame_png(_read_bytes(image_path, "image"), image_path)
            _check_size(mask.shape, size, mask_path, image_path)
            output.write(name, image_png, mask, result)
    return result


# --- LabelMe ----------------------------------------------------------------------------------


def _points(shape: dict[str, Any], source: object, where: str, at_least: int) -> np.ndarray:
    points = shape.get("points")
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.zeros((0,))
    if array.ndim != 2 or array.shape[1] != 2 or len(array) < at_least or not np.isfinite(array).all():
        raise InputError(f"{where}expected at least {at_least} points [x, y], got {str(points)[:60]}", source)
    return array


def _paint(mask: np.ndarray, shape_type: str, points: np.ndarray, cls: int) -> None:
    """Paint one shape; a point (x, y) is the centre of pixel column x, row y, as in LabelMe."""
    pixels = np.floor(points + 0.5).astype(np.int32)  # the nearest pixel centres, half up
    if shape_type == "polygon":
        cv2.fillPoly(mask, [pixels], cls)
    elif shape_type == "rectangle":  # two corners (some tools write all four): inclusive
        cv2.rectangle(mask, tuple(pixels.min(0).tolist()), tuple(pixels.max(0).tolist()), cls, thickness=-1)
    else:  # circle: centre, then a point on the circle; the pixels whose centres are inside
        (cx, cy), edge = points[0], points[1]
        radius = float(np.hypot(*(edge - points[0])))
        yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
        mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = cls


def _rasterise(shapes: object, size: tuple[int, int], mapping: dict[str, int], source: object) -> np.ndarray:
    """LabelMe shapes -> uint8 class mask of `size`, painted in PAINT_ORDER (file order within a class)."""
    if not isinstance(shapes, list):
        raise InputError("'shapes' must be a list", source)
    painted = []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise InputError(f"shape {i}: expected an object with label and points", source)
        where = f"shape {i} ({shape.get('label')!r}): "
        shape_type = shape.get("shape_type") or "polygon"  # LabelMe 3 wrote no shape_type
        if shape_type not in _LABELME_SHAPES:
            raise InputError(
                f"{where}shape_type {shape_type!r} is not read (only {', '.join(_LABELME_SHAPES)}): "
                "redraw it as a polygon or delete it",
                source,
            )
        cls = _label_class(shape.get("label"), mapping, source, f"shape {i}: ")
        points = _points(shape, source, where, {"polygon": 3, "rectangle": 2, "circle": 2}[shape_type])
        painted.append((PAINT_ORDER.index(cls), i, shape_type, points, cls))
    mask = np.zeros(size, np.uint8)
    for _, _, shape_type, points, cls in sorted(painted, key=lambda item: item[:2]):
        _paint(mask, shape_type, points, cls)
    return mask


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(_read_bytes(path, "LabelMe JSON"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not readable JSON ({exc})", path) from None
    if not isinstance(document, dict) or "shapes" not in document:
        raise InputError("not a LabelMe file: no 'shapes'", path)
    return document


def _json_size(document: dict[str, Any], path: Path) -> tuple[int, int] | None:
    height, width = document.get("imageHeight"), document.get("imageWidth")
    if height is None and width is None:
        return None
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise InputError(f"imageHeight/imageWidth must be positive integers, got {height}/{width}", path)
    return height, width


def read_labelme(json_path: Path, mapping: dict[str, int] | None = None) -> np.ndarray:
    """The class mask of a LabelMe JSON (its imageHeight x imageWidth), as the importer paints it."""
    json_path = Path(json_path)
    document = _read_json(json_path)
    size = _json_size(document, json_path)
    if size is None:
        raise InputError("no imageHeight/imageWidth", json_path)
    return _rasterise(document["shapes"], size, class_mapping() if mapping is None else mapping, json_path)


def _labelme_frame(
    document: dict[str, Any], path: Path, name: str, images: Path | None
) -> tuple[bytes, Path | str]:
    """The frame's file bytes: imageData, else --images/<name>.*, else imagePath next to the JSON."""
    if document.get("imageData"):
        try:
            return base64.b64decode(document["imageData"], validate=True), f"{path} (imageData)"
        except (binascii.Error, TypeError, ValueError):
            raise InputError("imageData is not base64", path) from None
    if images is not None:
        found = _find_image(Path(images), name)
        if found is None:
            raise InputError(
                f"frame of {path.name} not found as {name}.<png|jpg|bmp|tif> in --images", images
            )
        return _read_bytes(found, "image"), found
    image_path = document.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise InputError("no imageData and no imagePath: give the frames' folder with --images", path)
    frame = path.parent / image_path.replace("\\", "/")  # LabelMe on Windows writes backslashes
    return _read_bytes(frame, f"image (imagePath of {path})"), frame


def import_labelme(
    src: Path, out: Path, mapping: dict[str, int] | None = None, images: Path | None = None
) -> ImportResult:
    """LabelMe JSON files under SRC -> OUT/images, OUT/masks (see the module docstring)."""
    src, output, result = Path(src), _OutputFolder(out), ImportResult()
    mapping = class_mapping() if mapping is None else mapping
    if not src.is_dir():
        raise InputError("not a folder of LabelMe JSON files", src)
    paths = sorted(src.rglob("*.json"))
    if not paths:
        raise InputError("no LabelMe .json files here", src)
    with output.writing():
        for path in paths:
            name = path.relative_to(src).with_suffix("").as_posix()
            document = _read_json(path)
            data, frame = _labelme_frame(document, path, name, images)
            image_png, size = _frame_png(data, frame)
            json_size = _json_size(document, path)
            if json_size is not None:
                _check_size(json_size, size, path, frame, "imageWidth x imageHeight is")
            output.write(name, image_png, _rasterise(document["shapes"], size, mapping, path), result)
    return result


def write_labelme(
    mask: np.ndarray, image_path: str, json_path: Path, image_size: tuple[int, int] | None = None
) -> int:
    """Write a class mask (0..3, 255 = ignore) as a LabelMe JSON of polygons; returns the pixels that
    reading it back (import_labelme, read_labelme) would get wrong: 0 = exact.

    Class c is written as the outer contours of the pixels of c and of every class painted over it
    (sclera: the whole eye opening; iris: iris and pupil; pupil), so the importer's painting order
    rebuilds the mask exactly when none of these regions has a hole, as in an eye: sclera around
    the iris around the pupil, each possibly cut by the lids. Not exact: a lower class enclosed by
    a higher one (background inside the eye opening, sclera inside the iris ring), which the filled
    contour paints over; the return value counts those pixels. Background is not written (pixels
    no shape covers are background). `image_path` is written as imagePath (LabelMe resolves it from
    the JSON's folder); no imageData. `image_size` (height, width), when not the mask's own, scales
    the polygons to that size: then the read-back is compared with the mask resized (nearest).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.isin(mask, PAINT_ORDER).all():
        raise ValueError("write_labelme: expected a 2-D mask of class ids 0..3 and 255")
    height, width = mask.shape if image_size is None else image_size
    sx, sy = width / mask.shape[1], height / mask.shape[0]
    present = set(np.unique(mask).tolist())
    shapes = []
    for rank, cls in enumerate(PAINT_ORDER[1:], 1):
        if cls not in present:
            continue
        region = np.isin(mask, PAINT_ORDER[rank:]).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            points = contour.reshape(-1, 2).astype(np.float64)
            if (sx, sy) != (1.0, 1.0):
                points = (points + 0.5) * (sx, sy) - 0.5
            points = np.concatenate(
                [points, points[:1].repeat(max(0, 3 - len(points)), 0)]
            )  # a pixel, a line
            shapes.append({
                "label": _class_name(cls), "points": points.round(2).tolist(), "group_id": None,
                "description": "", "shape_type": "polygon", "flags": {},
            })  # fmt: skip
    document = {
        "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": str(image_path), "imageData": None,
        "imageHeight": int(height), "imageWidth": int(width),
    }  # fmt: skip
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json_path, json.dumps(document, indent=2))
    expected = (
        mask if image_size is None else cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    )
    return int((_rasterise(shapes, (height, width), DEFAULT_CLASS_NAMES, json_path) != expected).sum())


# --- command line -----------------------------------------------------------------------------

TOOLS = {"cvat": import_cvat, "labelme": import_labelme}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tool", choices=sorted(TOOLS), help="the labelling tool's format")
    parser.add_argument(
        "--src", type=Path, required=True, help="the export folder (cvat) or the JSON files' folder (labelme)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to create: images/ and masks/")
    parser.add_argument(
        "--images", type=Path, help="the frames' folder, by the same relative name (see above)"
    )
    parser.add_argument(
        "--map", dest="mapping", action="extend", nargs="+", default=[], metavar="NAME=CLASS",
        help="a label name's class: 0..3, 255 or pupil, iris, sclera, background, ignore (repeatable)",
    )  # fmt: skip
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> ImportResult:
    args = _parse_args(argv)
    result = TOOLS[args.tool](args.src, args.out, class_mapping(args.mapping), args.images)
    print(f"imported {args.tool} {args.src} -> {args.out}/images, masks: {result.summary()}")
    return result


if __name__ == "__main__":
    main()
