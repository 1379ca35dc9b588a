"""Which run a training process continues, and the checks that keep two runs from mixing.

A run folder is one run of one fold: its checkpoints record the run's name, fold and the frames
it trained on (`trained_on`, which the pseudo-label leakage rule reads). A folder that holds a
run is never restarted over it, and a checkpoint is never continued into another run's folder:
the weights, the history and `trained_on` would then describe two different trainings.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from utils import distributed
from utils.errors import InputError

__all__ = ["check_fresh_start", "check_same_run", "run_identity"]


def _history_rows(path: Path) -> int:
    try:
        with open(path, newline="") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    except OSError:
        return 0


def check_fresh_start(run_dir: Path) -> None:
    """Refuse to start a run from scratch in a folder that already holds one.

    last.pt: the run can be continued (--resume auto). best.pt or more than one epoch of
    history.csv without last.pt: someone deleted or moved last.pt; starting over would
    duplicate the history and overwrite best.pt. One history row (and best.pt) without last.pt is
    what a kill during the first epoch's save leaves: that run restarts from scratch.
    """
    if (run_dir / "last.pt").is_file():
        raise InputError(
            "this run folder already holds a training run: --resume auto continues it; "
            "another --name or --output-dir starts a new one",
            run_dir,
        )
    rows = _history_rows(run_dir / "history.csv")
    if rows > 1 or ((run_dir / "best.pt").is_file() and rows == 0):
        found = ", ".join(
            name for name, present in (("best.pt", (run_dir / "best.pt").is_file()), ("history.csv", rows > 0))
            if present
        )  # fmt: skip
        raise InputError(
            f"this run folder holds {found} of {max(rows, 1)} epoch(s) but no last.pt, so it cannot be "
            f"continued exactly; --resume {run_dir / 'best.pt'} continues from the best epoch, "
            "another --name or --output-dir starts a new run",
            run_dir,
        )


def run_identity(run_dir: Path, fold: int) -> dict[str, Any]:
    """What a checkpoint records about the run that wrote it.

    world_size: the batch size is per process and each rank takes every world_size-th sample,
    so another number of processes would continue with another schedule and data order.
    """
    return {"name": run_dir.parent.name, "fold": fold, "world_size": distributed.world_size()}


def check_same_run(
    payload: dict[str, Any], path: Path, run_dir: Path, fold: int, trained_on: list[str]
) -> list[str] | None:
    """Refuse to continue a checkpoint of another fold or run; the trained_on the run keeps recording.

    Names what differs. A checkpoint that does not record what it trained on (written before
    train.py saved it) returns None: the resumed run then does not claim to know either, and the
    leakage rule counts it as trained on every label.
    """
    saved = payload.get("run") or {}
    current = run_identity(run_dir, fold)
    # A checkpoint inside this run folder is this run's, whatever the folder is called now.
    compared = ("fold", "world_size")
    if Path(path).resolve().parent != Path(run_dir).resolve():
        compared += ("name",)
    changes = [
        f"{key}: {saved[key]!r} -> {current[key]!r}"
        for key in compared
        if key in saved and saved[key] != current[key]
    ]
    saved_on = payload.get("trained_on")
    if saved_on is not None and set(saved_on) != set(trained_on):
        gone, new = len(set(saved_on) - set(trained_on)), len(set(trained_on) - set(saved_on))
        changes.append(f"training frames: {gone} of the checkpoint's not in this run, {new} new")
    if changes:
        raise InputError(
            f"cannot resume: the checkpoint belongs to another run ({', '.join(changes)}); resume a run "
            "with its own fold, --name, data and number of processes, or start a new run without --resume",
            path,
        )
    return None if saved_on is None else trained_on
