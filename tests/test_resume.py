"""Resuming a run: a run folder without last.pt is not silently reused, a checkpoint of another
fold, run or number of processes is refused, and the ranks of a distributed run agree on what was
loaded. (A run killed at any moment resumes to the uninterrupted weights: test_bad_input.py, beside
the reference run it is compared with.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SUBPROCESS_ENV, assert_catalogued, error_line, run_ok, train_argv

import train
from training.state import restore_rng_state, rng_state
from utils import distributed
from utils.errors import InputError

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


# --- resume safety ------------------------------------------------------------------------------


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


# --- distributed resume ------------------------------------------------------------------------------


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
