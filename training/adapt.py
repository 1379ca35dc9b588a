"""Adaptation without labels: a trained model moved toward a user's own unlabelled frames.

    init = load_init(Path("weights/default.pt"))
    frames = read_frames("eye.mp4", max_frames=300)
    report = run_adaptation(init, frames, AdaptSettings(), torch.device("cpu"), Path("runs/adapt"))

Two steps, the cheap one first:

1. BatchNorm statistics re-estimated on the new camera's frames (torch.optim.swa_utils.update_bn:
   forward passes in train mode, momentum None = a cumulative average, no gradient; the frames
   shuffled across batches), then blended with the training's (`bn_blend`): replaced outright,
   they made every model we measured worse, because one camera's frames differ from the mixed
   batches of pretraining in content (how much of the frame is eye) as well as in look.
2. The recipe's pseudo-labelling, for `rounds` rounds: the current model's class map through the
   one engine (inference.engine.EnsemblePredictor, hflip TTA averaged as in prediction) becomes
   the label where its softmax confidence reaches the threshold, 255 (ignored) elsewhere. The
   threshold is `threshold`, lowered per class where needed so each class keeps `class_keep` of
   its pixels (class-balanced self-training: one threshold drops the pupil's and iris's rims, and
   the regions shrink round after round). The model is fine-tuned on those labels plus `replay`
   freshly rendered frames of the cameras it was trained on, with exact labels (optionally with
   their tones matched to the new frames, `match`), which hold it to what it knew while its own
   guesses pull it toward the new camera (fresh optimizer of the config's type at a small
   constant lr, `epochs` epochs, the config's loss and augmentations, BatchNorm layers held in
   eval mode with step 1's statistics); the next round labels with that model.

Frames (inference.frames.open_frames: a video, a folder, an image; any size) are fitted into the
models' 640 x 400 as segment.py fits them (inference.segmenter.place_in_model_frame), at most
`max_frames` of them, evenly spaced through the input. The canvas padding around a frame of
another aspect is ignored (255) in the pseudo-labels rather than labelled background: segment.py
crops it off, so nothing the model says there is ever used; its flat black would be thousands of
trivially easy "background" pixels per frame that outweigh the eye in the loss and teach that a
dark flat patch is background, which is what a pupil looks like in IR. The BatchNorm step does
see the padding: the model meets the same canvas at inference.

The fine-tuning reuses training.loop.train_one_epoch, training.augment and training.criterion
rather than train.py's fold machinery, which reads labelled OpenEDS-layout folders and fold
lists, validates on labels and keeps best/last checkpoints with resume: adaptation has no labels
to validate on, holds its few hundred frames in memory and relabels them between rounds. Having
no labels, it cannot tell whether it helped: adapt.json says what changed, not whether it is
better; check overlays (segment.py --overlay) before trusting an adapted model.

RUN/adapted.pt (models/checkpoint.py's format, weights fp32) and RUN/adapt.json are rewritten
atomically after the BatchNorm step and after every round, so both always describe the same
finished step; adapt.json's `finished` turns true at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from config.ensemble import DEFAULT_TTA, TTA_NAMES
from config.schema import Config, load_config
from dataset.openeds import CLASS_NAMES, IGNORE_INDEX
from dataset.synthetic.stream import RenderedFrames
from dataset.synthetic.style import REAL_STYLES
from inference.engine import EnsemblePredictor
from inference.frames import BadFrame, FrameSource, open_frames
from inference.segmenter import place_in_model_frame
from models.checkpoint import model_from_checkpoint, model_state, save_checkpoint
from models.zoo import SegmentationModel
from runtime.device import amp_settings, resolve_runtime
from training.augment import AugmentedDataset, build_train_transform
from training.criterion import build_criterion
from training.data import EpochSampler
from training.loop import train_one_epoch
from training.optim import build_optimizer
from training.state import derive_seed, seed_everything
from utils.atomic import write_text_atomic
from utils.errors import InputError

__all__ = [
    "OUTPUT_NAMES",
    "AdaptSettings",
    "Init",
    "AdaptFrames",
    "Labelling",
    "check_out_dir",
    "load_init",
    "read_frames",
    "reestimate_batchnorm",
    "label_frames",
    "pseudo_targets",
    "round_frames",
    "class_thresholds",
    "labelling_stats",
    "fine_tune",
    "run_adaptation",
]

OUTPUT_NAMES = ("adapted.pt", "adapt.json")
MATCHES = ("none", "histogram", "fda")


@dataclass(frozen=True)
class AdaptSettings:
    """What adapt.py's flags set; checked on construction (a one-line InputError)."""

    rounds: int = 3
    threshold: float = 0.9  # the recipe's pseudo-label confidence (inference/pseudo.py's default too)
    epochs: int = 2  # per round
    max_frames: int = 300
    lr: float = 1e-4
    seed: int = 0
    tta: str = DEFAULT_TTA
    # The defaults below were chosen by measurement (BENCHMARKS.md "Real eyes: your own camera").
    bn_blend: float = 0.5  # the new camera's share of the BatchNorm statistics (1: replace them)
    class_keep: float = 0.7  # each class keeps at least this share of its pixels as labels (0: off)
    replay: int = 150  # rendered frames (exact labels) mixed into each round's fine-tuning
    match: str = "none"  # the rendered frames' tones matched to the new frames': none, histogram, fda

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.epochs < 1 or self.max_frames < 1:
            raise InputError("--rounds must be >= 0, --epochs and --max-frames >= 1")
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"--threshold is a softmax probability in (0, 1], got {self.threshold}")
        if not self.lr > 0:
            raise InputError(f"--lr must be > 0, got {self.lr}")
        if not 0.0 <= self.bn_blend <= 1.0 or not 0.0 <= self.class_keep <= 1.0:
            raise InputError("--bn-blend and --class-keep are shares in [0, 1]")
        if self.replay < 0:
            raise InputError(f"--replay must be >= 0, got {self.replay}")
        if self.match not in MATCHES:
            raise InputError(f"--match must be one of {', '.join(MATCHES)}, got {self.match!r}")
        if self.tta not in TTA_NAMES:
            raise InputError(f"tta must be one of {', '.join(TTA_NAMES)}, got {self.tta!r}")


