"""The benchmark scripts run on tiny sizes and write their rows (no timing is asserted)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_script, write_tiny_dataset

from bench.infer import Setting, make_checkpoints, run_engine
from bench.naive import naive_predict
from bench.run_all import AVX2_BEGIN, AVX2_END, END, HEADING, render_section, update_markdown
from config.ensemble import spec_from_checkpoints
from config.schema import load_config
from dataset.openeds import OpenEDSIndex
from inference.members import load_members


def test_engine_matches_naive_loop_on_the_same_checkpoints(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "data", sequences=1, frames=4)
    config = load_config(ROOT / "configs" / "tiny.yaml", ["input.scale=1.0", "in_channels=3"])
    paths = make_checkpoints(tmp_path, data, config, count=2, calibration_frames=2)
    members = load_members(spec_from_checkpoints([str(path) for path in paths]))
    keys = OpenEDSIndex.from_dir(data).all_keys()[:4]
    reference, _ = naive_predict([member.model for member in members], data, keys)
    labels, seconds, _ = run_engine(members, data, keys, Setting(batch_size=2, workers=0))
    assert labels.shape == reference.shape == (4, 400, 640) and seconds > 0
    assert (labels == reference).mean() >= 0.995


@pytest.mark.slow
def test_memory_probe_runs_in_a_fresh_process(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "data", sequences=1, frames=8)
    proc = run_script("-m", "bench.memory", "predict", "--work-dir", tmp_path, "--frames", 16, "--workers", 0)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["fps"] > 0 and result["main_mib"] > 0


def test_section_is_replaced_and_other_sections_kept(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Demo\n\nlead's text\n")
    machine = {"cpu": "cpu", "cores": "2", "isa": "-", "torch": "x", "threads": "2"}
    update_markdown(path, render_section(machine, "make bench", 1.0, ["| a | 1 |"]))
    path.write_text(path.read_text().replace(END, END + "\n\nhand-written notes\n") + "\n## Pseudo\n\nmore\n")
    update_markdown(path, render_section(machine, "make bench", 2.0, ["| b | 2 |"]))
    text = path.read_text()
    assert text.count(HEADING) == 1 and "| b | 2 |" in text and "| a | 1 |" not in text
    assert "## Demo\n\nlead's text" in text and "hand-written notes" in text and "## Pseudo\n\nmore" in text


def test_avx2_limited_block_sits_after_the_native_one_and_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    machine = {"cpu": "cpu", "cores": "2", "isa": "-", "torch": "x", "threads": "2"}
    update_markdown(path, render_section(machine, "make bench", 1.0, ["| native |"]))
    path.write_text(path.read_text() + "\n## Demo\n\ntext\n")
    limited = {**machine, "limit": "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2"}
    for row in ("| avx2 a |", "| avx2 b |"):
        block = render_section(limited, "make bench", 1.0, [row], (AVX2_BEGIN, AVX2_END))
        update_markdown(path, block, (AVX2_BEGIN, AVX2_END))
    text = path.read_text()
    assert text.index("| native |") < text.index("| avx2 b |") < text.index("## Demo")
    assert "| avx2 a |" not in text and text.count(AVX2_BEGIN) == 1 and "limited to AVX2" in text


@pytest.mark.slow
def test_cpu_inference_tables_on_given_checkpoints(tmp_path: Path) -> None:
    from conftest import tiny_checkpoint

    from bench import cpu_infer

    data = write_tiny_dataset(tmp_path / "data", sequences=1, frames=4)
    paths = [str(tiny_checkpoint(tmp_path / f"{seed}.pt", [], seed, ["S_0/0"])) for seed in (0, 1)]
    result = cpu_infer.run(tmp_path / "work", paths, data, frames=2, repeats=1, workers=0, log=lambda _: None)
    assert [row["name"] for row in result["latency"]][::2] == ["PyTorch fp32", "onnxruntime fp32"]
    ensemble = {row["name"].split(" (")[0]: row for row in result["ensemble"]}
    assert ensemble["predict_ensemble, onnxruntime fp32"]["agree"] >= 0.999  # the same logits as the loop
    assert ensemble["predict_ensemble, PyTorch fp32"]["agree"] >= 0.999
    table = "\n".join(cpu_infer.render_tables(result))
    assert "| onnxruntime int8 |" in table and "vs recipe's loop" in table


def _avx2_probe(env: dict[str, str]) -> dict:
    """What the libraries of a fresh Python see under `env`."""
    code = (
        "import json, torch, numpy\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "print(json.dumps({'torch': torch.backends.cpu.get_cpu_capability(), 'numpy_avx512f': f['AVX512F'],"
        " 'numpy_avx2': f['AVX2']}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def avx2_limited_env() -> dict[str, str]:
    """bench.avx2's environment with its CPUID layer; the test is skipped where there is none."""
    from tools.avx2 import avx2_env, cpuid_library

    library, why = cpuid_library()
    if library is None:
        pytest.skip(f"no CPUID layer here: {why}")
    return avx2_env(warn=False)


