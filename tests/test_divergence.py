"""A diverging run (the loss turns NaN or inf) stops with one line and keeps its last good checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import train_argv

import train
from models.checkpoint import load_checkpoint

# Every test here runs a real script (in-process or as a subprocess), with one torch thread.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A step schedule that jumps to lr 1e30 after a good epoch 1: epoch 2's second batch is NaN."""
    schedule = [
        "--set",
        "optimizer.schedule.type=step",
        "--set",
        "optimizer.schedule.params.steps=[[0, 0.003], [1, 1.0e30]]",
    ]
    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        train.main(train_argv(data, out, "--epochs", 3, *schedule))
    assert exit_info.value.code not in (0, None)
    last = out / "tiny" / "fold_0" / "last.pt"
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert re.fullmatch(
        rf"error: training diverged: loss is (nan|inf) at epoch 2, .*; {last} \(epoch 1\) is kept", errors[0]
    )
    payload = load_checkpoint(last)
    assert payload["epoch"] == 1
    assert all(
        torch.isfinite(tensor).all() for tensor in payload["model"].values() if tensor.is_floating_point()
    )
    assert (last.parent / "history.csv").read_text().count("\n") == 2  # header + epoch 1
