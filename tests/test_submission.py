"""Submission format: RLE matches a byte-by-byte reference, and files round-trip through the JSON."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from utils.errors import InputError
from utils.submission import encode_file, read_submission, rle_decode, rle_encode, write_submission


def reference_rle(data: bytes) -> bytes:
    """Straightforward byte-by-byte encoder: a run ends at a new byte or at count 255."""
    out = bytearray()
    count, current = 0, None
    for byte in data:
        if byte == current and count < 255:
            count += 1
        else:
            if current is not None:
                out += bytes((count, current))
            count, current = 1, byte
    if current is not None:
        out += bytes((count, current))
    return bytes(out)


def npy_bytes(array: np.ndarray, tmp_path: Path) -> bytes:
    path = tmp_path / "x.npy"
    np.save(path, array)
    return path.read_bytes()


def mask(seed: int = 0) -> np.ndarray:
    """A (400, 640) uint8 mask with long runs (> 255) and isolated single pixels."""
    rng = np.random.default_rng(seed)
    m = np.zeros((400, 640), np.uint8)
    m[100:300, 150:500] = 1
    m[150:250, 250:400] = 2
    m[rng.random(m.shape) < 0.01] = 3
    return m


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x07",
        b"\x01\x02\x01",
        b"\x00" * 255,
        b"\x00" * 256,
        b"\x05" * 1000 + b"\x06" + b"\x05" * 510,
        np.random.default_rng(1).integers(0, 3, 5000, dtype=np.uint8).tobytes(),
        np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    ],
)
def test_rle_matches_reference_and_round_trips(data: bytes) -> None:
    encoded = rle_encode(data)
    assert encoded == reference_rle(data)
    assert rle_decode(encoded) == data


def test_rle_of_real_npy_file(tmp_path: Path) -> None:
    data = npy_bytes(mask(), tmp_path)
    encoded = rle_encode(data)
    assert encoded == reference_rle(data)
    assert rle_decode(encoded) == data
    assert max(encoded[0::2]) == 255 and min(encoded[0::2]) == 1


def test_rle_decode_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="odd"):
        rle_decode(b"\x01\x02\x03")


def test_write_and_read_submission(tmp_path: Path) -> None:
    save = tmp_path / "preds"
    originals = {}
    for seq, frame in [(0, 17), (0, 20), (12, 3)]:
        relpath = f"S_{seq}/{frame}.npy"
        (save / f"S_{seq}").mkdir(parents=True, exist_ok=True)
        originals[relpath] = mask(seed=frame)
        np.save(save / relpath, originals[relpath])
    out = tmp_path / "submission.json"
    write_submission(save, list(originals), out)

    entries = json.loads(out.read_text())
    assert list(entries) == list(originals)
    assert entries["S_0/17.npy"] == encode_file(save / "S_0/17.npy")
    raw = rle_decode(base64.b64decode(entries["S_12/3.npy"]))
    assert raw == (save / "S_12/3.npy").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))

    decoded = read_submission(out)
    assert decoded.keys() == originals.keys()
    for relpath, array in originals.items():
        assert decoded[relpath].dtype == np.uint8
        np.testing.assert_array_equal(decoded[relpath], array)


@pytest.mark.slow
def test_decode_cli_writes_the_original_files(tmp_path: Path) -> None:
    save = tmp_path / "preds"
    (save / "S_1").mkdir(parents=True)
    np.save(save / "S_1/5.npy", mask())
    write_submission(save, ["S_1/5.npy"], tmp_path / "sub.json")
    result = run_script(
        "-m",
        "utils.submission",
        "decode",
        "--json",
        tmp_path / "sub.json",
        "--out",
        tmp_path / "out",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out/S_1/5.npy").read_bytes() == (save / "S_1/5.npy").read_bytes()


def test_bad_submission_is_an_input_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"S_0/1.npy": "not base64!"}))
    with pytest.raises(InputError, match="bad.json"):
        read_submission(bad)
