"""The epochs of one fold: train, validate, record, and stop cleanly on SIGTERM or divergence.

train.py builds the pieces (a `FoldRun`) and calls `fit`. Each epoch draws the same numbers
whatever ran before (seeded by epoch); a run resumed mid-epoch (a SIGTERM's last.pt) skips the
steps it had done and carries their loss sums. Only rank 0 writes; every rank validates its share.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from config.schema import Config
from models.checkpoint import save_checkpoint, training_checkpoint
from training.data import Loaders
from training.loop import EpochStats, TrainingDiverged, evaluate, train_one_epoch
from training.resume import Start, run_identity
from training.run_folder import EpochRecorder, metrics_row
from training.shutdown import EXIT_STOPPED, StopRequest, resume_command
from training.state import rng_state, seed_everything
from utils import distributed

__all__ = ["FoldRun", "fit", "log", "eta_line"]


def log(message: str) -> None:
    if distributed.is_main():
        print(message, flush=True)


def eta_line(images_per_s: float, first_epoch_s: float, epochs_left: int, val_interval: int) -> str:
    """After the first epoch: the measured speed and the time this fold still needs.

    A rough figure: the first epoch also paid start-up (worker launch, decoding into the cache),
    which makes it err long, and validations still to come are not in it, which makes it err short.
    """
    left = first_epoch_s * epochs_left
    finish = time.strftime("%H:%M", time.localtime(time.time() + left))
    return (f"speed: {images_per_s:.1f} img/s; about {left / 60:.1f} min left for this fold "
            f"({epochs_left} epochs, validation every {val_interval}), ending near {finish}")  # fmt: skip


@dataclass
class FoldRun:
    """Everything one fold's training needs, built by train.py."""

    config: Config
    device: torch.device
    run_dir: Path
    fold: int
    argv: list[str]  # to print the command that resumes a stopped run
    model: torch.nn.Module  # the plain model (checkpoints, validation, freezing)
    train_model: torch.nn.Module  # the same, compiled and/or DDP-wrapped
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loaders: Loaders | None
    amp_dtype: torch.dtype | None
    start: Start
    recorder: EpochRecorder | None  # rank 0 only

    def checkpoint(self, epochs_done: int, best: float) -> dict[str, Any]:
        return training_checkpoint(
            self.model, self.optimizer, self.scheduler, self.scaler, epoch=epochs_done, best_miou=best,
            config=self.config, rng=rng_state(), trained_on=self.start.trained_on,
            run=run_identity(self.run_dir, self.fold), **({"init": self.start.init} if self.start.init else {}),
        )  # fmt: skip

    def close_loaders(self) -> None:
        if self.loaders is not None:
            self.loaders.close()
            self.loaders = None

    def stop(self, where: str) -> None:
        """SIGTERM: last.pt is saved; say how to continue, let the workers go, exit 143."""
        log(
            f"stopped by SIGTERM {where}: {self.run_dir / 'last.pt'} saved; continue with: {resume_command(self.argv)}"
        )
        # DataLoader workers stop now, not at exit (they ignore SIGTERM: training.shutdown).
        self.close_loaders()
        sys.exit(EXIT_STOPPED)


