"""Which run a training process continues, and the checks that keep two runs from mixing.

A run folder is one run of one fold: its checkpoints record the run's name, fold and the frames
it trained on (`trained_on`, which the pseudo-label leakage rule reads). A folder that holds a
run is never restarted over it, and a checkpoint is never continued into another run's folder:
the weights, the history and `trained_on` would then describe two different trainings.

A new run may start from a trained model's weights (`--init`, models.checkpoint.init_from_checkpoint);
its checkpoints then record where from (`init`), and its `trained_on` includes what that model
learned from. A resumed run continues from its own weights: `--init` does not apply to it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from config.schema import Config
from models.checkpoint import init_from_checkpoint, load_checkpoint
from training.progress import History
from training.state import restore_rng_state
from utils import distributed
from utils.errors import InputError

__all__ = [
    "check_fresh_start",
    "check_same_run",
    "inherited_trained_on",
    "run_identity",
    "resolve_resume",
    "config_changes",
    "RESUMABLE_CHANGES",
    "Start",
    "start_or_resume",
]


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


def inherited_trained_on(trained_on: list[str] | None, init: dict[str, Any] | None) -> list[str] | None:
    """What a run learned from: its own frames, and those of the model it started from (--init).

    None (unknown, which the leakage rule counts as every label) when either does not say.
    """
    if init is None or trained_on is None:
        return trained_on
    if init.get("trained_on") is None:
        return None
    return sorted(set(trained_on) | set(init["trained_on"]))


def check_same_run(
    payload: dict[str, Any], path: Path, run_dir: Path, fold: int, trained_on: list[str]
) -> list[str] | None:
    """Refuse to continue a checkpoint of another fold or run; the trained_on the run keeps recording.

    Names what differs. A checkpoint that does not record what it trained on (written before
    train.py saved it) returns None: the resumed run then does not claim to know either, and the
    leakage rule counts it as trained on every label. The frames of the model a run started from
    (its `init`) count as the run's.
    """
    trained_on = inherited_trained_on(trained_on, payload.get("init")) or []
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


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """--resume: None (a new run), 'auto' (this run's last.pt if there is one) or a checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


# Keys a resumed run may change: how long it trains, how it loads and validates. Anything
# else (model, optimizer, loss, augmentations, seed, scale) would silently mix two recipes.
# Precision and memory layout are the machine's choice (auto), so a run may move machines.
RESUMABLE_CHANGES = (
    "optimizer.schedule.epochs",
    "data.",
    "validation.",
    "cpu_bf16",
    "channels_last",
    "compile",
)


def config_changes(saved: dict | None, config: Config) -> str:
    """The keys that differ between a checkpoint's config and this run's, as 'key: old -> new'."""
    if saved is None:
        return ""

    def flat(value: object, prefix: str = "") -> dict[str, object]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    old, new = flat(saved), flat(config.model_dump(mode="json"))
    # A key added to the schema after the checkpoint was written means its default there.
    defaults = flat(type(config).model_construct().model_dump(mode="json"))
    old |= {key: defaults[key] for key in new.keys() - old.keys() if key in defaults}
    keys = sorted(
        k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)
    )
    shown = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:3]]
    return ", ".join(shown) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


@dataclass
class Start:
    """Where a run starts: epoch, best score, steps already done in that epoch and their sums."""

    epoch: int = 0
    best_miou: float = -1.0
    step: int = 0  # a run stopped mid-epoch: steps done
    carry: tuple[float, int, float] = (0.0, 0, 0.0)  # (loss sum, images, seconds) of those steps
    trained_on: list[str] | None = None
    resumed_from: Path | None = None
    init: dict[str, Any] | None = None  # init_from_checkpoint's record: the weights a new run started from


def start_or_resume(
    resume_path: Path | None,
    run_dir: Path,
    fold: int,
    config: Config,
    trained_on: list[str],
    history: History,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    init_path: Path | None = None,
) -> Start:
    """A new run (checked not to overwrite one; from `init_path`'s weights when given), or everything
    restored from `resume_path` (then `init_path` is not used: a resumed run keeps its own weights)."""
    if resume_path is None:
        distributed.from_main(lambda: check_fresh_start(run_dir))
        history.truncate(0)  # rows of a first epoch killed while saving
        init = init_from_checkpoint(model, config, init_path) if init_path is not None else None
        return Start(trained_on=inherited_trained_on(trained_on, init), init=init)
    payload = distributed.on_every_rank(lambda: load_checkpoint(resume_path))
    trained_on_kept = check_same_run(payload, resume_path, run_dir, fold, trained_on)
    changed = config_changes(payload.get("config"), config)
    if changed:
        raise InputError(
            f"cannot resume: the checkpoint was trained with another config ({changed}); "
            "use another --name or --output-dir for a new run",
            resume_path,
        )
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        scaler.load_state_dict(payload["scaler"])
    except (KeyError, ValueError, RuntimeError) as exc:
        # The whole message, whitespace collapsed: its first line alone ("Error(s) in loading
        # state_dict for SegmentationModel:") does not say which keys or shapes differ.
        detail = " ".join(str(exc).split())[:240]
        raise InputError(f"cannot resume from this checkpoint: {detail}", resume_path) from None
    start = Start(int(payload["epoch"]), float(payload["best_miou"]), int(payload.get("step", 0)))
    start.trained_on, start.resumed_from, start.init = trained_on_kept, resume_path, payload.get("init")
    if start.step and distributed.is_main():  # the carried sums are global: one rank adds them
        start.carry = tuple(payload["partial"])
    restore_rng_state(payload["rng"])
    history.truncate(start.epoch)
    return start
