"""dataset/importers.py: CVAT and LabelMe exports written by the tests -> images/ + masks/, the
LabelMe writer read back exactly on rendered eyes, and bad files as one-line errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, error_line, run_script

import dataset.importers
from dataset.importers import DEFAULT_CLASS_NAMES, class_mapping, main, read_labelme, write_labelme
from dataset.synthetic.render import EyeSequence

H, W = 48, 64
COLOURS = {"background": (0, 0, 0), "Sclera": (250, 50, 83), "iris": (51, 221, 255), "pupil": (36, 179, 83)}


def frame(seed: int, shape: tuple[int, ...] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def eye_mask(cx: int = 30, cy: int = 24) -> np.ndarray:
    """Sclera band, iris disk, pupil disk: class ids (H, W)."""
    yy, xx = np.mgrid[0:H, 0:W]
    mask = np.zeros((H, W), np.uint8)
    mask[10:38, 4:60] = 1
    mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= 12**2] = 2
    mask[(xx - cx) ** 2 + (yy - cy) ** 2 <= 5**2] = 3
    return mask


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def write_cvat(
    root: Path, masks: dict[str, np.ndarray], colours: dict[str, tuple[int, int, int]] = COLOURS
) -> Path:
    """A CVAT 'Segmentation mask 1.1' export without images: labelmap, colour PNGs, default.txt.

    Mask value i is drawn in the i-th colour of `colours`.
    """
    lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{r},{g},{b}::" for n, (r, g, b) in colours.items()]
    root.mkdir(parents=True)
    (root / "labelmap.txt").write_text("\n".join(lines) + "\n")
    palette = np.array(list(colours.values()), np.uint8)[:, ::-1]  # BGR
    for name, mask in masks.items():
        path = root / "SegmentationClass" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), palette[mask])
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(masks) + "\n")
    return root


@pytest.fixture
def cvat(tmp_path: Path) -> dict[str, object]:
    masks = {"seq1/f1": eye_mask(), "f2": eye_mask(cx=40)}
    src = write_cvat(tmp_path / "export", masks)
    frames = tmp_path / "frames"
    (frames / "seq1").mkdir(parents=True)
    cv2.imwrite(str(frames / "seq1" / "f1.png"), frame(1))
    cv2.imwrite(str(frames / "f2.bmp"), frame(2, (H, W, 3)))
    return {"src": src, "frames": frames, "masks": masks, "out": tmp_path / "data"}


def test_cvat_export_becomes_images_and_class_masks(cvat: dict, capsys: pytest.CaptureFixture[str]) -> None:
    main(["cvat", "--src", str(cvat["src"]), "--out", str(cvat["out"]), "--images", str(cvat["frames"])])
    out = cvat["out"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "images/f2.png", "images/seq1/f1.png", "masks/f2.png", "masks/seq1/f1.png",
    ]  # fmt: skip
    for name, mask in cvat["masks"].items():
        written = read_png(out / "masks" / f"{name}.png")
        assert written.dtype == np.uint8 and written.ndim == 2
        np.testing.assert_array_equal(written, mask)
    # A PNG frame is copied byte for byte; a BMP is written as a PNG of the same pixels.
    assert (out / "images/seq1/f1.png").read_bytes() == (cvat["frames"] / "seq1/f1.png").read_bytes()
    np.testing.assert_array_equal(read_png(out / "images/f2.png"), frame(2, (H, W, 3)))
    assert "imported cvat" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_cvat_export_with_images_and_a_mapped_label(tmp_path: Path) -> None:
    mask = eye_mask()
    mask[0:4, 0:8] = 4  # drawn with the extra label below
    src = write_cvat(tmp_path / "export", {"f1": mask}, {**COLOURS, "Eye lash": (9, 9, 9)})
    (src / "JPEGImages").mkdir()
    cv2.imwrite(str(src / "JPEGImages" / "f1.jpg"), frame(3))
    main(["cvat", "--src", str(src), "--out", str(tmp_path / "data"), "--map", "eye-lash=ignore"])
    expected = np.where(mask == 4, 255, mask)
    np.testing.assert_array_equal(read_png(tmp_path / "data/masks/f1.png"), expected)
    jpeg = cv2.imread(str(src / "JPEGImages" / "f1.jpg"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(read_png(tmp_path / "data/images/f1.png"), jpeg)


def labelme_doc(shapes: list[dict], image_path: str = "", image_data: bytes | None = None) -> dict:
    return {
        "version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": H, "imageWidth": W,
    }  # fmt: skip


def shape(label: str, points: list, shape_type: str = "polygon") -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": shape_type, "flags": {}}


def test_labelme_shapes_are_painted_pupil_over_iris_over_sclera(tmp_path: Path) -> None:
    src = tmp_path / "labelme"
    (src / "seq").mkdir(parents=True)
    shapes = [  # the pupil first and the sclera last: the file's order must not matter
        shape("pupil", [[30, 24], [34, 27]], "circle"),  # radius 5
        shape("Iris", [[30.2, 23.9], [42.2, 23.9]], "circle"),  # radius 12, centre off the pixel grid
        shape("eye_white", [[4, 10], [59, 10], [59, 37], [4, 37]]),
        shape("unlabelled", [[0, 40], [9.6, 46.4]], "rectangle"),
    ]
    cv2.imwrite(str(src / "seq" / "a.png"), frame(4))
    (src / "seq" / "a.json").write_text(json.dumps(labelme_doc(shapes, "a.png")))
    _, jpeg = cv2.imencode(".jpg", frame(5))
    (src / "b.json").write_text(json.dumps(labelme_doc(shapes[2:3], "../elsewhere/b.jpg", jpeg.tobytes())))

    main(["labelme", "--src", str(src), "--out", str(tmp_path / "data")])
    yy, xx = np.mgrid[0:H, 0:W]
    expected = np.zeros((H, W), np.uint8)
    expected[10:38, 4:60] = 1
    expected[(xx - 30.2) ** 2 + (yy - 23.9) ** 2 <= 12**2] = 2
    expected[(xx - 30) ** 2 + (yy - 24) ** 2 <= 25] = 3
    expected[40:47, 0:11] = 255  # rectangle corners rounded to pixel centres, inclusive
    np.testing.assert_array_equal(read_png(tmp_path / "data/masks/seq/a.png"), expected)
    assert (tmp_path / "data/images/seq/a.png").read_bytes() == (src / "seq" / "a.png").read_bytes()
    sclera_only = np.where(expected == 255, 0, np.minimum(expected, 1))
    np.testing.assert_array_equal(read_png(tmp_path / "data/masks/b.png"), sclera_only)
    # imageData wins over an imagePath that is not there; the JPEG is written as a PNG of its pixels.
    np.testing.assert_array_equal(
        read_png(tmp_path / "data/images/b.png"), cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    )


def rendered_eyes() -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames and labels from the repo's renderer: open eyes, the iris cut by a lid, a closing eye."""
    frames = [EyeSequence(0, 0, 10).render(3)]
    sequence = EyeSequence(1, 2, 150)
    frames += [sequence.render(n, glints=False, lashes=False) for n in (0, 40, 90)]
    closing = [n for n, state in enumerate(sequence.states) if 0 < state.openness < 0.5][:1]
    frames += [sequence.render(n, glints=False, lashes=False) for n in closing]
    return frames


