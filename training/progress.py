"""Run history: history.csv (one row per epoch), progress.png redrawn every epoch, TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; servers have no display
import matplotlib.pyplot as plt  # noqa: E402

from dataset.openeds import CLASS_NAMES  # noqa: E402
from utils.atomic import atomic_path

__all__ = ["History", "plot_progress"]


class History:
    """Epoch rows kept in memory and rewritten to history.csv atomically after each epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.is_file():
            with open(path, newline="") as handle:
                self.rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]

    def truncate(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint we resume from (a crash between the two writes)."""
        self.rows = [row for row in self.rows if int(row["epoch"]) <= epochs_done]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        fields = list(dict.fromkeys(key for r in self.rows for key in r))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_progress(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Four panels: train loss; val mIoU and per-class IoU; learning rate; epoch time."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ax.plot(*_series(rows, "train_loss"), "o-", label="train loss")
    ax.set_title("train loss")
    ax = axes[0, 1]
    ax.plot(*_series(rows, "val_miou"), "o-", color="black", lw=2, label="val mIoU")
    for name in CLASS_NAMES:
        ax.plot(*_series(rows, f"iou_{name}"), ".--", label=name)
    ax.set_title("validation IoU")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1, 0]
    ax.plot(*_series(rows, "lr"), "o-")
    ax.set_yscale("log")
    ax.set_title("learning rate")
    ax = axes[1, 1]
    ax.plot(*_series(rows, "epoch_time_s"), "o-")
    ax.set_title("epoch time (s)")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