def test_avx2_limit_hides_avx512_from_libraries_without_a_cap_of_their_own(
    avx2_limited_env: dict[str, str],
) -> None:
    """bench.avx2's CPUID layer: numpy (like onnxruntime) has no AVX2 cap of its own, yet sees none of
    AVX-512; torch sees AVX2 from CPUID alone, without its variables."""
    from tools.avx2 import AVX2_ENV

    env = avx2_limited_env
    assert _avx2_probe(env) == {"torch": "AVX2", "numpy_avx512f": False, "numpy_avx2": True}
    cpuid_only = {key: value for key, value in env.items() if key not in AVX2_ENV}
    assert _avx2_probe(cpuid_only)["torch"] == "AVX2"
    # A real crash is not swallowed by the CPUID handler, with or without a handler of the program's.
    crash = subprocess.run(
        [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], env=env, capture_output=True
    )
    assert crash.returncode == -signal.SIGSEGV
    crash = subprocess.run([sys.executable, "-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)"],
                           env=env, capture_output=True, text=True)  # fmt: skip
    assert crash.returncode == -signal.SIGSEGV and "Fatal Python error: Segmentation fault" in crash.stderr


def test_avx2_limit_survives_a_program_s_own_sigsegv_handler(
    tmp_path: Path, avx2_limited_env: dict[str, str]
) -> None:
    """A DataLoader worker installs its own SIGSEGV handler, then OpenCV reads CPUID in it: the
    CPUID layer must still answer (make demo under bench.avx2 died here before it did)."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import torch\n"
        "from torch.utils.data import DataLoader, Dataset\n"
        "class Probe(Dataset):\n"
        "    def __len__(self):\n        return 1\n"
        "    def __getitem__(self, index):\n"
        "        import cv2  # reads CPUID when it loads: here, after torch's worker handler\n"
        "        return torch.tensor([cv2.checkHardwareSupport(13), cv2.checkHardwareSupport(11)])  # AVX_512F, AVX2\n"
        "if __name__ == '__main__':\n"
        "    print([batch.tolist() for batch in DataLoader(Probe(), num_workers=1)])\n"
    )
    proc = subprocess.run([sys.executable, str(script)], env=avx2_limited_env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[[[False, True]]]"


def test_avx2_limit_without_cpuid_faulting_keeps_the_pytorch_variables(monkeypatch, capsys) -> None:
    import tools.avx2 as avx2

    monkeypatch.setattr(avx2, "_has_cpuid_faulting", lambda: False)
    env = avx2.avx2_env({"PATH": "/usr/bin"})
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert "LD_PRELOAD" not in env and env[avx2.LIMIT_VAR] == "env"
    assert "onnxruntime will use AVX-512" in capsys.readouterr().err


def test_avx2_runs_as_a_module_without_a_warning_or_pytorch() -> None:
    """`python -m bench.avx2` imports the package bench first: if that imported bench.avx2 (or
    PyTorch), runpy would warn about a module already in sys.modules and the wrapper start slowly."""
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "bench.avx2", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "usage: python -m bench.avx2" in proc.stdout, proc.stderr[-2000:]
    assert "RuntimeWarning" not in proc.stderr
    loaded = subprocess.run([sys.executable, "-c", "import sys, bench; print('torch' in sys.modules)"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert loaded.stdout.strip() == "False", loaded.stderr[-2000:]


@pytest.mark.slow
def test_student_latency_table_marks_onnxruntime_cells_that_are_not_avx2() -> None:
    """bench.student times the student with both runtimes, natively and under bench.avx2; an
    onnxruntime AVX2 cell is marked "*" exactly when the CPUID layer could not be used."""
    from tools.avx2 import cpuid_library

    proc = run_script("-m", "bench.student", "--models", "student", "--runs", 2)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| student |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].endswith("M") and float(cells[1][:-1]) <= 0.5
    assert all(float(cell.rstrip("*")) > 0 for cell in cells[2:])
    marked = cells[3].endswith("*") and cells[5].endswith("*")
    assert marked == (cpuid_library()[0] is None), row
