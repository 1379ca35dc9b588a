"""Model zoo, checkpoints (ours and the recipe's format), the ensemble engine, schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY

from config.schema import load_config
from inference.engine import EnsemblePredictor
from models.checkpoint import model_from_checkpoint, save_checkpoint
from models.zoo import build_model
from training.schedule import lr_at
from utils.errors import InputError

FRAMES = torch.randint(
    0, 256, (2, 1, 400, 640), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)


@pytest.mark.parametrize("network", ["unet", "unetplusplus", "fpn", "deeplabv3plus"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_zoo_builds_networks_and_returns_full_size_logits(network: str, in_channels: int) -> None:
    extra = [] if network == "unet" else ["network_params={}"]
    config = load_config(
        TINY, [f"network={network}", f"in_channels={in_channels}", "input.scale=0.25", *extra]
    )
    model = build_model(config).eval()
    with torch.no_grad():
        logits = model(FRAMES[:1])
        small = model(FRAMES[:1], resize_back=False)
    assert logits.shape == (1, 4, 400, 640)
    assert small.shape == (1, 4, 100, 160)


def test_full_scale_pads_400_to_416_like_the_recipe() -> None:
    config = load_config(TINY, ["input.scale=1.0"])
    model = build_model(config).eval()
    seen = {}

    def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen["shape"] = args[0].shape

    model.net.register_forward_pre_hook(record)
    with torch.no_grad():
        model(FRAMES[:1])
    assert seen["shape"] == (1, 1, 416, 640)


def test_local_encoder_weights_file_is_loaded(tmp_path: Path) -> None:
    config = load_config(TINY)
    source = build_model(config)
    path = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), path)
    model = build_model(load_config(TINY, [f"encoder_weights={path}"]))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)
    missing = load_config(TINY, [f"encoder_weights={tmp_path / 'nope.pth'}"])
    with pytest.raises(InputError, match="nope.pth"):
        build_model(missing)


def test_recipe_checkpoint_format_loads(tmp_path: Path) -> None:
    config = load_config(TINY)
    model = build_model(config)
    recipe = {"state_dict": {f"module.{k}": v for k, v in model.net.state_dict().items()}, "epoch": 7}
    torch.save(recipe, tmp_path / "recipe.pth")
    loaded, _, payload = model_from_checkpoint(tmp_path / "recipe.pth", config)
    assert payload["epoch"] == 7
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(InputError, match="no config"):
        model_from_checkpoint(tmp_path / "recipe.pth")


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    config = load_config(TINY)
    save_checkpoint(
        {"model": build_model(config).state_dict(), "config": config.model_dump(mode="json")},
        tmp_path / "a.pt",
    )
    other = load_config(TINY, ["network=fpn", "network_params={}"])
    with pytest.raises(InputError, match="do not match fpn"):
        model_from_checkpoint(tmp_path / "a.pt", other)


def test_ensemble_averages_weighted_logits_over_views() -> None:
    torch.manual_seed(0)
    config = load_config(TINY)
    a, b = build_model(config).eval(), build_model(config).eval()
    predictor = EnsemblePredictor([(a, 1.0), (b, 3.0)], tta="hflip")
    with torch.no_grad():

        def views(m: torch.nn.Module) -> torch.Tensor:
            return m(FRAMES) + m(FRAMES.flip(-1)).flip(-1)

        expected = (views(a) * 1.0 + views(b) * 3.0) / 8.0
    assert torch.allclose(predictor.logits(FRAMES), expected, atol=1e-5)
    labels, confidence = predictor.predict(FRAMES)
    # Batched views vs separate passes differ in float rounding: argmax may flip on near-ties.
    assert (labels != expected.argmax(1).to(torch.uint8)).float().mean() < 1e-3
    assert torch.allclose(confidence, expected.softmax(1).max(1).values, atol=1e-5)


def test_recipe_step_schedule_matches_its_table() -> None:
    optimizer = load_config(ROOT / "configs" / "seed-efficientnet-b7.json").optimizer
    assert [lr_at(optimizer, e) for e in (0, 19, 20, 39.5, 40, 149, 150, 169)] == [
        0.003,
        0.003,
        0.001,
        0.001,
        0.0005,
        0.000005,
        0.000002,
        0.000002,
    ]
    cosine = load_config(TINY, ["optimizer.schedule.type=cosine", "optimizer.schedule.epochs=10"]).optimizer
    assert lr_at(cosine, 0) == pytest.approx(cosine.learning_rate)
    assert lr_at(cosine, 10) == pytest.approx(0.0, abs=1e-12)
