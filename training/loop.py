"""One epoch of training and one validation pass (the shared inference engine + metric)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from config.ensemble import DEFAULT_TTA
from config.schema import Distill
from dataset.openeds import IGNORE_INDEX
from evaluation.metrics import SegmentationMeter
from inference.engine import EnsemblePredictor
from runtime.device import autocast_context
from training.distill import distillation_loss, teacher_labels
from utils import distributed

__all__ = ["TrainingDiverged", "EpochStats", "train_one_epoch", "evaluate"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; training stops and the last good checkpoint stays."""


@dataclass
class EpochStats:
    loss: float
    images: int
    seconds: float
    stopped: bool = False  # a stop request ended the epoch before its last step
    steps: int = 0  # steps this call ran

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def _weighted_loss(
    criterion: nn.Module,
    logits: torch.Tensor,
    masks: torch.Tensor,
    pseudo: torch.Tensor | None,
    weight: float,
) -> torch.Tensor:
    """The loss; with pseudo-labelled samples in the batch weighted by `weight` against real ones."""
    if pseudo is None or weight == 1.0 or not pseudo.any() or pseudo.all():
        return criterion(logits, masks)
    real = criterion(logits[~pseudo], masks[~pseudo])
    fake = criterion(logits[pseudo], masks[pseudo])
    n_fake = pseudo.float().mean()
    return (1 - n_fake) * real + n_fake * weight * fake


def _distilled_loss(
    criterion: nn.Module,
    logits: torch.Tensor,
    masks: torch.Tensor,
    soft: torch.Tensor,
    taught: torch.Tensor,
    settings: Distill,
) -> torch.Tensor:
    """Label loss on labelled samples, KL towards the teacher on its frames, mixed by their share."""
    share = taught.float().mean()
    loss = logits.new_zeros(())
    if not taught.all():
        loss = loss + (1 - share) * criterion(logits[~taught], masks[~taught])
    if taught.any():
        term = settings.weight * distillation_loss(logits[taught], soft[taught], settings.temperature)
        if settings.label_weight:
            hard = teacher_labels(soft[taught], tuple(logits.shape[-2:]))
            term = term + settings.label_weight * criterion(logits[taught], hard)
        loss = loss + share * term
    return loss


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    *,
    epoch: int,
    epochs: int,
    amp_dtype: torch.dtype | None,
    clip: float | None,
    pseudo_weight: float = 1.0,
    distill: Distill | None = None,
    frozen_params: list[nn.Parameter] | None = None,
    stop: Callable[[], bool] | None = None,
    carry: tuple[float, int, float] = (0.0, 0, 0.0),
) -> EpochStats:
    """Train for one pass over `loader`; the lr scheduler steps every iteration.

    stop: asked after every step; True ends the epoch there (stats.stopped). carry: (loss sum,
    images, seconds) of the steps an interrupted run already did in this epoch. distill: the
    weights of the teacher's term, for batches that carry teacher frames ("soft", "distill").
    """
    model.train()
    total_loss, seen, start = carry[0], carry[1], time.perf_counter() - carry[2]
    stopped, step = False, 0
    steps = len(loader)  # type: ignore[arg-type]
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{epochs}",
        leave=False,
        disable=not distributed.is_main(),
        unit="batch",
    )
    for step, batch in enumerate(bar, start=1):
        frames = batch["image"].to(device, non_blocking=True)
        masks = batch["mask"].to(device, non_blocking=True)
        pseudo = batch.get("pseudo")
        pseudo = pseudo.to(device) if pseudo is not None else None
        with autocast_context(device, amp_dtype):
            logits = model(frames, resize_back=False)
        if logits.shape[-2:] != masks.shape[-2:]:  # reduced input scale: nearest keeps 255 = ignore
            masks = F.interpolate(masks[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        if "distill" in batch:
            soft, taught = batch["soft"].to(device, non_blocking=True), batch["distill"].to(device)
            loss = _distilled_loss(criterion, logits.float(), masks, soft, taught, distill or Distill())
        else:
            loss = _weighted_loss(criterion, logits.float(), masks, pseudo, pseudo_weight)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {epoch + 1}, iteration {seen // len(frames) + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if frozen_params:  # DDP path of encoder freezing: drop the grads instead of not computing them
            for param in frozen_params:
                param.grad = None
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(frames)
        seen += len(frames)
        elapsed = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{total_loss / seen:.4f}",
            lr=f"{optimizer.param_groups[0]['lr']:.2e}",
            img_s=f"{seen / elapsed:.1f}",
        )
        if stop is not None and step < steps and stop():
            stopped = True
            break
    bar.close()
    stats = torch.tensor([total_loss, float(seen)], dtype=torch.float64)
    if distributed.world_size() > 1:
        stats = distributed.all_gather_cat(stats[None]).sum(0)
    loss_sum, count = stats.tolist()
    return EpochStats(
        loss=loss_sum / max(count, 1) if count else math.nan, images=int(count),
        seconds=time.perf_counter() - start, stopped=stopped, steps=step if steps else 0,
    )  # fmt: skip


def evaluate(
    model: nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    *,
    tta: str = DEFAULT_TTA,
    amp_dtype: torch.dtype | None = None,
    num_classes: int = 4,
) -> dict[str, object]:
    """Validation through the shared engine and metric; per-image results gathered from all ranks."""
    predictor = EnsemblePredictor([(model, 1.0)], tta=tta, device=device, amp_dtype=amp_dtype)
    meter = SegmentationMeter(num_classes=num_classes, ignore_index=IGNORE_INDEX)
    for batch in tqdm(loader, desc="validate", leave=False, disable=not distributed.is_main(), unit="batch"):
        labels, _ = predictor.predict(batch["image"])
        meter.update(labels.cpu(), batch["mask"], names=list(batch["name"]))
    if distributed.world_size() > 1:
        meter = SegmentationMeter.from_state(
            distributed.all_gather_cat(meter.state()), num_classes=num_classes
        )
    return meter.compute()
