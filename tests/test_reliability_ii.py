"""Reliability II (issue 15), through the real commands: bad data is found before a run folder
exists, resumes cannot mix runs, ground-truth pickles run no code, clean shutdown, and every
case of the catalogue in docs/errors-and-recovery.md gives its documented one-line message.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, error_line, run_script, write_tiny_dataset

import export
import predict_ensemble
import segment
import train
import validate
from dataset import create_kfolds
from dataset.openeds import image_relpath, label_relpath, read_sample_list
from dataset.synthetic import cli as synthetic_cli
from dataset.synthetic import layout as synthetic
from dataset.synthetic.video import write_eye_video
from inference import export as onnx_export
from scripts import demo
from training.state import restore_rng_state, rng_state
from utils import distributed, submission
from utils.errors import InputError
from utils.submission import encode_file

pytestmark = pytest.mark.slow  # every test here runs a real script (in-process or as a subprocess)
TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folds_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset with two folds by sequence."""
    root = write_tiny_dataset(tmp_path_factory.mktemp("reliability_ii") / "data")
    create_kfolds.main(["--data-dir", str(root), "--folds", "2"])
    return root


@pytest.fixture
def data(folds_data: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset, free to damage."""
    return Path(shutil.copytree(folds_data, tmp_path / "data"))


def train_argv(data: Path, out: Path, *extra: object, epochs: int = 1) -> list[str]:
    argv = ["--config", TINY, "--data-dir", data, "--fold", 0, "--output-dir", out, "--epochs", epochs]
    return [str(arg) for arg in [*argv, *extra]]


# --- 1. pre-flight data check -----------------------------------------------------------------------


def test_every_bad_frame_of_the_fold_is_reported_before_the_run_folder_exists(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_keys, val_keys = (read_sample_list(data / f"fold_0_{part}.txt") for part in ("train", "val"))
    damaged = [
        data / image_relpath(train_keys[0]),  # corrupt PNG
        data / label_relpath(train_keys[-1]),  # label value 7
        data / image_relpath(val_keys[0]),  # wrong size, in the validation set
        data / label_relpath(val_keys[-1]),  # truncated .npy
    ]
    damaged[0].write_bytes(damaged[0].read_bytes()[:100])
    np.save(damaged[1], np.full((400, 640), 7, np.uint8))
    cv2.imwrite(str(damaged[2]), np.zeros((200, 320), np.uint8))
    damaged[3].write_bytes(damaged[3].read_bytes()[:1000])
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out), capsys)

    assert line.startswith(f"error: {data}: 4 bad files among the frames this run reads"), line
    assert line.count(str(data) + "/S_") == 3 and line.endswith("; and 1 more")
    assert "not a readable image" in line and "values must be 0..3, found [7]" in line
    assert not out.exists()


@pytest.mark.parametrize("problem", ["frame not in the index", "train and val overlap"])
def test_fold_files_are_checked_against_the_index_and_for_overlap(
    problem: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_file, val_file = data / "fold_0_train.txt", data / "fold_0_val.txt"
    if problem == "frame not in the index":
        train_file.write_text(
            train_file.read_text() + "S_0/label_2.npy\nS_99/label_1.npy\n"
        )  # unlabelled, absent
        needles = [str(train_file), "2 frame(s) are not labelled frames of the data dir", "S_99/label_1.npy"]
    else:
        first_val = val_file.read_text().splitlines()[0]
        train_file.write_text(train_file.read_text() + first_val + "\n")
        needles = [str(train_file), "1 frame(s) are also in fold_0_val.txt", first_val]
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out), capsys)

    assert all(needle in line for needle in needles), (needles, line)
    assert not out.exists()


def pseudo_folder(data: Path, root: Path) -> tuple[Path, list[str]]:
    """A hand-made pseudo-label folder over fold 0's unlabelled frames of sequences S_2, S_3."""
    keys = [f"S_{s}/{n}" for s in (2, 3) for n in (0, 2)]
    for key in keys:
        (root / label_relpath(key)).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / label_relpath(key), np.zeros((400, 640), np.uint8))
    (root / "pseudo.json").write_text(json.dumps({"keys": keys, "trained_on": []}))
    return root, keys