@dataclass
class Init:
    """The model adaptation starts from, as loaded."""

    path: Path
    model: SegmentationModel
    config: Config
    trained_on: list[str] | None  # the label keys it learned from (the leakage rule); None: not said


@dataclass
class AdaptFrames:
    """The frames adapted on, each fitted into the models' 640 x 400 canvas."""

    images: np.ndarray  # (N, 400, 640) uint8
    inside: np.ndarray  # (N, 400, 640) bool: the frame's own pixels (False: the canvas padding)
    names: list[str]
    source: str
    kind: str  # image, folder, video
    available: int  # frames in the input (the N were picked evenly among them)


@dataclass
class Labelling:
    """One pass of the engine over the frames."""

    classes: np.ndarray  # (N, 400, 640) uint8 argmax
    confident: np.ndarray  # (N, 400, 640) bool: softmax max >= its class's threshold
    thresholds: tuple[float, ...] = ()  # per class, as applied (class_thresholds)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a file, or a folder that holds anything, unless `overwrite` (which replaces adapt's
    own outputs only); checked before the long steps, and nothing is written here."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("--out is a file, not a folder", out_dir)
    held = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
    if held and not overwrite:
        raise InputError(
            f"holds another run ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}); "
            "pass --overwrite to replace adapted.pt and adapt.json there, or choose another folder",
            out_dir,
        )


