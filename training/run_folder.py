"""The run folder of one fold: created only once every input has been checked, and what each
finished epoch leaves in it (history.csv, best.pt / last.pt, progress.png, TensorBoard events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.schema import Config, save_config
from dataset.openeds import CLASS_NAMES
from models.checkpoint import save_checkpoint
from training.progress import History, plot_progress
from utils.atomic import remove_stale_temp_files
from utils.folders import make_output_dir

__all__ = ["create_run_folder", "metrics_row", "EpochRecorder"]


def create_run_folder(run_dir: Path, config: Config, comments: list[str]) -> None:
    """Create (or reuse) the folder, check it is writable, save the resolved config in it.

    Called after every input (data, folds, resume checkpoint) has been checked: a bad input
    leaves no empty run folder behind.
    """
    make_output_dir(run_dir, "run folder")
    save_config(config, run_dir / "config.yaml", comments=comments)
    remove_stale_temp_files(run_dir)


def metrics_row(metrics: dict[str, Any]) -> dict[str, float]:
    """The history.csv columns of one validation: mIoU, all-pixel mIoU, IoU per class."""
    row = {
        "val_miou": round(float(metrics["miou"]), 6),
        "val_miou_dataset": round(float(metrics["miou_dataset"]), 6),
    }
    for name, iou in zip(CLASS_NAMES, metrics["per_class_iou"], strict=False):
        row[f"iou_{name}"] = round(float(iou), 6)
    return row


class EpochRecorder:
    """Rank 0's record of each finished epoch: the history row, the checkpoints, the curves."""

    def __init__(self, run_dir: Path, history: History, title: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.history, self.title = run_dir, history, title
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def record(self, row: dict[str, Any], payload: dict[str, Any], improved: bool) -> None:
        self.history.append(row)
        if improved:
            save_checkpoint(payload, self.run_dir / "best.pt")
        save_checkpoint(payload, self.run_dir / "last.pt")
        plot_progress(self.history.rows, self.run_dir / "progress.png", title=self.title)
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
