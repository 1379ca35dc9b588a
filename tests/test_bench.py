"""The benchmark scripts run on tiny sizes and write their rows (no timing is asserted)."""

from __future__ import annotations

import json
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