def load_init(path: Path, config_file: Path | None = None) -> Init:
    """A checkpoint of ours, a weights-only release file (fp16 weights are cast to the fp32 model)
    or, with `config_file`, the original recipe's; anything else is a one-line InputError."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        raise InputError(
            "an exported graph cannot be trained: give the .pt checkpoint it was exported from", path
        )
    if suffix in (".yaml", ".yml", ".json"):
        raise InputError("adapt takes one checkpoint (.pt), not an ensemble or config file", path)
    config = load_config(config_file) if config_file is not None else None
    model, config, payload = model_from_checkpoint(path, config)
    trained_on = payload.get("trained_on")
    if trained_on is not None and not (
        isinstance(trained_on, list) and all(isinstance(k, str) for k in trained_on)
    ):
        raise InputError("'trained_on' must be a list of label keys like 'S_0/3'", path)
    return Init(path, model, config, trained_on)


def _evenly(total: int, wanted: int) -> list[int]:
    """`wanted` indices spread evenly over range(total), first and last included; all if fewer."""
    if total <= wanted:
        return list(range(total))
    return np.linspace(0, total - 1, wanted).round().astype(int).tolist()


def _placed(
    source: FrameSource, picks: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray], list[str], int]:
    """The frames of `source` numbered `picks`, on the canvas, with their inside masks and names,
    and how many frames were read (the frames of a video up to the last pick, or to its end)."""
    wanted, images, inside, names, read = set(picks), [], [], [], 0
    stream = source.frames()
    for item in stream:
        if isinstance(item, BadFrame):
            raise InputError(item.error)
        read = item.index + 1
        if item.index not in wanted:
            continue
        canvas, box = place_in_model_frame(item.image)
        frame = np.zeros(canvas.shape, bool)
        frame[box.y : box.y + box.height, box.x : box.x + box.width] = True
        images.append(canvas)
        inside.append(frame)
        names.append(item.name)
        if len(names) == len(wanted):
            break
    stream.close()  # releases a video before its end
    return images, inside, names, read


def read_frames(path: str | Path, max_frames: int, exclude: Path | None = None) -> AdaptFrames:
    """At most `max_frames` frames of an image, folder or video, evenly spaced, each placed on the canvas.

    A camera is refused (adaptation needs frames it can read again: record a video); an
    unreadable image of a folder, or a video without a frame, is a one-line InputError naming it,
    before anything is written. A video whose header announces no frame count, or more frames
    than it holds (damaged, or a container that counts badly), is read through once to count them.
    """
    text = str(path)
    if not Path(text).exists() and text.isdigit():
        raise InputError(
            f"--input {text}: adapt reads a video file, a folder or an image, not a camera (record a video first)"
        )
    source = open_frames(text, exclude)
    if source.kind == "video" and source.total is None:
        source.total = sum(1 for _ in open_frames(text).frames())
    available = source.total or 0
    if available == 0:
        raise InputError("no frames in this video (empty or damaged?)", source.label)
    picks = _evenly(available, max_frames)
    if source.kind in ("folder", "image"):
        source.files = [source.files[i] for i in picks]
        picks = list(range(len(picks)))
    images, inside, names, read = _placed(source, picks)
    if len(names) < len(picks):  # the video ended early: pick again among the frames it holds
        if read == 0:
            raise InputError("no frame of this video could be read (damaged?)", source.label)
        available = read
        images, inside, names, _ = _placed(open_frames(text, exclude), _evenly(read, max_frames))
    return AdaptFrames(np.stack(images), np.stack(inside), names, source.label, source.kind, available)


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def reestimate_batchnorm(
    model: nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    blend: float = 1.0,
) -> dict[str, Any]:
    """Every BatchNorm layer's running mean and variance recomputed on `images` (module docstring).

    The frames go in shuffled: the variance is averaged over batches, so a batch of neighbouring
    frames of a video (nearly alike) would leave out the variation along the video.
    `blend` < 1 keeps part of the old statistics: each channel's mean and variance become those of
    a mixture, `blend` of the new frames and 1 - `blend` of what the model was trained on (the
    variance with its between-means term), a prior on the training statistics as in Schneider et
    al., "Improving robustness against common corruptions by covariate shift adaptation" (2020).
    Returns {"layers", "mean_shift", "var_ratio"}: how far the new means moved, in the old
    standard deviations, and the median ratio new/old variance, over every channel of every layer.
    """
    layers = _batchnorms(model)
    if not layers:  # GroupNorm networks (FPN's head...): nothing to re-estimate
        return {"layers": 0, "mean_shift": 0.0, "var_ratio": 1.0}
    before = [(m.running_mean.clone(), m.running_var.clone(), m.eps) for m in layers]
    order = np.random.default_rng(seed).permutation(len(images))
    batches = [
        torch.from_numpy(images[order[i : i + batch_size]])[:, None]
        for i in range(0, len(images), batch_size)
    ]
    update_bn(batches, model, device)
    shifts, ratios = [], []
    for module, (mean, var, eps) in zip(layers, before, strict=True):
        if blend < 1.0:
            new_mean, new_var = module.running_mean.clone(), module.running_var.clone()
            module.running_mean.copy_(blend * new_mean + (1 - blend) * mean)
            module.running_var.copy_(
                blend * new_var + (1 - blend) * var + blend * (1 - blend) * (new_mean - mean) ** 2
            )
        shifts.append(((module.running_mean - mean).abs() / (var + eps).sqrt()).cpu())
        ratios.append(((module.running_var + eps) / (var + eps)).cpu())
    return {
        "layers": len(layers),
        "mean_shift": round(float(torch.cat(shifts).mean()), 4),
        "var_ratio": round(float(torch.cat(ratios).median()), 4),
    }


def label_frames(
    model: nn.Module,
    images: np.ndarray,
    threshold: float,
    tta: str,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int,
    inside: np.ndarray | None = None,
    class_keep: float = 0.0,
    num_classes: int = len(CLASS_NAMES),
) -> Labelling:
    """The model's class map and confident pixels on every canvas, through the one engine;
    the thresholds per class from class_thresholds (over the `inside` pixels)."""
    predictor = EnsemblePredictor([(model, 1.0)], tta=tta, device=device, amp_dtype=amp_dtype)
    classes, confidences = [], []
    for start in range(0, len(images), batch_size):
        labels, confidence = predictor.predict(torch.from_numpy(images[start : start + batch_size])[:, None])
        classes.append(labels.cpu().numpy())
        confidences.append(confidence.cpu().numpy().astype(np.float16))
    classes_, confidence_ = np.concatenate(classes), np.concatenate(confidences)
    inside = np.ones(classes_.shape, bool) if inside is None else inside
    thresholds = class_thresholds(classes_, confidence_, inside, threshold, class_keep, num_classes)
    confident = confidence_ >= np.asarray(thresholds, np.float16)[classes_]
    return Labelling(classes_, confident, tuple(round(t, 4) for t in thresholds))


def class_thresholds(
    classes: np.ndarray,
    confidence: np.ndarray,
    inside: np.ndarray,
    threshold: float,
    keep: float,
    num_classes: int,
) -> list[float]:
    """Per class: `threshold`, lowered where that keeps fewer than `keep` of the class's pixels
    (inside the frames) to the confidence that keeps exactly that share. Class-balanced
    self-training (Zou et al., "Unsupervised domain adaptation for semantic segmentation via
    class-balanced self-training", ECCV 2018): one global threshold keeps the easy, large
    classes and drops the pupil's and iris's uncertain rims, and training on what is left shrinks
    them round after round. keep 0: the global threshold for every class."""
    out = []
    for c in range(num_classes):
        values = confidence[(classes == c) & inside]
        if keep <= 0 or values.size == 0:
            out.append(float(threshold))
        else:
            out.append(
                min(float(threshold), float(np.quantile(values[:: max(1, values.size // 200_000)], 1 - keep)))
            )
    return out


def pseudo_targets(labelling: Labelling, inside: np.ndarray) -> np.ndarray:
    """(N, 400, 640) uint8 labels: the class where confident inside the frame, IGNORE_INDEX elsewhere."""
    return np.where(labelling.confident & inside, labelling.classes, np.uint8(IGNORE_INDEX)).astype(np.uint8)


def _shares(classes: np.ndarray, num_classes: int) -> dict[str, float]:
    names = (
        CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class_{c}" for c in range(num_classes))
    )
    counts = np.bincount(classes, minlength=num_classes)[:num_classes]
    return {
        name: round(float(n) / max(int(counts.sum()), 1), 4) for name, n in zip(names, counts, strict=True)
    }


def labelling_stats(
    labelling: Labelling, inside: np.ndarray, previous: Labelling | None, num_classes: int
) -> dict[str, Any]:
    """Over the frames' own pixels: the confident share, the share whose class is unchanged since
    `previous` (None for the first pass), the class shares of the class map and of the labels."""
    confident = labelling.confident & inside
    return {
        "confident_share": round(float(confident.sum()) / max(int(inside.sum()), 1), 4),
        "agreement": None
        if previous is None
        else round(float((labelling.classes == previous.classes)[inside].mean()), 4),
        "class_shares": _shares(labelling.classes[inside], num_classes),
        "label_class_shares": _shares(labelling.classes[confident], num_classes),
        "thresholds": list(labelling.thresholds),
    }


class _PseudoLabelled(Dataset):
    """Canvases and their pseudo-labels as the samples AugmentedDataset takes."""

    def __init__(self, images: np.ndarray, targets: np.ndarray) -> None:
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "image": torch.from_numpy(self.images[index])[None],
            "mask": torch.from_numpy(self.targets[index].astype(np.int64)),
            "name": f"adapt_{index}",
        }


class _LookAlike(Dataset):
    """Rendered frames with their tones moved toward the new camera's frames (labels unchanged):
    albumentations' HistogramMatching or FDA (Fourier domain adaptation: the low frequencies of
    the spectrum taken from a new frame), a random new frame as the reference, drawn per item from
    (seed, index)."""

    def __init__(self, rendered: Dataset, references: list[np.ndarray], how: str, seed: int) -> None:
        kind = A.HistogramMatching if how == "histogram" else A.FDA
        self.rendered, self.seed, self.references = rendered, seed, references
        self.transform = kind(metadata_key="references", p=1.0)

    def __len__(self) -> int:
        return len(self.rendered)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.rendered[index])
        self.transform.set_random_seed(derive_seed(self.seed, index))
        image = self.transform(image=item["image"][0].numpy(), references=self.references)["image"]
        item["image"] = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8))[None]
        return item


def round_frames(
    images: np.ndarray,
    targets: np.ndarray,
    replay: int,
    seed: int,
    match: str = "none",
    inside: np.ndarray | None = None,
) -> Dataset:
    """A round's training frames: the pseudo-labelled canvases, then `replay` freshly rendered
    frames of the cameras pretraining knew (REAL_STYLES), their labels exact: they hold the model
    to what it knew while the pseudo-labels, which are its own guesses, pull it toward the new
    camera (without them it drifts toward whatever it already said, confidently). `match`
    (histogram, fda) moves the rendered frames' tones toward the new frames' (_LookAlike), each
    new frame cropped to its own pixels (`inside`: no canvas padding in the reference)."""
    frames: Dataset = _PseudoLabelled(images, targets)
    if replay:
        rendered: Dataset = RenderedFrames(list(REAL_STYLES), replay, seed)
        if match != "none":
            boxes = np.ones(images.shape, bool) if inside is None else inside
            references = [
                image[np.ix_(box.any(axis=1), box.any(axis=0))]
                for image, box in zip(images, boxes, strict=True)
            ]
            rendered = _LookAlike(rendered, references, match, seed)
        frames = ConcatDataset([frames, rendered])
    return frames


def fine_tune(
    model: nn.Module,
    config: Config,
    images: np.ndarray,
    targets: np.ndarray,
    settings: AdaptSettings,
    round_index: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    use_scaler: bool,
    inside: np.ndarray | None = None,
) -> list[float]:
    """`settings.epochs` epochs on the pseudo-labels through training.loop; each epoch's mean loss.

    A fresh optimizer every round (the config's type, `settings.lr`, constant); the config's
    loss, augmentations, batch size and gradient clipping. Augmentations and the order of the
    frames are drawn from (seed, round, epoch, frame), so a rerun is the same run. BatchNorm layers
    stay in eval mode: they normalise with the statistics of the BatchNorm step, not with those of
    a batch of a few frames of one person, which are nothing like the mixed batches the model
    learned with, and which train mode would also fold into the running statistics.
    """
    seed = derive_seed(settings.seed, round_index)
    frames = round_frames(images, targets, settings.replay, seed, settings.match, inside)
    dataset = AugmentedDataset(frames, build_train_transform(config.input), seed, config.in_channels)
    sampler = EpochSampler(len(frames), seed=seed)
    loader = DataLoader(dataset, batch_size=config.optimizer.batch_size, sampler=sampler, num_workers=0)
    optimizer = build_optimizer(model, config.optimizer.model_copy(update={"learning_rate": settings.lr}))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    criterion = build_criterion(config)
    layers = _batchnorms(model)

    def batchnorm_in_eval_mode(*_: object) -> None:  # train_one_epoch sets train mode once per epoch
        for layer in layers:
            layer.eval()

    hold = model.register_forward_pre_hook(batchnorm_in_eval_mode)
    losses = []
    try:
        for epoch in range(settings.epochs):
            sampler.set_epoch(epoch)
            stats = train_one_epoch(
                model, criterion, optimizer, scheduler, scaler, loader, device,
                epoch=epoch, epochs=settings.epochs, amp_dtype=amp_dtype, clip=config.optimizer.grad_clip,
            )  # fmt: skip
            losses.append(round(stats.loss, 6))
    finally:
        hold.remove()
    return losses


def _checkpoint(init: Init, model: nn.Module, summary: dict[str, Any], epochs_done: int) -> dict[str, Any]:
    """adapted.pt: models/checkpoint.py's format. best_miou 0.0: no labels, nothing was validated;
    trained_on is the init's (pseudo-labels of a user's frames are no label key of a dataset)."""
    payload = {
        "model": {key: tensor.detach().cpu() for key, tensor in model_state(model).items()},
        "config": init.config.model_dump(mode="json"),
        "epoch": epochs_done,
        "best_miou": 0.0,
        "init": {"path": str(init.path), "trained_on": init.trained_on},
        "adapted": summary,
    }
    if init.trained_on is not None:
        payload["trained_on"] = init.trained_on
    return payload


def _line(name: str, stats: dict[str, Any], extra: str = "") -> str:
    agreement = "" if stats["agreement"] is None else f"  agreement {stats['agreement']:.3f}"
    shares = "/".join(f"{v:.3f}" for v in stats["class_shares"].values())
    return f"{name:<11} confident {stats['confident_share']:.3f}{agreement}  classes {shares}{extra}  ({stats['seconds']:.1f} s)"


def run_adaptation(
    init: Init,
    frames: AdaptFrames,
    settings: AdaptSettings,
    device: torch.device,
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The BatchNorm step, then `settings.rounds` pseudo-label rounds (module docstring); writes
    out_dir/adapted.pt and adapt.json after each; returns adapt.json's content."""
    for name in OUTPUT_NAMES:  # an earlier run's (check_out_dir allowed them: --overwrite)
        (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(settings.seed)
    config, runtime = resolve_runtime(init.config, device)
    amp_dtype, scaled = amp_settings(config, device)
    model = init.model.to(device)
    if config.channels_last:
        model.to_channels_last()
    batch = config.validation.batch_size
    classes = config.num_classes
    report: dict[str, Any] = {
        "init": str(init.path), "input": frames.source, "kind": frames.kind, "frames": len(frames.names),
        "available_frames": frames.available, "frame_names": frames.names, "device": str(device),
        "runtime": runtime, "settings": asdict(settings), "padding": "ignored (255) in the pseudo-labels",
        "before": None, "batchnorm": None, "rounds": [], "finished": False,
    }  # fmt: skip
    picked = f"{len(frames.names)} of {frames.available} frames"
    log(f"{frames.kind} {frames.source}: {picked}, on {device}; {runtime}")

    def label() -> Labelling:
        return label_frames(
            model, frames.images, settings.threshold, settings.tta, device, amp_dtype, batch,
            frames.inside, settings.class_keep, classes,
        )  # fmt: skip

    def record(step: dict[str, Any], began: float) -> dict[str, Any]:
        return step | {"seconds": round(time.perf_counter() - began, 2)}

    def save(epochs_done: int) -> None:
        summary = {key: report[key] for key in ("input", "frames", "settings")}
        summary["rounds_done"] = len(report["rounds"])
        save_checkpoint(_checkpoint(init, model, summary, epochs_done), out_dir / "adapted.pt")
        write_text_atomic(out_dir / "adapt.json", json.dumps(report, indent=1) + "\n")

    began = time.perf_counter()
    previous = label()
    report["before"] = record(labelling_stats(previous, frames.inside, None, classes), began)
    log(_line("before", report["before"]))

    began = time.perf_counter()
    moved = reestimate_batchnorm(model, frames.images, batch, device, settings.seed, settings.bn_blend)
    labelling = label()
    report["batchnorm"] = record(labelling_stats(labelling, frames.inside, previous, classes) | moved, began)
    shift = f"  ({moved['layers']} layers, mean shift {moved['mean_shift']:.3f} sd)"
    log(_line("batchnorm", report["batchnorm"], shift))
    save(0)

    for round_index in range(1, settings.rounds + 1):
        began = time.perf_counter()
        targets = pseudo_targets(labelling, frames.inside)
        losses = fine_tune(
            model, config, frames.images, targets, settings, round_index, device, amp_dtype, scaled,
            frames.inside,
        )  # fmt: skip
        previous, labelling = labelling, label()
        stats = labelling_stats(labelling, frames.inside, previous, classes)
        report["rounds"].append(record({"round": round_index, "losses": losses} | stats, began))
        log(_line(f"round {round_index}/{settings.rounds}", report["rounds"][-1], f"  loss {losses[-1]:.4f}"))
        save(round_index * settings.epochs)
    report["finished"] = True
    save(settings.rounds * settings.epochs)
    return report