def _train_epoch(run: FoldRun, epoch: int, stop: StopRequest) -> EpochStats:
    config, start = run.config, run.start
    mid_epoch = epoch == start.epoch and start.step > 0  # the RNG state restored is this epoch's
    if not mid_epoch:
        seed_everything(config.seed + epoch)  # whatever ran before, epoch e draws the same numbers
    run.loaders.sampler.set_epoch(epoch, skip=start.step * config.optimizer.batch_size if mid_epoch else 0)
    frozen = epoch < config.optimizer.freeze_encoder_epochs
    # Single process: skip the encoder's backward entirely. DDP needs every parameter in
    # the graph, so there the encoder's grads are computed and then dropped.
    ddp = distributed.world_size() > 1
    run.model.freeze_encoder(frozen and not ddp)
    try:
        stats = train_one_epoch(
            run.train_model, run.criterion, run.optimizer, run.scheduler, run.scaler, run.loaders.train, run.device,
            epoch=epoch, epochs=config.optimizer.schedule.epochs, amp_dtype=run.amp_dtype,
            clip=config.optimizer.grad_clip, pseudo_weight=config.pseudo.weight, distill=config.distill,
            frozen_params=list(run.model.encoder.parameters()) if frozen and ddp else None,
            stop=stop, carry=start.carry if mid_epoch else (0.0, 0, 0.0),
        )  # fmt: skip
    except TrainingDiverged as exc:
        last = run.run_dir / "last.pt"
        kept = (
            f"; {last} (epoch {start.epoch if epoch == start.epoch else epoch}) is kept"
            if last.is_file()
            else ""
        )
        print(f"error: training diverged: {exc}{kept}", file=sys.stderr)
        sys.exit(1)
    if stats.stopped:  # SIGTERM: this epoch's position goes into last.pt, mid-epoch
        done = (start.step if mid_epoch else 0) + stats.steps
        if distributed.is_main():
            partial = {"step": done, "partial": [stats.loss * stats.images, stats.images, stats.seconds]}
            save_checkpoint(run.checkpoint(epoch, run.start.best_miou) | partial, run.run_dir / "last.pt")
        distributed.barrier()
        total = (start.step if mid_epoch else 0) + len(run.loaders.train)
        run.stop(f"in epoch {epoch + 1}, step {done} of {total}")
    return stats


def fit(run: FoldRun) -> float:
    """Train from `run.start` to the config's last epoch; returns the best validation mIoU."""
    config, epochs = run.config, run.config.optimizer.schedule.epochs
    run_start = time.perf_counter()
    stop = StopRequest().install()
    for epoch in range(run.start.epoch, epochs):
        lr = run.optimizer.param_groups[0]["lr"]
        stats = _train_epoch(run, epoch, stop)
        row: dict[str, object] = {
            "epoch": epoch + 1, "train_loss": round(stats.loss, 6), "lr": lr,
            "epoch_time_s": round(stats.seconds, 2), "images_per_s": round(stats.images_per_s, 2),
        }  # fmt: skip
        is_last = epoch + 1 == epochs
        improved = False
        if (epoch + 1) % config.validation.interval == 0 or is_last:
            t0 = time.perf_counter()
            metrics = evaluate(run.model, run.loaders.val, run.device, tta=config.validation.tta,
                               amp_dtype=run.amp_dtype, num_classes=config.num_classes)  # fmt: skip
            row |= metrics_row(metrics) | {"val_time_s": round(time.perf_counter() - t0, 2)}
            improved = float(metrics["miou"]) > run.start.best_miou
            run.start.best_miou = max(run.start.best_miou, float(metrics["miou"]))
        if run.recorder is not None:
            run.recorder.record(row, run.checkpoint(epoch + 1, run.start.best_miou), improved)
            shown = f"val mIoU {row['val_miou']:.4f}" if "val_miou" in row else "no val"
            log(
                f"epoch {epoch + 1}/{epochs}  loss {stats.loss:.4f}  {shown}  lr {lr:.2e}  "
                f"{stats.images_per_s:.1f} img/s  {stats.seconds:.1f}s{'  *best*' if improved else ''}"
            )
            if epoch == run.start.epoch and not is_last:
                log(eta_line(stats.images_per_s, time.perf_counter() - run_start, epochs - epoch - 1,
                             config.validation.interval))  # fmt: skip
        distributed.barrier()
        if not is_last and stop():  # SIGTERM during validation or saving: last.pt is this epoch's
            run.stop(f"after epoch {epoch + 1}")
    stop.uninstall()
    if run.recorder is not None:
        run.recorder.close()
    return run.start.best_miou
