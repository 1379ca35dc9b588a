"""The submission decoder (python -m utils.submission decode) on a hostile file: keys that are not
paths inside the output folder, entries that expand without bound; and it streams, writing
atomically.
"""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import a_submission, error_line

from utils import submission
from utils.submission import encode_file

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.mark.parametrize("key", ["", "."])
def test_decoder_refuses_an_empty_or_dot_key(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = tmp_path / "mask.npy"
    np.save(mask, np.zeros((400, 640), np.uint8))
    sub = a_submission(tmp_path, {"S_0/1.npy": encode_file(mask), key: encode_file(mask)})
    out = tmp_path / "decoded"

    line = error_line(submission.main, ["decode", "--json", str(sub), "--out", str(out)], capsys)

    assert line == f"error: {sub}: entry {key!r} is not a relative file path inside the output folder"
    assert not out.exists()


def test_decoder_bounds_the_expansion_of_an_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = bytes([255, 0]) * (submission.MAX_DECODED_BYTES // 255 + 1)  # 131 KB that asks for 16 MiB + 255
    sub = a_submission(tmp_path, {"S_0/1.npy": base64.b64encode(bomb).decode()})

    line = error_line(submission.main, ["decode", "--json", str(sub), "--out", str(tmp_path / "out")], capsys)

    assert f"entry 'S_0/1.npy' decodes to {len(bomb) // 2 * 255} bytes, more than the" in line
    assert not (tmp_path / "out").exists()


def test_decoder_streams_and_writes_atomically(tmp_path: Path) -> None:
    """40 masks (10 MB decoded): decoding holds about one at a time, and leaves no temp files."""
    rng = np.random.default_rng(0)
    entries = {}
    for n in range(40):
        mask = tmp_path / "mask.npy"
        np.save(
            mask, np.repeat(rng.integers(0, 4, (400, 1), dtype=np.uint8), 640, axis=1)
        )  # runs, as masks have
        entries[f"S_0/{n}.npy"] = encode_file(mask)
    sub = a_submission(tmp_path, entries)
    out = tmp_path / "decoded"

    tracemalloc.start()
    try:
        submission.main(["decode", "--json", str(sub), "--out", str(out)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 40 * 256_128 / 4, peak  # all decoded masks at once would be 10 MB
    assert len(list(out.rglob("*.npy"))) == 40 and not list(out.rglob("*.tmp"))
    np.testing.assert_array_equal(np.load(out / "S_0/39.npy"), np.load(tmp_path / "mask.npy"))
