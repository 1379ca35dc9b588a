"""The machine's choices: bf16 autocast and channels_last on the CPU, from torch's own probes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT

import train
from config.schema import load_config
from dataset.create_kfolds import main as create_kfolds_main
from runtime import hardware
from runtime.device import amp_settings, precision_choice, resolve_runtime, select_device
from utils.errors import InputError

CPU = torch.device("cpu")
AMX = {
    "architecture": "x86_64",
    "avx2": True,
    "avx512_f": True,
    "avx512_bf16": True,
    "amx_bf16": True,
    "amx_tile": True,
}
AVX512_BF16 = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bf16": True}
AVX2 = {"architecture": "x86_64", "avx2": True}
ARM = {"architecture": "arm64", "neon": True, "bf16": True}


@pytest.fixture
def cpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend to be a CPU: set(caps, dispatch) mocks torch.cpu.get_capabilities and the ATen dispatch level."""

    def set_cpu(caps: dict, dispatch: str = "AVX512") -> None:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: dispatch)

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    return set_cpu


@pytest.mark.parametrize(
    ("caps", "dispatch", "isa", "expected"),
    [
        (AMX, "AVX512", None, True),
        (AMX, "AVX512", "AVX512_CORE_AMX", True),
        (AMX, "AVX2", None, False),  # ATEN_CPU_CAPABILITY=avx2: what an AVX2 machine would do
        (AMX, "AVX512", "AVX2", False),  # ONEDNN_MAX_CPU_ISA=AVX2
        (AVX512_BF16, "AVX512", None, False),  # measured no faster than fp32 (BENCHMARKS.md)
        (AVX2, "AVX2", None, False),
        (ARM, "DEFAULT", None, False),
    ],
)
def test_bf16_auto_follows_the_probe(cpu, monkeypatch, caps, dispatch, isa, expected) -> None:
    cpu(caps, dispatch)
    if isa:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    choice = hardware.bf16_choice("auto", CPU)
    assert choice.value is expected and choice.reason.startswith("auto: ")
    config = load_config(ROOT / "configs" / "tiny.yaml", ["cpu_bf16=auto"])
    assert amp_settings(config, CPU) == ((torch.bfloat16 if expected else None), False)
    assert precision_choice("auto", CPU)[0] == (torch.bfloat16 if expected else None)


def test_explicit_bf16_on_a_cpu_without_it_runs_with_one_warning(cpu, capsys) -> None:
    cpu(AVX2, "AVX2")
    assert hardware.bf16_choice(True, CPU).value is True
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "many times slower than fp32" in warnings[0]
    assert precision_choice("bf16", CPU)[0] == torch.bfloat16
    assert "many times slower" in capsys.readouterr().err
    cpu(AMX)
    assert hardware.bf16_choice(True, CPU).value is True
    assert precision_choice("fp32", CPU)[0] is None
    assert capsys.readouterr().err == ""  # native: no warning


def test_channels_last_auto(cpu) -> None:
    cpu(AVX2, "AVX2")
    assert hardware.channels_last_choice("auto", CPU).value is True
    assert hardware.channels_last_choice(False, CPU).value is False
    cpu(ARM, "DEFAULT")
    assert hardware.channels_last_choice("auto", CPU).value is False
    assert hardware.channels_last_choice(True, CPU).value is True


def test_resolved_choice_is_printed_and_recorded_in_config_yaml(
    cpu, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    create_kfolds_main(["--data-dir", str(tiny_data), "--folds", "2"])
    for caps, expected in ((AVX2, False), (AMX, True)):
        cpu(caps, "AVX512")
        out = tmp_path / f"runs_{expected}"
        train.main(
            [
                "--config",
                str(ROOT / "configs" / "tiny.yaml"),
                "--data-dir",
                str(tiny_data),
                "--fold",
                "0",
                "--output-dir",
                str(out),
                "--epochs",
                "1",
                "--set",
                "cpu_bf16=auto",
                "--set",
                "channels_last=auto",
            ]
        )
        printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("precision: ")]
        assert len(printed) == 1 and ("bf16 autocast" in printed[0]) is expected, printed
        text = (out / "tiny" / "fold_0" / "config.yaml").read_text()
        assert text.startswith(f"# {printed[0]}\n")
        saved = yaml.safe_load(text)
        assert saved["cpu_bf16"] is expected and saved["channels_last"] is True


def test_configs_default_to_auto() -> None:
    for name in ("cpu_fast.yaml", "tiny.yaml"):
        config = load_config(ROOT / "configs" / name)
        assert config.cpu_bf16 == "auto" and config.channels_last == "auto", name
    resolved, line = resolve_runtime(load_config(ROOT / "configs" / "cpu_fast.yaml"), CPU)
    assert isinstance(resolved.cpu_bf16, bool) and isinstance(resolved.channels_last, bool)
    assert line.startswith("precision: ")


def test_gpu_has_one_meaning_for_training_and_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    """--gpu: indices of the visible CUDA devices; local rank r takes the r-th; 'cpu' forces the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert select_device(None) == torch.device("cuda", 0)
    assert select_device("2", doing="predicting") == torch.device("cuda", 2)
    assert select_device("cpu") == CPU
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert select_device(None) == torch.device("cuda", 1)
    assert select_device("0,3") == torch.device("cuda", 3)
    for bad, needle in (
        ("x", "device indices like 0 or 0,1"),
        ("2", "for local rank 1"),
        ("0,7", "only 4 CUDA"),
    ):
        with pytest.raises(InputError, match=needle):
            select_device(bad)


def test_gpu_without_cuda_is_a_note_and_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("0", doing="predicting") == CPU
    assert (
        capsys.readouterr().err.strip()
        == "note: --gpu 0 given but CUDA is not available; predicting on the CPU"
    )


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (4, 2), (16, 2)])
def test_prediction_workers_leave_a_small_cpu_to_the_models(
    cores: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict_ensemble.py's default DataLoader workers: 0 on a CPU of <= 2 cores, 2 above and on CUDA."""
    from runtime import device as runtime

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert runtime.prediction_workers(torch.device("cpu")) == workers
    assert runtime.prediction_workers(torch.device("cuda", 0)) == 2
