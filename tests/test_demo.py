"""`make demo`'s script end to end at toy size: every stage runs, and the report holds what it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_script


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = run_script(
        "-m", "scripts.demo", "--out", out, "--config", ROOT / "configs" / "tiny.yaml",
        "--sequences", 4, "--frames", 60,
    )  # fmt: skip
    for stage in (
        "data",
        "folds",
        "train fold 0",
        "train fold 1",
        "predict test",
        "validate",
        "video",
        "segment video",
    ):
        assert f"==> [{stage}] done in" in proc.stdout, stage
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["n_images"] == 20  # 4 sequences x 5 hidden test frames
    assert f"mIoU {metrics['miou']:.4f}" in proc.stdout
    page = (out / "report" / "index.html").read_text()
    assert f"test mIoU {metrics['miou']:.4f}" in page and "min-area auto" in page
    for name in (
        "progress_tiny_fold_0.png",
        "progress_tiny_fold_1.png",
        "worst/worst.png",
        "README.md",
        "pupil.png",
    ):
        assert (out / "report" / name).stat().st_size > 0, name
    # segment.py on the demo video: a row per frame, the blink found, its speed in the report.
    summary = json.loads((out / "segment" / "summary.json").read_text())
    assert summary["frames"] == 40 and summary["kind"] == "video"
    assert len((out / "segment" / "measurements.csv").read_text().splitlines()) == 41
    assert f"{summary['frames_per_s']:.1f} frames/s" in page and "<img src='pupil.png'>" in page
    assert "![pupil over time](pupil.png)" in (out / "report" / "README.md").read_text()
    # Test frames never enter the pseudo-label pool.
    test = set((out / "data" / "test.txt").read_text().split())
    assert not test & set((out / "data" / "unlabeled.txt").read_text().split())
    assert (out / "preds" / "submission.json").is_file()
