"""The one inference engine: weighted ensemble of models x test-time-augmentation views.

Used by training-time validation (one model, hflip), predict_ensemble.py and
pseudo-labelling. Logits of every model and view are averaged with their weights, then
softmax/argmax, as in the recipe. Speed decisions, measured in bench/:
- the views of a batch that share a resolution go through the network as ONE batch
  (the recipe ran a separate forward pass per view, at batch 1);
- inference_mode, and autocast where the device supports it (fp16 on CUDA, bf16 on CPUs
  that have bf16 instructions when asked for);
- the model wrapper pads/normalises on the device, so loaders ship uint8 frames.
A member may already average views inside (an exported graph with `fused_tta`, e.g. hflip:
inference/onnx_model.py): it gets the frames once when its views are the run's, the run's
views when it has none (`fused_tta: none`), and any other mix is refused, so no view is
ever applied twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from config.ensemble import DEFAULT_TTA, FUSABLE_TTA, HFLIP_TTA, NO_TTA, SCALES_TTA, TTA_NAMES
from runtime.device import autocast_context
from utils.errors import InputError

__all__ = [
    "TTA_MODES",
    "DEFAULT_MIN_AREA",
    "View",
    "tta_views",
    "EnsemblePredictor",
    "check_fused_views",
    "drop_small_classes",
    "min_area_per_class",
    "small_classes",
]

# --min-area's default in predict_ensemble.py and segment.py alike: off. A fixed pixel count means
# a different share of the eye on every camera and resolution; predict_ensemble.py's 'auto' reads
# one from the members' training labels, and segment.py users give their own (README).
DEFAULT_MIN_AREA = 0


@dataclass(frozen=True)
class View:
    """A test-time view: optional horizontal flip, and a scale relative to the model's own."""

    hflip: bool = False
    scale: float = 1.0


# Each TTA mode's views; the names (and FUSABLE_TTA, DEFAULT_TTA) are config/ensemble.py's.
TTA_MODES: dict[str, tuple[View, ...]] = {
    NO_TTA: (View(),),
    HFLIP_TTA: (View(), View(hflip=True)),
    SCALES_TTA: tuple(View(flip, s) for s in (1.0, 0.75, 1.25) for flip in (False, True)),
}
assert tuple(TTA_MODES) == TTA_NAMES, "a TTA mode without views, or views without a name"


def tta_views(mode: str) -> tuple[View, ...]:
    if mode not in TTA_MODES:
        raise ValueError(f"unknown TTA mode {mode!r}; choose one of {sorted(TTA_MODES)}")
    return TTA_MODES[mode]


def check_fused_views(models: Iterable[nn.Module], tta: str) -> None:
    """Refuse a model that averages views inside (`fused_tta`) other than the run's: none twice."""
    for model in models:
        fused = getattr(model, "fused_tta", NO_TTA)
        if hasattr(model, "fused_tta") and any(view.scale != 1.0 for view in tta_views(tta)):
            raise InputError(
                f"an exported graph runs at the scale it was exported with: tta {tta} needs the checkpoints",
                getattr(model, "path", None),
            )
        if fused not in (NO_TTA, tta):
            again = tta if tta in FUSABLE_TTA else NO_TTA
            raise InputError(
                f"this graph already averages the {fused} views, and the run asks for tta {tta}: "
                f"run it with --tta {fused}, or export it again with --tta {again}",
                getattr(model, "path", None),
            )


