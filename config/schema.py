"""Experiment configuration: file (YAML or JSON) -> validated schema -> `--set` overrides.

The schema keeps the original recipe's key names (configs/seed-efficientnet-b7.json loads
unchanged and means what it meant) and adds the keys this repo needs. Validation is done by
pydantic with `extra="forbid"`, so an unknown key or a wrong type is an error that names the
key; `load_config` turns it into a one-line `InputError` (config/reader.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.ensemble import DEFAULT_TTA, FUSABLE_TTA
from config.reader import read_mapping, validate
from utils.atomic import write_text_atomic
from utils.errors import InputError

__all__ = [
    "Config",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "save_config",
    "config_name",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScheduleParams(_Strict):
    # step: [[epoch, lr], ...] absolute learning rates from that epoch on (the recipe's format)
    steps: list[tuple[int, float]] = Field(default_factory=list)
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    power: float = 0.9


class Schedule(_Strict):
    type: Literal["step", "cosine", "poly", "constant"] = "constant"
    mode: Literal["epoch", "step"] = "epoch"
    epochs: int = Field(10, ge=1)
    params: ScheduleParams = Field(default_factory=ScheduleParams)


class Optimizer(_Strict):
    batch_size: int = Field(6, ge=1)
    type: Literal["AdamW", "Adam", "SGD"] = "AdamW"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    momentum: float = 0.9
    # Max gradient norm; null = no clipping. The recipe clipped at 1 (hard-coded in its train.py).
    grad_clip: float | None = Field(1.0, gt=0)
    # The recipe's key: its train.py never read it (it clipped at 1). Accepted, not applied.
    clip: float | None = None
    # The recipe trains the decoder alone for the first epoch, then everything.
    freeze_encoder_epochs: int = Field(1, ge=0)
    schedule: Schedule = Field(default_factory=Schedule)


class Normalize(_Strict):
    mean: list[float] = Field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = Field(default_factory=lambda: [0.229, 0.224, 0.225])


class Augmentation(_Strict):
    """One albumentations transform by name, with its probability and parameters.

    `transforms` holds the children of a composition (OneOf, SomeOf, Sequential).
    """

    name: str
    p: float = Field(0.5, ge=0, le=1)
    params: dict[str, Any] = Field(default_factory=dict)
    transforms: list[Augmentation] = Field(default_factory=list)


def _recipe_augmentations() -> list[Augmentation]:
    """The recipe's train transforms (its create_train_transforms), albumentations defaults."""
    return [
        Augmentation(name="HorizontalFlip", p=0.5),
        Augmentation(name="ImageCompression", p=0.1),
        Augmentation(name="RandomBrightnessContrast", p=0.4),
        Augmentation(name="RandomGamma", p=0.4),
        Augmentation(
            name="OneOf",
            p=0.2,
            transforms=[Augmentation(name="RGBShift"), Augmentation(name="HueSaturationValue")],
        ),
    ]


class Input(_Strict):
    # Random training crop [height, width] of the (unpadded) frame; null = whole frame (the recipe).
    train_crop: tuple[int, int] | None = None
    # The recipe's keys: its crop was commented out of its transforms. Accepted, not applied.
    crop_height: int | None = None
    crop_width: int | None = None
    # Train and predict at this fraction of the resolution; logits are resized back to full size.
    scale: float = Field(1.0, gt=0, le=1)
    normalize: Normalize = Field(default_factory=Normalize)
    augmentations: list[Augmentation] = Field(default_factory=_recipe_augmentations)


class LossWeights(_Strict):
    dice: float = 0.0
    focal: float = 0.0
    bce: float = 0.0
    ce: float = 0.0
    lovasz: float = 0.0


class LossParams(_Strict):
    weights: LossWeights = Field(default_factory=lambda: LossWeights(dice=1, focal=1, bce=1))
    ohpm: bool = False
    ohpm_pixels: int = 131072
    per_image: bool = False


class MaskLoss(_Strict):
    type: str = "ComboLoss"
    params: LossParams = Field(default_factory=LossParams)


class Validation(_Strict):
    interval: int = Field(1, ge=1)  # epochs between validations (and always the last epoch)
    batch_size: int = Field(8, ge=1)
    tta: Literal[FUSABLE_TTA] = DEFAULT_TTA  # Literal of a tuple: each name


class Render(_Strict):
    """Training frames rendered afresh every epoch (dataset/synthetic/stream.py), beside the fold's labels."""

    # New frames per epoch; 0: off.
    frames_per_epoch: int = Field(0, ge=0)
    # Renderer styles (dataset/synthetic/style.py), taken in turn: classic, headset, closeup, remote; real = the last three.
    styles: list[str] = Field(default_factory=lambda: ["real"])


class Data(_Strict):
    workers: int = Field(2, ge=0)
    # Keep decoded frames in memory: PNG decoding dominates small-model epochs on a CPU.
    cache: bool = True
    render: Render = Field(default_factory=Render)


