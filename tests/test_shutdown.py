"""Shutting down cleanly: SIGTERM finishes the step, saves last.pt and says how to resume (also when
the whole process group gets it), and temp files a dead process left are removed at the next start.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, SUBPROCESS_ENV, assert_catalogued, dead_pid, run_ok, run_script, train_argv

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


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
