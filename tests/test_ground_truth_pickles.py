"""Ground-truth pickles (validate.py --gt-pkl): a plain pickle of masks loads, a pickle that would
run code is refused unloaded, and the pickle is read only from the path given.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import RunsCode, error_line

import validate
from dataset.openeds import label_relpath, read_sample_list

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def perfect_predictions(data: Path, root: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Every listed label saved as its own prediction; returns the ground-truth dict."""
    truth = {}
    for key in keys:
        mask = np.load(data / label_relpath(key))
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / f"{key}.npy", mask)
        truth[f"{key}.npy"] = mask
    return truth


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_ground_truth_pickle_still_loads(
    protocol: int, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = read_sample_list(data / "fold_0_val.txt")
    truth = perfect_predictions(data, tmp_path / "preds", keys)
    pkl = tmp_path / "gt.pkl"
    pkl.write_bytes(pickle.dumps(truth, protocol=protocol))

    metrics = validate.main(
        ["--data-dir", str(data), "--pred-dir", str(tmp_path / "preds"), "--gt-pkl", str(pkl)]
    )

    assert metrics["n_images"] == len(keys) and metrics["miou"] == 1.0


def test_a_ground_truth_pickle_with_code_is_refused_unrun(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = read_sample_list(data / "fold_0_val.txt")
    truth: dict[str, object] = dict(perfect_predictions(data, tmp_path / "preds", keys))
    marker = tmp_path / "code_ran"
    truth["S_0/0.npy"] = RunsCode(marker)
    pkl = tmp_path / "gt.pkl"
    pkl.write_bytes(pickle.dumps(truth))

    argv = ["--data-dir", str(data), "--pred-dir", str(tmp_path / "preds"), "--gt-pkl", str(pkl)]
    line = error_line(validate.main, argv, capsys)

    assert line.startswith(f"error: {pkl}: holds a pickled io.open: refused unloaded"), line
    assert not marker.exists()


def test_a_ground_truth_pickle_is_read_only_from_the_path_given(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = read_sample_list(data / "fold_0_val.txt")
    (data / "gt.pkl").write_bytes(pickle.dumps(perfect_predictions(data, tmp_path / "preds", keys)))
    monkeypatch.chdir(tmp_path)  # no gt.pkl here: only <data-dir>/gt.pkl exists

    argv = ["--data-dir", str(data), "--pred-dir", str(tmp_path / "preds"), "--gt-pkl", "gt.pkl"]
    line = error_line(validate.main, argv, capsys)

    assert (
        line == f"error: gt.pkl: ground-truth pickle not found (there is {data / 'gt.pkl'}: pass that path)"
    )