def test_write_labelme_reads_back_exactly_on_rendered_eyes(tmp_path: Path) -> None:
    src = tmp_path / "corrections"
    (src / "frames").mkdir(parents=True)
    eyes = rendered_eyes()
    for i, (image, label) in enumerate(eyes):
        assert np.isin(label, (1, 2, 3)).any()
        cv2.imwrite(str(src / "frames" / f"{i}.png"), image)
        json_path = src / "json" / f"{i}.json"
        assert write_labelme(label, f"../frames/{i}.png", json_path) == 0  # imagePath relative to the JSON
        assert {s["label"] for s in json.loads(json_path.read_text())["shapes"]} <= {
            "sclera",
            "iris",
            "pupil",
        }
        np.testing.assert_array_equal(read_labelme(json_path), label)
    main(["labelme", "--src", str(src / "json"), "--out", str(tmp_path / "data")])
    for i, (image, label) in enumerate(eyes):
        np.testing.assert_array_equal(read_png(tmp_path / "data" / "masks" / f"{i}.png"), label)
        np.testing.assert_array_equal(read_png(tmp_path / "data" / "images" / f"{i}.png"), image)


def test_write_labelme_counts_what_it_cannot_rebuild(tmp_path: Path) -> None:
    # A background hole inside the sclera is painted over by the filled contour: 4 pixels wrong.
    mask = eye_mask()
    mask[12:14, 8:10] = 0
    assert write_labelme(mask, "a.png", tmp_path / "a.json") == 4
    assert (read_labelme(tmp_path / "a.json") != mask).sum() == 4
    # Single pixels and one-pixel lines of a class are polygons of 3 points and come back.
    mask = np.zeros((H, W), np.uint8)
    mask[5, 5], mask[20, 10:30], mask[30:40, 50] = 3, 1, 255
    assert write_labelme(mask, "a.png", tmp_path / "b.json") == 0
    np.testing.assert_array_equal(read_labelme(tmp_path / "b.json"), mask)


def test_class_names_and_map_overrides() -> None:
    mapping = class_mapping(["lid=ignore", "Iris=3", "glint = 0"])
    assert mapping["lid"] == 255 and mapping["iris"] == 3 and mapping["glint"] == 0
    assert mapping["eye white"] == 1 and mapping["background"] == 0
    # The help text (the module docstring) lists every default name.
    doc = " ".join(dataset.importers.__doc__.split())
    assert all(name in doc for name in DEFAULT_CLASS_NAMES)
    for bad in ("lid", "lid=5", "lid=eyeball", "=pupil"):
        with pytest.raises(dataset.importers.InputError, match="--map"):
            class_mapping([bad])


