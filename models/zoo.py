"""Model zoo: config -> nn.Module over segmentation-models-pytorch.

`SegmentationModel` wraps any smp architecture x encoder with what a checkpoint must carry to
be used on its own: input normalisation, gray -> 3-channel copy, the input scale, and the
padding to a multiple of 32 (400 -> 416 rows at full scale, the recipe's 8 px top and
bottom). It takes raw gray frames (B, 1, H, W), uint8 or float in 0..255 (in training also their
augmented 3-channel copies, (B, 3, H, W)), and returns logits
at the input's own size, so every caller (training, validation, the ensemble) sees full-size
logits whatever resolution the network runs at.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import safetensors.torch
import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from torch import nn

from config.schema import Config
from models.safe_load import load_weights_only
from utils.errors import InputError

__all__ = ["NETWORKS", "SegmentationModel", "build_model", "PAD_MULTIPLE", "WEIGHT_FILE_SUFFIXES"]

# Registry: architecture name (lower case) -> smp class. Unet, UnetPlusPlus, FPN,
# DeepLabV3Plus, MAnet, Linknet, PSPNet, PAN, UPerNet, ...
NETWORKS: dict[str, type[nn.Module]] = dict(smp.MODEL_ARCHITECTURES_MAPPING)
PAD_MULTIPLE = 32


class SegmentationModel(nn.Module):
    """An smp network plus its input pipeline: normalise, rescale, pad, predict, undo.

    Args:
        net: the smp model (its `encoder` attribute is used for freezing).
        in_channels: 1, or 3 for a 3-channel copy of the gray frame (ImageNet encoders).
        mean, std: normalisation of intensities scaled to 0..1 (1 or 3 values).
        scale: the network runs at this fraction of the input resolution.

    Shape:
        input (B, 1, H, W) uint8 or float 0..255 -> logits (B, num_classes, H, W) float.
        With in_channels 3, (B, 3, H, W) input is taken as it is (augmented training frames).
    """

    def __init__(
        self, net: nn.Module, in_channels: int, mean: list[float], std: list[float], scale: float = 1.0
    ) -> None:
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        self.scale = scale
        self._channels_last = False
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        if in_channels == 1 and mean_t.numel() == 3:
            mean_t, std_t = mean_t.mean(0, keepdim=True), std_t.mean(0, keepdim=True)
        # Fold /255 and the normalisation into one multiply-add; buffers follow .to(device).
        self.register_buffer("_mul", (1.0 / (255.0 * std_t)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_add", (-mean_t / std_t).view(1, -1, 1, 1), persistent=False)

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def forward(
        self, frames: torch.Tensor, scale: float | None = None, resize_back: bool = True
    ) -> torch.Tensor:
        """Logits at the input's size, or at the network's (reduced) size if not `resize_back`.

        Training uses the network's size with masks resized to it: at scale 0.5 the loss
        over full-size logits costs as much as the network's own backward pass on a CPU.
        """
        height, width = frames.shape[-2:]
        scale = self.scale if scale is None else scale
        x = frames.float()
        if scale != 1.0:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        # Pad with black (intensity 0) to a multiple of 32, split evenly top/bottom and left/right.
        h, w = x.shape[-2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        top, left = ph // 2, pw // 2
        if ph or pw:
            x = F.pad(x, (left, pw - left, top, ph - top), value=0.0)
        x = x * self._mul + self._add  # broadcasts the 1-channel frame to 3 channels if needed
        if self.in_channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.net(x)
        logits = logits[..., top : top + h, left : left + w]
        if resize_back and (h, w) != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return logits

    def to_channels_last(self) -> SegmentationModel:
        """channels_last memory format: faster convolutions on CUDA and on CPUs with AMX/AVX-512."""
        self._channels_last = True
        return self.to(memory_format=torch.channels_last)

    def freeze_encoder(self, frozen: bool) -> None:
        for param in self.encoder.parameters():
            param.requires_grad_(not frozen)


WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _is_weights_file(weights: str) -> bool:
    return Path(weights).suffix.lower() in WEIGHT_FILE_SUFFIXES or Path(weights).exists()


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(
            "encoder_weights file not found (put the file there, name weights smp knows such as "
            "imagenet, or set encoder_weights: null for random init)",
            path,
        )
    try:
        if path.suffix.lower() == ".safetensors":
            return safetensors.torch.load_file(path, device="cpu")
        state = load_weights_only(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling or parsing failure means an unusable file
        raise InputError(f"cannot read weights file ({type(exc).__name__})", path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict", state.get("model")), dict):
        state = state.get("state_dict", state.get("model"))
    if not isinstance(state, dict):
        raise InputError("not a weights file: no state dict in it", path)
    return state


def _load_local_weights(model: SegmentationModel, path: Path) -> None:
    """Load a local weights file into the encoder (encoder keys) or the whole network."""
    state = _read_weights_file(path)
    # Accept encoder-only files and whole-model files (ours "net.", DataParallel's "module.").
    state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items()}
    if any(k.startswith("encoder.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    # Every encoder tensor must be there with its shape; extra keys (an ImageNet classifier) are
    # left out. nn.Module's own load_state_dict: some smp encoders override it to drop such keys.
    own = model.encoder.state_dict()
    missing = [k for k, v in own.items() if k not in state or tuple(state[k].shape) != tuple(v.shape)]
    if missing:
        raise InputError(
            f"weights do not fit encoder {type(model.encoder).__name__} ({len(missing)} of {len(own)} "
            f"tensors missing or of another shape, e.g. {missing[0]})",
            path,
        )
    nn.Module.load_state_dict(model.encoder, {k: state[k] for k in own})


def _hub_weights(encoder: str, weights: str) -> tuple[str, str | bool]:
    """(where the weights live on the Hugging Face Hub, the value smp takes for them).

    smp's own encoders name their weights (imagenet, advprop, ...) and read them from an
    smp-hub repository; timm encoders (tu-<name>) take True and read timm's default tag.
    """
    if encoder.startswith("tu-"):
        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        source = (cfg.hf_hub_id or cfg.url) if cfg is not None else None
        return source or encoder, True
    known = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    if weights not in known:
        raise InputError(
            f"encoder_weights: {weights!r} is neither weights smp knows for encoder {encoder!r} "
            f"({', '.join(known) or 'none'}) nor a local {'/'.join(WEIGHT_FILE_SUFFIXES)} file"
        )
    return known[weights]["repo_id"], weights


def _offline_advice(encoder: str, weights: str, source: str, exc: Exception) -> str:
    """One line: which weights are missing, where they were looked for, three ways to supply them."""
    return (
        f"{source}: encoder_weights {weights!r} of {encoder} are not in the Hugging Face cache "
        f"({huggingface_hub.constants.HF_HUB_CACHE}) and cannot be downloaded here ({type(exc).__name__}). "
        f'Download them once on a machine with internet (python -c "import segmentation_models_pytorch as smp; '
        f"smp.Unet('{encoder}', encoder_weights='{weights}')\"), then copy its ~/.cache/huggingface to "
        "the same place here or set HF_HOME to the copy; or set encoder_weights to a local "
        f"{'/'.join(WEIGHT_FILE_SUFFIXES)} file (null: random init)"
    )


def build_model(config: Config, pretrained: bool = True) -> SegmentationModel:
    """Build the config's network with its encoder weights.

    encoder_weights: null (random init), a local weights file, or a name smp knows (imagenet):
    read from the Hugging Face cache, downloaded into it when there is a connection, else a
    one-line InputError saying how to supply them. `pretrained=False` skips the weights (the
    caller loads a checkpoint over them).
    """
    weights = config.encoder_weights if pretrained else None
    local = weights is not None and _is_weights_file(weights)
    source, smp_weights = ("", None)
    if weights is not None and not local:
        source, smp_weights = _hub_weights(config.encoder, weights)
    try:
        net = NETWORKS[config.network](
            encoder_name=config.encoder,
            encoder_weights=smp_weights,
            in_channels=config.in_channels,
            classes=config.num_classes,
            **config.network_params,
        )
    except OSError as exc:  # huggingface_hub: not in the cache and no connection (or an HTTP error)
        raise InputError(_offline_advice(config.encoder, str(weights), source, exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"cannot build {config.network} with encoder {config.encoder!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a cached weights file that is corrupt or does not fit
        if smp_weights is None:
            raise
        detail = " ".join(str(exc).split())[:200]
        raise InputError(
            f"cannot load encoder_weights {weights!r}: {type(exc).__name__}: {detail}", source
        ) from None
    model = SegmentationModel(
        net,
        in_channels=config.in_channels,
        mean=config.input.normalize.mean,
        std=config.input.normalize.std,
        scale=config.input.scale,
    )
    if local:
        _load_local_weights(model, Path(weights))
    return model