class Pseudo(_Strict):
    # Share of each batch drawn from pseudo-labelled frames when --pseudo-dir is given.
    share: float = Field(0.5, ge=0, lt=1)
    # Loss weight of pseudo-labelled samples relative to real labels.
    weight: float = Field(1.0, ge=0)


class Distill(_Strict):
    """Distillation from a teacher's cached soft targets (train.py --teacher)."""

    # Share of each epoch drawn from the teacher's (unlabeled) frames.
    share: float = Field(0.5, ge=0, lt=1)
    # Weight of the distillation term (KL at `temperature`, times temperature**2) against the label loss.
    weight: float = Field(1.0, ge=0)
    # Softmax temperature of both teacher and student in the KL term; 1 = the teacher's probabilities.
    temperature: float = Field(1.0, gt=0)
    # Weight of the label loss (mask_loss) on the teacher's argmax of its frames, added to the KL
    # term: the KL weighs every pixel alike, so small classes (the pupil) barely count in it.
    label_weight: float = Field(0.0, ge=0)


class Config(_Strict):
    models_zoo: Literal["qubvel", "smp"] = "qubvel"  # the recipe's name for segmentation-models-pytorch
    network: str = "unet"
    encoder: str = "efficientnet-b7"
    # Extra keyword arguments of the smp architecture, e.g. decoder_channels: [64, 32, 16, 16, 8].
    network_params: dict[str, Any] = Field(default_factory=dict)
    # A name smp knows for the encoder (imagenet, the recipe's: smp.Unet's default), read from the
    # Hugging Face cache or downloaded there; a local .pth/.pt/.bin/.safetensors file; null = random.
    encoder_weights: str | None = "imagenet"
    in_channels: Literal[1, 3] = 3
    num_classes: int = Field(4, ge=2)
    fp16: bool = False  # mixed precision (float16 + GradScaler on CUDA)
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    # bf16 autocast on the CPU. auto: only where the CPU has native bf16 matrix units (AMX);
    # elsewhere bf16 runs many times slower than fp32 (runtime/hardware.py, BENCHMARKS.md).
    cpu_bf16: bool | Literal["auto"] = "auto"
    # NHWC weights and inputs. auto: on for CUDA and x86 CPUs, where it measured faster.
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    seed: int = 0
    optimizer: Optimizer = Field(default_factory=Optimizer)
    input: Input = Field(default_factory=Input)
    mask_loss: MaskLoss = Field(default_factory=MaskLoss)
    validation: Validation = Field(default_factory=Validation)
    data: Data = Field(default_factory=Data)
    pseudo: Pseudo = Field(default_factory=Pseudo)
    distill: Distill = Field(default_factory=Distill)

    @field_validator("network")
    @classmethod
    def _known_network(cls, value: str) -> str:
        # smp's own registry, which models/zoo.py builds from (imported here, not at the top:
        # reading a config should not pay for importing smp).
        from segmentation_models_pytorch import MODEL_ARCHITECTURES_MAPPING as networks

        if value.lower() not in networks:
            raise ValueError(f"unknown network {value!r}; choose one of {sorted(networks)}")
        return value.lower()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        n = len(self.input.normalize.mean)
        if n != len(self.input.normalize.std) or n not in (1, 3):
            raise ValueError("input.normalize.mean and std must both have 1 or 3 values")
        if self.input.train_crop is not None and min(self.input.train_crop) < 1:
            raise ValueError("input.train_crop must be [height, width] in pixels")
        return self

    def unused_recipe_keys(self) -> list[str]:
        """The recipe's keys this config sets that, as in the recipe, change nothing."""
        unused = {
            "optimizer.clip": self.optimizer.clip,
            "input.crop_height": self.input.crop_height,
            "input.crop_width": self.input.crop_width,
        }
        return [key for key, value in unused.items() if value is not None]


def config_from_dict(data: dict[str, Any], source: object = "config") -> Config:
    """Validate a plain dict into a Config; errors become one-line InputErrors naming the key."""
    if not isinstance(data, dict):
        raise InputError("a config must be a mapping of keys to values", source)
    return validate(Config, data, source)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a nested dict; values are parsed as YAML (1e-3, true, [1,2])."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise InputError(f"--set {dotted}: '{key}' is not a section")
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
            raise InputError(f"--set {item}: the value is not valid YAML ({problem})") from None
    return data


def load_config(path: Path | str, overrides: list[str] | None = None) -> Config:
    """Read a YAML/JSON config, apply `--set` overrides and validate it."""
    path = Path(path)
    data = apply_overrides(read_mapping(path, "config file", "config"), overrides or [])
    return config_from_dict(data, path)


def save_config(config: Config, path: Path, comments: list[str] | None = None) -> None:
    """Write the resolved config (every key, defaults included) as YAML, atomically.

    `comments` become `# ...` lines at the top, e.g. why an `auto` switch resolved as it did.
    """
    header = "".join(f"# {line}\n" for line in comments or [])
    write_text_atomic(path, header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def config_name(path: Path | str) -> str:
    """Run folder name for a config file: its stem (configs/cpu_fast.yaml -> cpu_fast)."""
    return Path(path).stem