def test_bad_labelme_files_are_one_line_errors_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "labelme", tmp_path / "data"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), frame(6))
    bad = src / "a.json"

    def error(*extra: str) -> str:
        line = error_line(main, ["labelme", "--src", src, "--out", out, *extra], capsys)
        assert not out.exists() and not list(tmp_path.glob(".data.*"))  # nothing half-written
        return line

    def case(shapes: list[dict], image_path: str = "a.png") -> None:
        bad.write_text(json.dumps(labelme_doc(shapes, image_path)))

    pupil = shape("pupil", [[1, 1], [5, 5]], "circle")
    case([pupil, shape("eyeball", [[1, 1], [9, 1], [9, 9]])])
    line = error()
    assert str(bad) in line and "'eyeball'" in line and '--map "eyeball"=CLASS' in line
    line = error("--map", "eyeball=sclera", "--images", str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in line and "frame of a.json not found" in line
    bad.write_text('{"shapes": [')
    line = error()
    assert str(bad) in line and "not readable JSON" in line
    case([pupil], "missing.png")
    line = error()
    assert str(src / "missing.png") in line and "not found" in line
    case([shape("pupil", [[1, 1], [5, 5]], "mask")])
    line = error()
    assert str(bad) in line and "shape_type 'mask'" in line
    case([shape("pupil", [[1, 1], [5, 5]])])
    assert "at least 3 points" in error()
    cv2.imwrite(str(src / "a.png"), frame(6, (H + 1, W)))
    case([])
    line = error()
    assert str(bad) in line and f"is {W}x{H} (WxH) but its frame {src / 'a.png'} is {W}x{H + 1}" in line


def test_bad_cvat_exports_are_one_line_errors(cvat: dict, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = cvat["src"], cvat["out"]
    argv = ["cvat", "--src", src, "--out", out, "--images", cvat["frames"]]
    mask_path = src / "SegmentationClass" / "f2.png"
    cv2.imwrite(str(mask_path), np.full((H, W, 3), 7, np.uint8))
    line = error_line(main, argv, capsys)
    assert str(mask_path) in line and "7,7,7" in line and "labelmap.txt" in line
    cv2.imwrite(str(mask_path), np.zeros((H, W - 2, 3), np.uint8))
    line = error_line(main, argv, capsys)
    assert str(mask_path) in line and f"mask is {W - 2}x{H}" in line
    (cvat["frames"] / "f2.bmp").unlink()
    assert "--images" in error_line(main, argv, capsys)
    with open(src / "labelmap.txt", "a") as handle:
        handle.write("eyeball:1,2,3::\n")
    assert "'eyeball'" in error_line(main, argv, capsys)
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "already exists" in error_line(main, argv, capsys)
    assert (out / "keep.txt").read_text() == "mine"


def test_corrupt_mask_through_the_file_entry_point_is_one_clean_line(cvat: dict) -> None:
    # Run as a file, like dataset/create_kfolds.py; OpenCV's own messages about the corrupt PNG stay quiet.
    mask_path = cvat["src"] / "SegmentationClass" / "f2.png"
    mask_path.write_bytes(mask_path.read_bytes()[:60])
    proc = run_script(
        "dataset/importers.py", "cvat", "--src", cvat["src"], "--out", cvat["out"], "--images", cvat["frames"],
        check=False,
    )  # fmt: skip
    assert_one_line_error(proc, str(mask_path), "not a readable mask PNG")
    assert proc.stderr.count("\n") == 1, proc.stderr


def test_segment_writes_a_labelme_project_the_importer_reads_back(tmp_path: Path) -> None:
    """segment.py --masks labelme -> LabelMe (to correct) -> importer: eye masks come back unchanged.

    The masks are rendered labels standing in for a model's (a random tiny model's speckle has holes,
    which LabelMe polygons cannot hold: write_labelme counts such pixels)."""
    from evaluation.measure import measure_eye
    from inference.segment_run import _Writers
    from inference.segmenter import SegmentResult

    writers = _Writers(tmp_path / "seg", None, "labelme", None, None)
    masks = {}
    for index, style in enumerate(("classic", "closeup", "headset")):
        image, label = EyeSequence(0, index, 4, style).render(1)
        masks[f"eye{index}"] = label
        writers.add(
            SegmentResult(
                mask=label, confidence=None, measurements=measure_eye(label), image=image, name=f"eye{index}"
            )
        )
    main(["labelme", "--src", str(tmp_path / "seg" / "labelme"), "--out", str(tmp_path / "data")])
    for name, label in masks.items():
        imported = cv2.imread(str(tmp_path / "data" / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(imported, label)
        frame = cv2.imread(str(tmp_path / "data" / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert frame.shape == (400, 640)