def test_pseudo_labelled_frames_get_a_header_check_before_training(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pseudo, keys = pseudo_folder(data, tmp_path / "pseudo")
    cv2.imwrite(str(data / image_relpath(keys[0])), np.zeros((200, 320), np.uint8))
    np.save(pseudo / label_relpath(keys[1]), np.zeros((40, 64), np.uint8))
    out = tmp_path / "runs"

    line = error_line(train.main, train_argv(data, out, "--pseudo-dir", pseudo), capsys)

    assert "2 bad files" in line
    assert f"{data / image_relpath(keys[0])}: expected 640x400 (WxH), got 320x200" in line
    assert f"{pseudo / label_relpath(keys[1])}: expected shape (400, 640), got (40, 64)" in line
    assert not out.exists()


# --- 2. ground-truth pickles ----------------------------------------------------------------------


class _RunsCode:
    """Unpickling this calls open(marker, "w"): proof that code ran, if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


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
    truth["S_0/0.npy"] = _RunsCode(marker)
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


# --- 3. resume safety ------------------------------------------------------------------------------


def run_ok(argv: list[str]) -> None:
    train.main(argv)


@pytest.mark.parametrize("resume", [[], ["--resume", "auto"]])
def test_a_run_folder_without_last_pt_is_not_silently_reused(
    resume: list[str], data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    run = out / "tiny" / "fold_0"
    run_ok(train_argv(data, out, epochs=2))
    (run / "last.pt").unlink()
    before = (run / "history.csv").read_text(), (run / "best.pt").read_bytes()

    line = error_line(train.main, train_argv(data, out, *resume, epochs=2), capsys)

    assert line.startswith(
        f"error: {run}: this run folder holds best.pt, history.csv of 2 epoch(s) but no last.pt"
    )
    assert f"--resume {run / 'best.pt'} continues from the best epoch" in line
    assert ((run / "history.csv").read_text(), (run / "best.pt").read_bytes()) == before
    # As the line says: continuing from best.pt works, and the history is cut back to its epoch.
    best_epoch = int(torch.load(run / "best.pt", weights_only=True)["epoch"])
    run_ok(train_argv(data, out, "--resume", run / "best.pt", epochs=3))
    epochs = [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, 4)] and best_epoch <= 2


def test_resume_refuses_another_folds_or_another_runs_checkpoint(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    run_ok([*train_argv(data, out), "--fold", "1"])  # argparse: the last --fold wins
    fold_1 = out / "tiny" / "fold_1" / "last.pt"

    line = error_line(train.main, train_argv(data, out, "--resume", fold_1), capsys)

    assert line.startswith(
        f"error: {fold_1}: cannot resume: the checkpoint belongs to another run (fold: 1 -> 0, "
    )
    assert "training frames: 8 of the checkpoint's not in this run, 8 new" in line
    assert not (out / "tiny" / "fold_0").exists()

    run_ok(train_argv(data, out, "--name", "a"))
    line = error_line(
        train.main, train_argv(data, out, "--name", "b", "--resume", out / "a" / "fold_0" / "last.pt"), capsys
    )
    assert "cannot resume: the checkpoint belongs to another run (name: 'a' -> 'b')" in line
    assert not (out / "b").exists()


def test_a_resumed_checkpoint_that_does_not_say_what_it_trained_on_does_not_gain_a_trained_on(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    last = out / "tiny" / "fold_0" / "last.pt"
    run_ok(train_argv(data, out))
    old = torch.load(last, weights_only=True)
    del old["trained_on"], old["run"]  # as written before train.py recorded them
    torch.save(old, last)

    run_ok(train_argv(data, out, "--resume", "auto", epochs=2))

    resumed = torch.load(last, weights_only=True)
    assert resumed["epoch"] == 2 and "trained_on" not in resumed  # the leakage rule: trained on every label


# --- 9. synthetic data written whole, and the demo knows when it is -----------------------------------


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


# --- 10. make clean ------------------------------------------------------------------------------------


def test_make_clean_keeps_trained_runs() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    removed = [word for line in dry_run.splitlines() if line.startswith("rm ") for word in line.split()[1:]]
    assert (
        "demo" in removed and "runs" not in removed and not any(word.startswith("runs/") for word in removed)
    )


# --- 5. SIGTERM and stale temp files ---------------------------------------------------------------------

SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_train(*args: object) -> subprocess.CompletedProcess:
    return run_script("train.py", *args, check=False, threads=1, timeout=600)


def test_sigterm_finishes_the_step_saves_last_pt_and_says_how_to_resume(
    folds_data: Path, tmp_path: Path
) -> None:
    """Batch 1: 8 steps an epoch, so the SIGTERM sent when epoch 1 is reported lands inside epoch 2."""
    argv = [*train_argv(folds_data, tmp_path / "ref", epochs=3), "--set", "optimizer.batch_size=1"]
    assert run_train(*argv).returncode == 0
    out = tmp_path / "runs"
    argv[argv.index("--output-dir") + 1] = str(out)
    log = tmp_path / "train.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "train.py", *argv], cwd=ROOT, env=SUBPROCESS_ENV, stdout=handle,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    while "epoch 1/3" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM

    last = out / "tiny" / "fold_0" / "last.pt"
    stopped = [line for line in log.read_text().splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(stopped) == 1 and f"{last} saved; continue with: python train.py " in stopped[0], stopped
    assert stopped[0].endswith("--resume auto")
    assert_catalogued("SIGTERM during training", stopped[0])
    payload = torch.load(last, weights_only=True)
    assert payload["epoch"] == 1 and 1 <= payload["step"] < 8  # mid-epoch 2

    resumed = run_train(*shlex.split(stopped[0].split("continue with: python train.py ", 1)[1]))

    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(last, weights_only=True)
    expected = torch.load(tmp_path / "ref" / "tiny" / "fold_0" / "last.pt", weights_only=True)
    assert final["epoch"] == 3 and "step" not in final
    assert all(torch.equal(final["model"][k], expected["model"][k]) for k in expected["model"])
    history = (out / "tiny" / "fold_0" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3"]


def test_sigterm_to_the_whole_process_group_with_dataloader_workers(folds_data: Path, tmp_path: Path) -> None:
    """SLURM signals every process of the job: the DataLoader workers (forked after the handler
    is installed, so they inherit it) must not die and take the run down with a traceback."""
    argv = [
        *train_argv(folds_data, tmp_path / "runs", "--workers", 1, epochs=3),
        "--set",
        "optimizer.batch_size=1",
    ]
    log = tmp_path / "train.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "train.py", *argv], cwd=ROOT, env=SUBPROCESS_ENV, stdout=handle,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
    while "epoch 1/3" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and "stopped by SIGTERM" in log.read_text()


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_dead_processes_are_removed_at_start(folds_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run = out / "tiny" / "fold_0"
    run_ok(train_argv(folds_data, out))
    pid, long_ago = dead_pid(), time.time() - 3600
    stale, fresh = run / f".last.pt.{pid}.tmp", run / f".best.pt.{pid}.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a checkpoint")
    os.utime(stale, (long_ago, long_ago))  # fresh: may be another machine's write in progress

    run_ok(train_argv(folds_data, out, "--resume", "auto", epochs=2))

    assert not stale.exists() and fresh.exists()


@pytest.fixture(scope="module")
def checkpoint(folds_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.pt of a one-epoch tiny run on fold 0."""
    out = tmp_path_factory.mktemp("checkpoint")
    run_ok(train_argv(folds_data, out))
    return out / "tiny" / "fold_0" / "last.pt"


def predict_argv(data: Path, checkpoint: Path, keys: list[str], tmp_path: Path, *extra: object) -> list[str]:
    frames = tmp_path / "frames.txt"
    frames.write_text("".join(f"{label_relpath(key)}\n" for key in keys))
    argv = ["--data-dir", data, "--label-file", frames, "--checkpoints", checkpoint, "--workers", 0]
    return [str(arg) for arg in [*argv, *extra]]


def test_predict_removes_stale_temp_files_of_dead_processes(
    folds_data: Path, checkpoint: Path, tmp_path: Path
) -> None:
    preds = tmp_path / "preds"
    argv = predict_argv(folds_data, checkpoint, ["S_0/1", "S_0/4"], tmp_path, "--save-dir", preds)
    predict_ensemble.main(argv)
    pid, long_ago = dead_pid(), time.time() - 3600
    stale = preds / "S_0" / f".4.npy.{pid}.tmp"
    stale.write_bytes(b"half a mask")
    os.utime(stale, (long_ago, long_ago))

    predict_ensemble.main(argv)

    assert not stale.exists()


# --- 6. predict_ensemble ------------------------------------------------------------------------------


def test_predictions_of_another_precision_are_not_mixed_in(
    folds_data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds = tmp_path / "preds"
    argv = predict_argv(
        folds_data, checkpoint, ["S_0/1", "S_0/4"], tmp_path, "--save-dir", preds, "--gpu", "cpu"
    )
    predict_ensemble.main([*argv, "--precision", "fp32"])

    line = error_line(predict_ensemble.main, [*argv, "--precision", "bf16"], capsys)

    assert line.startswith(
        f"error: {preds}: holds predictions of another ensemble (differs in: precision)"
    ), line


def test_a_failed_rerun_leaves_no_stale_output_list_or_submission(
    data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preds, submission = tmp_path / "preds", tmp_path / "submission.json"
    keys = ["S_0/1", "S_0/4", "S_1/1"]
    argv = predict_argv(data, checkpoint, keys, tmp_path, "--save-dir", preds, "--submission", submission)
    predict_ensemble.main(argv)
    assert (preds / "output.txt").is_file() and submission.is_file()
    (preds / "S_1" / "1.npy").unlink()
    png = data / image_relpath("S_1/1")
    png.write_bytes(png.read_bytes()[:100])

    line = error_line(predict_ensemble.main, argv, capsys)

    assert line == f"error: {png}: not a readable image (corrupt or truncated PNG?)"
    assert not (preds / "output.txt").exists() and not submission.exists()


def test_a_bad_frame_in_a_batch_does_not_lose_the_good_frames(
    data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ["S_0/1", "S_0/4", "S_0/7", "S_1/1", "S_1/4", "S_1/7"]
    bad = [data / image_relpath(keys[1]), data / image_relpath(keys[4])]
    for png in bad:
        png.write_bytes(png.read_bytes()[:100])
    preds = tmp_path / "preds"
    argv = predict_argv(data, checkpoint, keys, tmp_path, "--save-dir", preds, "--batch-size", 3)

    line = error_line(predict_ensemble.main, argv, capsys)

    assert line.startswith(
        f"error: {data}: 2 frames could not be predicted (the others were saved): {bad[0]}: "
    )
    saved = sorted(path.relative_to(preds).as_posix() for path in preds.rglob("*.npy"))
    assert saved == ["S_0/1.npy", "S_0/7.npy", "S_1/1.npy", "S_1/7.npy"]
    assert not (preds / "output.txt").exists()


# --- 7. the submission decoder ---------------------------------------------------------------------------


def a_submission(tmp_path: Path, entries: dict[str, str]) -> Path:
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(entries))
    return path


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


# --- the catalogue of docs/errors-and-recovery.md, row by row ---------------------------------------------


def catalogue() -> dict[str, str]:
    """case -> message template, from the table under '## Catalogue'."""
    text = (ROOT / "docs" / "errors-and-recovery.md").read_text().split("\n## Catalogue\n", 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    return {row.split(" | ")[0][2:]: row.split("`")[1] for row in rows}


def assert_catalogued(case: str, line: str) -> None:
    """`line` is the catalogue's message for `case`; `<...>` in the template matches any text."""
    template = catalogue()[case]
    pattern = "".join(
        ".+?" if part.startswith("<") else re.escape(part) for part in re.split(r"(<[^>]+>)", template)
    )
    assert re.fullmatch(pattern, line), f"\n{line}\ndoes not match the catalogue's\n{template}"


Case = Callable[[Path, Path, Path, pytest.CaptureFixture[str], pytest.MonkeyPatch], str]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(produce: Case) -> Case:
        CASES[name] = produce
        return produce

    return register


@case("damaged frames in the fold")
def _damaged_frames(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"\x89PNG not really")
    np.save(data / "S_0/label_4.npy", np.full((400, 640), 7, np.uint8))
    keys = "S_0/label_1.npy\nS_0/label_4.npy\n"
    (data / "fold_0_train.txt").write_text(keys + (data / "fold_0_train.txt").read_text().replace(keys, ""))
    (data / "fold_0_val.txt").write_text((data / "fold_0_val.txt").read_text().replace(keys, ""))
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("fold frame not in the index")
def _not_in_index(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    with open(data / "fold_0_train.txt", "a") as handle:
        handle.write("S_0/label_2.npy\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("train and val overlap")
def _overlap(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    with open(data / "fold_0_train.txt", "a") as handle:
        handle.write((data / "fold_0_val.txt").read_text().splitlines()[0] + "\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("run folder without last.pt")
def _no_last(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    run = shutil.copytree(checkpoint.parent, tmp_path / "runs" / "tiny" / "fold_0")
    (run / "last.pt").unlink()
    rows = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text("\n".join([*rows, rows[1].replace("1,", "2,", 1)]) + "\n")
    return error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)


@case("checkpoint of another fold")
def _another_fold(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    run_ok([*train_argv(data, tmp_path / "runs"), "--fold", "1"])
    resume = tmp_path / "runs" / "tiny" / "fold_1" / "last.pt"
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--resume", resume), capsys)


@case("unknown loss type")
def _loss_type(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return error_line(
        train.main, train_argv(data, tmp_path / "runs", "--set", "mask_loss.type=Tversky"), capsys
    )


@case("loss parameter the loss does not take")
def _loss_param(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    sets = ["--set", "mask_loss.type=Dice", "--set", "mask_loss.params.ohpm=true"]
    return error_line(train.main, train_argv(data, tmp_path / "runs", *sets), capsys)


@case("--set value that is not YAML")
def _set_yaml(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--set", "seed=[1"), capsys)


@case("malformed pseudo manifest key")
def _pseudo_key(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    pseudo, _ = pseudo_folder(data, tmp_path / "pseudo")
    (pseudo / "pseudo.json").write_text(json.dumps({"keys": ["S_0/frame_1"], "trained_on": []}))
    return error_line(train.main, train_argv(data, tmp_path / "runs", "--pseudo-dir", pseudo), capsys)


@case("teacher that leaks in every sequence")
def _teacher_leak(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    val = read_sample_list(data / "fold_0_val.txt")
    sequences = sorted({key.split("/")[0] for key in val})
    keys = [f"{sequence}/0" for sequence in sequences]  # unlabeled frames (labels sit at n % 3 == 1)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    manifest = {"keys": keys, "trained_on": val, "checkpoints": [], "tta": "none", "num_classes": 4}
    (teacher / "teacher.json").write_text(json.dumps(manifest))
    line = error_line(train.main, train_argv(data, tmp_path / "runs", "--teacher", teacher), capsys)
    assert not (tmp_path / "runs").exists()
    return line


def _disk_full(*args: object, **kwargs: object) -> None:
    handle = args[1] if len(args) > 1 and hasattr(args[1], "write") else args[0]
    handle.write(b"partial")  # type: ignore[union-attr]
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(handle, "name", None))


@case("full disk writing a checkpoint")
def _full_disk_checkpoint(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(torch, "save", lambda payload, handle: _disk_full(handle))
    line = error_line(train.main, train_argv(data, tmp_path / "runs"), capsys)
    assert not list((tmp_path / "runs").rglob("*.tmp"))
    return line


@case("full disk writing a prediction")
def _full_disk_prediction(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(np, "save", lambda handle, array: _disk_full(handle))
    preds = tmp_path / "preds"
    line = error_line(
        predict_ensemble.main,
        predict_argv(data, checkpoint, ["S_0/1"], tmp_path, "--save-dir", preds),
        capsys,
    )
    assert not list(preds.rglob("*.tmp")) and not list(preds.rglob("*.npy"))
    return line


@case("ground-truth pickle with code")
def _pickle_code(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (tmp_path / "gt.pkl").write_bytes(pickle.dumps({"S_0/1.npy": _RunsCode(tmp_path / "ran")}))
    argv = ["--data-dir", str(data), "--pred-dir", str(data), "--gt-pkl", str(tmp_path / "gt.pkl")]
    return error_line(validate.main, argv, capsys)


@case("ground-truth pickle not at the path given")
def _pickle_path(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "gt.pkl").write_bytes(pickle.dumps({}))
    monkeypatch.chdir(tmp_path)
    return error_line(
        validate.main, ["--data-dir", str(data), "--pred-dir", str(data), "--gt-pkl", "gt.pkl"], capsys
    )


@case("prediction folder of another precision")
def _precision(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    argv = predict_argv(
        data, checkpoint, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds", "--gpu", "cpu"
    )
    predict_ensemble.main([*argv, "--precision", "fp32"])
    return error_line(predict_ensemble.main, [*argv, "--precision", "bf16"], capsys)


@case("bad frames while predicting")
def _bad_frames_predict(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    for key in ("S_0/4", "S_1/4"):
        (data / image_relpath(key)).write_bytes(b"")
    argv = predict_argv(data, checkpoint, ["S_0/1", "S_0/4", "S_1/4"], tmp_path, "--save-dir", tmp_path / "p")
    return error_line(predict_ensemble.main, argv, capsys)


@case('submission key "."')
def _submission_dot(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    sub = a_submission(tmp_path, {".": base64.b64encode(bytes([1, 0])).decode()})
    return error_line(submission.main, ["decode", "--json", str(sub), "--out", str(tmp_path / "out")], capsys)


@case("submission entry too large")
def _submission_bomb(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    bomb = bytes([255, 0]) * (submission.MAX_DECODED_BYTES // 255 + 1)
    sub = a_submission(tmp_path, {"S_0/1.npy": base64.b64encode(bomb).decode()})
    return error_line(submission.main, ["decode", "--json", str(sub), "--out", str(tmp_path / "out")], capsys)


@case("synthetic image not written")
def _synthetic_write(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setattr(synthetic.cv2, "imwrite", lambda *args, **kwargs: False)
    argv = ["--out", str(tmp_path / "synthetic"), "--sequences", "1", "--frames", "12", "--label-every", "4"]
    return error_line(synthetic_cli.main, [*argv, "--test-per-sequence", "1"], capsys)


def _segment_line(
    source: object, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    argv = ["--checkpoints", str(checkpoint), "--input", str(source), "--out", str(tmp_path / "segmented")]
    return error_line(segment.main, argv, capsys)


@case("segment.py: unreadable image")
def _segment_image(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"\x89PNG not really")
    return _segment_line(data / "S_0/1.png", checkpoint, tmp_path, capsys)


@case("segment.py: unreadable images in a folder")
def _segment_folder(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (data / "S_0/1.png").write_bytes(b"")
    return _segment_line(data / "S_0", checkpoint, tmp_path, capsys)


@case("segment.py: video that cannot be opened")
def _segment_unopenable(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    (tmp_path / "eye.mp4").write_bytes(b"not a video")
    return _segment_line(tmp_path / "eye.mp4", checkpoint, tmp_path, capsys)


@case("segment.py: video that breaks mid-stream")
def _segment_broken(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    video = tmp_path / "eye.avi"
    write_eye_video(video, frames=10, fps=10, size=(160, 100))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    return _segment_line(video, checkpoint, tmp_path, capsys)


@case("segment.py: camera that cannot be opened")
def _segment_camera(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)  # so that "9" is not a file
    return _segment_line(9, checkpoint, tmp_path, capsys)


def _segment_option_line(source: Path, checkpoint: Path, tmp_path: Path, capsys, *options: object) -> str:
    argv = ["--checkpoints", checkpoint, "--input", source, "--out", tmp_path / "segmented", *options]
    line = error_line(segment.main, argv, capsys)
    assert not (tmp_path / "segmented").exists()
    return line


@case("segment.py: bad measurement option")
def _segment_mm(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--mm-per-px", 0)


@case("segment.py: frame times asked of images")
def _segment_times(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--smooth")


@case("segment.py: --preview without a display")
def _segment_preview(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return _segment_option_line(data / "S_0/0.png", checkpoint, tmp_path, capsys, "--preview")


@case("segment.py: output folder of an earlier run")
def _segment_again(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    argv = [
        "--checkpoints",
        str(checkpoint),
        "--input",
        str(data / "S_0/1.png"),
        "--out",
        str(tmp_path / "segmented"),
    ]
    segment.main(argv)
    return error_line(segment.main, argv, capsys)
def _exported(checkpoint: Path) -> Path:
    """The checkpoint exported once (hflip inside), beside it; each case works on a copy."""
    onnx = checkpoint.parent / "model.onnx"
    if not onnx.is_file():
        export.main(["--checkpoint", str(checkpoint), "--out", str(onnx), "--tta", "hflip"])
    return onnx


def _onnx_copy(checkpoint: Path, folder: Path) -> Path:
    source = _exported(checkpoint)
    folder.mkdir(exist_ok=True)
    shutil.copy(source, folder / "model.onnx")
    shutil.copy(source.with_suffix(".json"), folder / "model.json")
    return folder / "model.onnx"


@case("ONNX model without its model.json")
def _onnx_no_json(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    onnx.with_suffix(".json").unlink()
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds")
    return error_line(predict_ensemble.main, argv, capsys)


@case("ONNX model replaced after export")
def _onnx_replaced(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    onnx.write_bytes(onnx.read_bytes()[:-100])
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds")
    return error_line(predict_ensemble.main, argv, capsys)


@case("ONNX model run with other views")
def _onnx_views(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    onnx = _onnx_copy(checkpoint, tmp_path / "onnx")
    argv = predict_argv(data, onnx, ["S_0/1"], tmp_path, "--save-dir", tmp_path / "preds", "--tta", "none")
    line = error_line(predict_ensemble.main, argv, capsys)
    assert not (tmp_path / "preds").exists()
    return line


@case("export below the agreement required")
def _export_refused(data, checkpoint, tmp_path, capsys, monkeypatch) -> str:
    monkeypatch.setitem(onnx_export.THRESHOLDS, "int8", 1.0)  # any int8 graph rounds some pixel differently
    out = tmp_path / "m.onnx"
    argv = ["--checkpoint", checkpoint, "--out", out, "--int8"]
    line = error_line(export.main, argv, capsys)
    assert not out.exists() and not out.with_suffix(".json").exists()
    return line


# Rows whose case needs a real subprocess: the named test checks the line against the table.
CHECKED_BY_TEST = {
    "SIGTERM during training": "test_sigterm_finishes_the_step_saves_last_pt_and_says_how_to_resume",
    "checkpoint of another number of processes": "test_resume_with_another_number_of_processes_is_refused",
    "checkpoint a rank cannot read": "test_rank_0_decides_and_a_rank_that_cannot_load_fails_every_rank",
}


def test_every_catalogue_row_is_tested() -> None:
    assert sorted(catalogue()) == sorted([*CASES, *CHECKED_BY_TEST])


@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue_case(
    name: str, data: Path, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert_catalogued(name, CASES[name](data, checkpoint, tmp_path, capsys, monkeypatch))


# --- 4. distributed resume ------------------------------------------------------------------------------


def test_resume_with_another_number_of_processes_is_refused(folds_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    run_ok(train_argv(folds_data, out))  # one process
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29547"]

    proc = subprocess.run(
        [*torchrun, "train.py", *train_argv(folds_data, out, "--resume", "auto", epochs=2)],
        cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    # One line per rank; torchrun's own launcher adds its ChildFailedError report, not ours.
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]
    assert 'train.py", line' not in proc.stderr and "utils/" not in proc.stderr, proc.stderr[-3000:]
    last = out / "tiny" / "fold_0" / "last.pt"
    for line in errors:
        assert line.startswith(f"error: {last}: ")
        assert_catalogued("checkpoint of another number of processes", line)
    assert torch.load(last, weights_only=True)["epoch"] == 1


def _two_ranks(rank: int, folder: str) -> None:
    """A gloo group of 2: rank 0 decides for both; a load that fails on rank 1 fails both."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29548", RANK=str(rank), WORLD_SIZE="2")
    distributed.init_distributed(torch.device("cpu"))
    decided = distributed.from_main(lambda: f"decided by rank {distributed.rank()}")

    def load() -> str:
        if distributed.rank() == 1:
            raise InputError("checkpoint not found", "runs/x/last.pt")
        return "loaded"

    try:
        distributed.on_every_rank(load)
        outcome = "loaded"
    except InputError as exc:
        outcome = str(exc)
    Path(folder, f"rank{rank}.txt").write_text(f"{decided}\n{outcome}\n")
    distributed.cleanup()


def test_rank_0_decides_and_a_rank_that_cannot_load_fails_every_rank(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_two_ranks, args=(str(tmp_path),), nprocs=2)

    for rank in (0, 1):
        decided, outcome = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert decided == "decided by rank 0"
        assert_catalogued("checkpoint a rank cannot read", f"error: {outcome}")


def test_the_process_group_has_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kwargs: calls.append(kwargs))

    distributed.init_distributed(torch.device("cpu"))

    assert calls and calls[0]["timeout"].total_seconds() == distributed.TIMEOUT_S


def test_cuda_rng_states_of_a_machine_with_more_gpus_restore_on_fewer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    restored: list[int] = []
    state = rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 2  # saved on two GPUs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda new_state, device=0: restored.append(int(device)))

    restore_rng_state(state)

    assert restored == [0]