class EnsemblePredictor:
    """Average the logits of weighted models over TTA views.

    Args:
        members: (model, weight) pairs; each model maps uint8 frames (B,1,H,W) to logits.
        tta: a key of TTA_MODES.
        device: where the models run (they are moved there and set to eval()).
        amp_dtype: autocast dtype (torch.float16 / torch.bfloat16) or None for fp32.
        min_area: per class, the fewest pixels a class may cover in a frame (see
            drop_small_classes); None or all zeros: off.
    """

    def __init__(
        self,
        members: Sequence[tuple[nn.Module, float]],
        tta: str = DEFAULT_TTA,
        device: torch.device | str = "cpu",
        amp_dtype: torch.dtype | None = None,
        min_area: Sequence[int] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one model")
        self.device = torch.device(device)
        self.members = [(model.to(self.device).eval(), float(weight)) for model, weight in members]
        self.views = tta_views(tta)
        check_fused_views([model for model, _ in self.members], tta)
        self.amp_dtype = amp_dtype
        self.min_area = None if min_area is None or not any(min_area) else tuple(int(a) for a in min_area)
        total = sum(weight for _, weight in self.members) * len(self.views)
        if total <= 0:
            raise ValueError("ensemble weights must sum to a positive number")
        self._norm = 1.0 / total

    def _model_logits(self, model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
        """Sum of the logits of all views for one model; same-scale views share one forward pass."""
        if getattr(model, "fused_tta", NO_TTA) != NO_TTA:  # the graph returns the mean over self.views
            return model(frames).float() * len(self.views)
        total = None
        base_scale = getattr(model, "scale", 1.0)
        for scale in dict.fromkeys(view.scale for view in self.views):
            flips = [view.hflip for view in self.views if view.scale == scale]
            batch = torch.cat([frames.flip(-1) if flip else frames for flip in flips])
            with autocast_context(self.device, self.amp_dtype):
                logits = model(batch, scale=base_scale * scale).float()
            for chunk, flip in zip(logits.chunk(len(flips)), flips, strict=True):
                chunk = chunk.flip(-1) if flip else chunk
                total = chunk if total is None else total + chunk
        return total

    @torch.inference_mode()
    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """Weighted mean logits (B, C, H, W), float32, for frames (B, 1, H, W) uint8."""
        frames = frames.to(self.device, non_blocking=True)
        mean = None
        for model, weight in self.members:
            logits = self._model_logits(model, frames) * weight
            mean = logits if mean is None else mean + logits
        return mean * self._norm

    @torch.inference_mode()
    def probabilities(self, frames: torch.Tensor) -> torch.Tensor:
        """Softmax of the weighted mean logits (B, C, H, W) float32 (a teacher's soft targets)."""
        return self.logits(frames).softmax(dim=1)

    @torch.inference_mode()
    def predict(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class map (B, H, W) uint8 and its softmax confidence (B, H, W) float32."""
        return self.decide(self.probabilities(frames))

    @torch.inference_mode()
    def decide(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class map and confidence from probabilities (min_area applied when set)."""
        if self.min_area is not None:
            probs = drop_small_classes(probs, self.min_area)
        confidence, labels = probs.max(dim=1)
        return labels.to(torch.uint8), confidence

    def predict_batches(
        self, batches: Iterable[dict[str, torch.Tensor]]
    ) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor]]:
        """Run over a DataLoader of {"image", "name"} batches; yields (names, labels, confidence) on CPU."""
        for batch in batches:
            labels, confidence = self.predict(batch["image"])
            yield list(batch["name"]), labels.cpu(), confidence.cpu()


def min_area_per_class(pixels: int, classes: int) -> tuple[int, ...]:
    """--min-area N as the engine's per-class minimum: N for every class but background (0)."""
    return (0,) + (int(pixels),) * (classes - 1)


def small_classes(probs: torch.Tensor, min_area: Sequence[int]) -> torch.Tensor:
    """(B, C) bool: the classes drop_small_classes takes out of each frame of probs (B, C, H, W)."""
    batch, classes = probs.shape[:2]
    if len(min_area) != classes:
        raise ValueError(f"min_area has {len(min_area)} values for {classes} classes")
    limit = torch.as_tensor(list(min_area), device=probs.device).view(1, classes)
    offsets = torch.arange(batch, device=probs.device).view(batch, 1, 1) * classes
    dropped = torch.zeros(batch, classes, dtype=torch.bool, device=probs.device)
    for _ in range(classes):
        kept = probs.masked_fill(dropped[:, :, None, None], 0.0) if dropped.any() else probs
        labels = kept.argmax(dim=1)
        counts = torch.bincount((labels + offsets).flatten(), minlength=batch * classes).view(batch, classes)
        small = (counts > 0) & (counts < limit)
        if not small.any():
            break
        dropped |= small
    return dropped


def drop_small_classes(probs: torch.Tensor, min_area: Sequence[int]) -> torch.Tensor:
    """Remove classes that cover fewer than min_area[c] pixels of a frame from that frame.

    probs: (B, C, H, W) softmax. A class present in a frame's argmax on fewer pixels than its
    minimum is taken out of that frame (its probability set to 0), so its pixels go to their
    next most likely class; repeated until no class is too small (at most C rounds). Aimed at
    the per-image metric's worst case: a closed eye whose prediction keeps a few pupil or iris
    pixels scores 0 for those classes. Written by hand: no library does this on probabilities.
    segment.py finds the classes (small_classes) in the models' frame and drops them at the
    input's size, so both scripts count the same pixels.
    """
    return probs.masked_fill(small_classes(probs, min_area)[:, :, None, None], 0.0)
