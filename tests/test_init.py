"""train.py --init: every weight of a trained model (fp32 or fp16 files), refused on another
architecture or a missing file, recorded in the run, and never applied over a resumed run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from conftest import TINY, error_line, run_script, tiny_checkpoint

import train
from config.schema import load_config
from dataset.create_kfolds import main as create_kfolds_main
from models.checkpoint import init_from_checkpoint, load_checkpoint, model_from_checkpoint
from models.zoo import build_model
from utils.errors import InputError


@pytest.fixture
def fold_data(tiny_data: Path) -> Path:
    create_kfolds_main(["--data-dir", str(tiny_data), "--folds", "2"])
    return tiny_data


def fresh_model(overrides: list[str] | None = None, seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(load_config(TINY, overrides))


def assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert own.keys() == state.keys()
    for key, tensor in state.items():
        assert own[key].dtype == (torch.float32 if tensor.is_floating_point() else tensor.dtype), key
        assert torch.equal(own[key], tensor.to(own[key].dtype)), key


def test_init_loads_every_weight_exactly(tmp_path: Path) -> None:
    source = tiny_checkpoint(tmp_path / "a.pt", [], seed=1, trained_on=["S_0/1"])
    state = load_checkpoint(source)["model"]
    model = fresh_model()
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in state.items())  # a different start
    record = init_from_checkpoint(model, load_config(TINY), source)
    assert_same_weights(model, state)  # the decoder and head too, not only the encoder
    assert record == {"path": str(source), "trained_on": ["S_0/1"]}


def test_init_from_fp16_weights_only_file(tmp_path: Path) -> None:
    # A shipped model: fp16 weights and the config, nothing else; loaded into an fp32 model.
    source = load_checkpoint(tiny_checkpoint(tmp_path / "a.pt", [], seed=1, trained_on=[]))
    half = {k: v.half() if v.is_floating_point() else v for k, v in source["model"].items()}
    torch.save({"model": half, "config": source["config"]}, tmp_path / "default.pt")
    model = fresh_model()
    assert init_from_checkpoint(model, load_config(TINY), tmp_path / "default.pt")["trained_on"] is None
    assert_same_weights(model, half)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["network_params={decoder_channels: [16, 16, 16, 8, 8]}"], "network_params"),
        (["encoder=resnet18"], "encoder: 'resnet18' -> 'tu-mobilenetv3_small_050'"),
        (["input.scale=0.5"], "input.scale: 0.5 -> 0.25"),  # same tensors, another meaning
    ],
)
def test_init_refuses_another_architecture(tmp_path: Path, overrides: list[str], needle: str) -> None:
    source = tiny_checkpoint(tmp_path / "other.pt", overrides, seed=1, trained_on=[])
    model = fresh_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match="--init needs the architecture") as info:
        init_from_checkpoint(model, load_config(TINY), source)
    assert str(source) in str(info.value) and needle in str(info.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # left as it was


def test_init_without_a_config_checks_every_tensor_shape(tmp_path: Path) -> None:
    other = fresh_model(["network_params={decoder_channels: [16, 16, 16, 8, 8]}"])
    torch.save({"model": other.state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(
        InputError, match=r"do not fit unet/tu-mobilenetv3_small_050 \(0 missing, 0 extra, \d+ of another"
    ):
        init_from_checkpoint(fresh_model(), load_config(TINY), tmp_path / "bare.pt")
    torch.save({"model": fresh_model().state_dict()}, tmp_path / "same.pt")
    model = fresh_model(seed=3)
    init_from_checkpoint(model, load_config(TINY), tmp_path / "same.pt")
    assert_same_weights(model, fresh_model().state_dict())


def test_train_refuses_a_mismatch_or_a_missing_file_in_one_line(
    fold_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tiny_checkpoint(
        tmp_path / "other.pt", ["network_params={decoder_channels: [16, 16, 16, 8, 8]}"], 1, []
    )
    base = [
        "--config",
        TINY,
        "--data-dir",
        fold_data,
        "--fold",
        0,
        "--output-dir",
        tmp_path / "runs",
        "--workers",
        0,
    ]
    line = error_line(train.main, [*base, "--init", other], capsys)
    assert str(other) in line and "decoder_channels" in line
    line = error_line(train.main, [*base, "--init", tmp_path / "missing.pt"], capsys)
    assert str(tmp_path / "missing.pt") in line and "checkpoint not found" in line
    assert not (tmp_path / "runs").exists()


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: param.detach() for name, param in model.named_parameters()}


@pytest.mark.slow
def test_train_starts_from_the_checkpoint_records_it_and_a_resume_wins(
    fold_data: Path, tmp_path: Path
) -> None:
    source = tiny_checkpoint(tmp_path / "a.pt", [], seed=1, trained_on=["S_9/1"])
    other = tiny_checkpoint(tmp_path / "b.pt", [], seed=2, trained_on=[])

    def run(*extra: object) -> subprocess.CompletedProcess:
        # A learning rate of 1e-12: one epoch leaves the parameters where --init put them.
        return run_script(
            "train.py", "--config", TINY, "--data-dir", fold_data, "--fold", 0, "--output-dir", tmp_path / "runs",
            "--set", "optimizer.learning_rate=1e-12", *extra,
        )  # fmt: skip

    proc = run("--init", source, "--epochs", 1)
    assert f"weights from {source} (--init" in proc.stdout
    last = tmp_path / "runs" / "tiny" / "fold_0" / "last.pt"
    payload = load_checkpoint(last)
    assert payload["epoch"] == 1 and payload["init"] == {"path": str(source), "trained_on": ["S_9/1"]}
    assert "S_9/1" in payload["trained_on"] and len(payload["trained_on"]) > 1  # its frames and the source's
    trained, _, _ = model_from_checkpoint(last)
    start, _, _ = model_from_checkpoint(source)
    for name, value in parameters(start).items():
        torch.testing.assert_close(parameters(trained)[name], value, rtol=0, atol=1e-8)

    proc = run("--init", other, "--resume", "auto", "--epochs", 2)
    assert "resumed" in proc.stdout and f"--init {other} not applied" in proc.stdout
    payload = load_checkpoint(last)
    assert payload["epoch"] == 2 and payload["init"]["path"] == str(source)
    resumed, _, _ = model_from_checkpoint(last)
    for name, value in parameters(start).items():
        torch.testing.assert_close(parameters(resumed)[name], value, rtol=0, atol=1e-8)
