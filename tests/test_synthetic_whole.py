"""Synthetic data is written whole or not at all, the demo regenerates data that was not finished,
and make clean keeps trained runs.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from dataset.synthetic import layout as synthetic
from scripts import demo
from utils.errors import InputError

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


# --- synthetic data written whole, and the demo knows when it is ----------------------------------------


def test_synthetic_stops_on_a_failed_image_write_and_the_folder_does_not_look_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synthetic.cv2, "imwrite", lambda *args, **kwargs: False)  # what a full disk returns
    out = tmp_path / "synthetic"

    with pytest.raises(InputError, match=r"S_0/0\.png: cannot write image \(disk full"):
        synthetic.generate(out, sequences=1, frames=12, label_every=4, test_per_sequence=1)

    assert not synthetic.is_complete(out) and not (out / "images.txt").exists()


class _StopDemo(Exception):
    pass


def test_demo_regenerates_data_that_was_not_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "demo" / "data"
    data.mkdir(parents=True)
    (data / "test_sampleName_GT.pkl").write_bytes(pickle.dumps({}))  # written before the index files
    (data / synthetic.MARKER_NAME).write_text(json.dumps({"complete": False}))
    stages: list[str] = []

    def stage(name: str, *command: object) -> None:
        stages.append(name)
        raise _StopDemo

    monkeypatch.setattr(demo, "stage", stage)
    with pytest.raises(_StopDemo):
        demo.main(["--out", str(tmp_path / "demo")])

    assert stages == ["data"]


# --- make clean ---------------------------------------------------------------------------------------


def test_make_clean_keeps_trained_runs() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    removed = [word for line in dry_run.splitlines() if line.startswith("rm ") for word in line.split()[1:]]
    assert (
        "demo" in removed and "runs" not in removed and not any(word.startswith("runs/") for word in removed)
    )
