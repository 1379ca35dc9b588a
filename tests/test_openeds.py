"""OpenEDS layout: names, the frame index, checked readers and the torch Datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_tiny_dataset

from dataset.openeds import (
    IGNORE_INDEX,
    LabeledDataset,
    OpenEDSIndex,
    UnlabeledDataset,
    frame_key,
    image_relpath,
    label_relpath,
    parse_sample_name,
    pred_relpath,
    read_image,
    read_label,
    read_sample_list,
    write_sample_list,
)
from utils.errors import InputError

# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["S_0/label_3.npy", "S_0/3.png", "S_0/3.npy", "S_0/3", " S_0/3.png\n"])
def test_parse_sample_name_accepts_every_form(name: str) -> None:
    assert parse_sample_name(name) == ("S_0", 3)


@pytest.mark.parametrize(
    "name", ["", "S_0", "S_0/label_3.png", "S_x/3.png", "foo/3.png", "S_0/3.jpg", "S_0/a"]
)
def test_parse_sample_name_rejects_others(name: str) -> None:
    with pytest.raises(ValueError):
        parse_sample_name(name)


def test_relpaths_round_trip() -> None:
    key = frame_key("S_12", 40)
    assert key == "S_12/40"
    assert (image_relpath(key), label_relpath(key), pred_relpath(key)) == (
        "S_12/40.png",
        "S_12/label_40.npy",
        "S_12/40.npy",
    )
    assert frame_key(*parse_sample_name(label_relpath(key))) == key


# --- index -------------------------------------------------------------------------------------


def test_index_from_lists_and_by_scanning_agree(tiny_data: Path) -> None:
    listed = OpenEDSIndex.from_dir(tiny_data)
    (tiny_data / "images.txt").unlink()
    (tiny_data / "labels.txt").unlink()
    scanned = OpenEDSIndex.from_dir(tiny_data)
    assert listed.sequences == scanned.sequences == ["S_0", "S_1", "S_2", "S_3"]
    assert listed.frames == scanned.frames
    assert listed.labeled == scanned.labeled
    assert len(listed.all_keys()) == 48


def test_index_natural_order_and_labeled_split(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "d", sequences=11, frames=11, label_every=5)
    (root / "images.txt").unlink()  # scanning yields directory order, not natural order
    index = OpenEDSIndex.from_dir(root)
    assert index.sequences == [f"S_{k}" for k in range(11)]
    assert index.frames["S_10"] == list(range(11))
    assert index.all_keys()[:3] == ["S_0/0", "S_0/1", "S_0/2"]
    assert index.labeled_keys()[:3] == ["S_0/1", "S_0/6", "S_1/1"]
    assert set(index.labeled_keys()) | set(index.unlabeled_keys()) == set(index.all_keys())
    assert not set(index.labeled_keys()) & set(index.unlabeled_keys())
    assert index.sequence_of("S_10/3") == "S_10"
    assert index.image_path("S_10/3") == root / "S_10" / "3.png"
    assert index.label_path("S_10/6") == root / "S_10" / "label_6.npy"


def test_index_ignores_folders_that_are_not_sequences(tiny_data: Path) -> None:
    (tiny_data / "images.txt").unlink()
    (tiny_data / "preds" / "S_9").mkdir(parents=True)
    (tiny_data / "notes").mkdir()
    assert OpenEDSIndex.from_dir(tiny_data).sequences == ["S_0", "S_1", "S_2", "S_3"]


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_index_bad_data_dir(tmp_path: Path, make: str) -> None:
    root = tmp_path / "data"
    if make == "file":
        root.write_text("x")
    elif make == "empty":
        root.mkdir()
    with pytest.raises(InputError, match="data"):
        OpenEDSIndex.from_dir(root)


def test_index_label_without_image_names_the_image(tiny_data: Path) -> None:
    (tiny_data / "S_2" / "4.png").unlink()
    with pytest.raises(InputError, match=r"S_2/4\.png"):
        OpenEDSIndex.from_dir(tiny_data)
    (tiny_data / "labels.txt").unlink()  # the scanning path checks too
    with pytest.raises(InputError, match=r"S_2/4\.png"):
        OpenEDSIndex.from_dir(tiny_data)


def test_index_listed_label_missing_names_the_label(tiny_data: Path) -> None:
    (tiny_data / "S_1" / "label_7.npy").unlink()
    with pytest.raises(InputError, match=r"S_1/label_7\.npy"):
        OpenEDSIndex.from_dir(tiny_data)


# --- readers -----------------------------------------------------------------------------------


def _png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_read_image_ok(tiny_data: Path) -> None:
    image = read_image(tiny_data / "S_0" / "0.png")
    assert image.shape == (400, 640) and image.dtype == np.uint8


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        (b"\x89PNG" + bytes(range(256)) * 8, "corrupt"),
        (_png_bytes(np.full((400, 640), 7, np.uint8))[:-40], "corrupt"),
        (_png_bytes(np.zeros((480, 640), np.uint8)), "640x480"),
        (_png_bytes(np.zeros((400, 640, 3), np.uint8)), "grayscale"),
        (_png_bytes(np.zeros((400, 640), np.uint16)), "8-bit"),
    ],
    ids=["missing", "random-bytes", "truncated", "wrong-size", "colour", "16-bit"],
)
def test_read_image_bad(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "S_0" / "5.png"
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_label_ok_and_integer_dtypes_cast(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).integers(0, 4, (400, 640))
    np.save(tmp_path / "label_1.npy", mask.astype(np.int64))
    label = read_label(tmp_path / "label_1.npy")
    assert label.dtype == np.uint8 and np.array_equal(label, mask)


def test_read_label_ignore_index_only_when_allowed(tmp_path: Path) -> None:
    mask = np.zeros((400, 640), np.uint8)
    mask[:10] = IGNORE_INDEX
    np.save(tmp_path / "label_1.npy", mask)
    with pytest.raises(InputError, match="255"):
        read_label(tmp_path / "label_1.npy")
    assert read_label(tmp_path / "label_1.npy", allow_ignore=True).max() == IGNORE_INDEX


def _truncated_npy(path: Path) -> None:
    np.save(path, np.zeros((400, 640), np.uint8))
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: None, "not found"),
        (lambda p: np.save(p, np.zeros((400, 641), np.uint8)), "shape"),
        (lambda p: np.save(p, np.zeros((400, 640), np.float32)), "float32"),
        (lambda p: np.save(p, np.zeros((400, 640), bool)), "bool"),
        (lambda p: np.save(p, np.full((400, 640), 4, np.uint8)), r"\[4\]"),
        (lambda p: np.save(p, np.full((400, 640), -1, np.int16)), r"\[-1\]"),
        (_truncated_npy, "readable"),
        (lambda p: p.write_bytes(b"not numpy at all"), "readable"),
    ],
    ids=["missing", "shape", "float", "bool", "value-4", "negative", "truncated", "garbage"],
)
def test_read_label_bad(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "label_3.npy"
    write(path)
    with pytest.raises(InputError, match=message) as info:
        read_label(path, allow_ignore=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- sample lists ------------------------------------------------------------------------------


def test_sample_list_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "lists" / "val.txt"
    write_sample_list(path, ["S_0/3", "S_10/12"])
    assert path.read_text() == "S_0/label_3.npy\nS_10/label_12.npy\n"
    assert read_sample_list(path) == ["S_0/3", "S_10/12"]
    write_sample_list(path, ["S_0/3"], style="pred")
    assert path.read_text() == "S_0/3.npy\n"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_sample_list_ignores_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("\nS_0/label_3.npy\n\n  \nS_1/4.png\n")
    assert read_sample_list(path) == ["S_0/3", "S_1/4"]


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "not found"),
        ("", "no samples"),
        ("\n \n", "no samples"),
        ("S_0/label_3.npy\nS_0/label_x.npy\n", r"line 2: .*'S_0/label_x\.npy'"),
        ("S_0/label_3.npy\nS_0/3.png\n", "line 2: duplicate"),
    ],
    ids=["missing", "empty", "blank", "malformed", "duplicate"],
)
def test_sample_list_bad(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "fold_0_val.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_sample_list(path)
    assert "fold_0_val.txt" in str(info.value)


# --- datasets ----------------------------------------------------------------------------------


def test_labeled_dataset_items(tiny_data: Path) -> None:
    keys = OpenEDSIndex.from_dir(tiny_data).labeled_keys()
    dataset = LabeledDataset(tiny_data, keys)
    assert len(dataset) == 16
    item = dataset[0]
    assert item["name"] == "S_0/1"
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (1, 400, 640)
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (400, 640)
    assert np.array_equal(item["mask"].numpy(), np.load(tiny_data / "S_0" / "label_1.npy"))
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 1, 400, 640) and len(batch["name"]) == 4


def test_labeled_dataset_label_dir_override(tiny_data: Path, tmp_path: Path) -> None:
    pseudo = np.full((400, 640), IGNORE_INDEX, np.uint8)
    pseudo[100:200] = 2
    (tmp_path / "pseudo" / "S_0").mkdir(parents=True)
    np.save(tmp_path / "pseudo" / "S_0" / "label_5.npy", pseudo)
    item = LabeledDataset(tiny_data, ["S_0/label_5.npy"], label_dir=tmp_path / "pseudo")[0]
    assert item["name"] == "S_0/5"
    assert np.array_equal(item["mask"].numpy(), pseudo)
    with pytest.raises(InputError, match="label_5.npy"):  # 255 is refused for ground-truth labels
        np.save(tiny_data / "S_0" / "label_5.npy", pseudo)
        LabeledDataset(tiny_data, ["S_0/5"])[0]


def test_cache_returns_identical_items_and_skips_decoding(tiny_data: Path) -> None:
    keys = ["S_0/1", "S_3/10"]
    plain = LabeledDataset(tiny_data, keys)
    expected = [plain[i] for i in range(2)]
    cached = LabeledDataset(tiny_data, keys, cache=True)
    first = [cached[i] for i in range(2)]
    (tiny_data / "S_0" / "1.png").unlink()  # served from memory from now on
    cached[0]["image"][:] = 0  # an in-place change of an item (augmentation) must not poison the cache
    for i in range(2):
        for item in (first[i], cached[i]):
            assert item["name"] == expected[i]["name"]
            assert torch.equal(item["image"], expected[i]["image"])
            assert torch.equal(item["mask"], expected[i]["mask"])


def test_unlabeled_dataset(tiny_data: Path) -> None:
    keys = OpenEDSIndex.from_dir(tiny_data).unlabeled_keys()
    dataset = UnlabeledDataset(tiny_data, keys, cache=True)
    assert len(dataset) == 32
    item = dataset[0]
    assert set(item) == {"image", "name"} and item["name"] == "S_0/0"
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (1, 400, 640)
    expected = cv2.imread(str(tiny_data / "S_0" / "0.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(item["image"][0].numpy(), expected)


def test_dataset_reports_bad_image(tiny_data: Path) -> None:
    (tiny_data / "S_2" / "7.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"S_2/7\.png"):
        LabeledDataset(tiny_data, ["S_2/7"])[0]
