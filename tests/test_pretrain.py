"""make pretrain's pipeline (scripts/pretrain.py) on a tiny model, the released weights and their
card (models/release.py), and segment.py's default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, error_line, run_script, tiny_checkpoint

import segment
from dataset.synthetic import EyeSequence
from inference.segmenter import Segmenter
from models.checkpoint import load_checkpoint, model_from_checkpoint
from models.release import card_path, release_weights


def test_release_keeps_the_model_in_fp16(tmp_path: Path) -> None:
    """fp16 weights + config, nothing to resume from; the model they rebuild predicts as the original."""
    source = tiny_checkpoint(tmp_path / "best.pt", [], seed=0, trained_on=["S_0/label_1.npy"])
    card = release_weights(source, tmp_path / "w" / "default.pt", {"name": "t"}, trained_on=[])
    payload = load_checkpoint(tmp_path / "w" / "default.pt")
    assert (
        set(payload) == {"model", "config", "epoch", "best_miou", "trained_on"}
        and payload["trained_on"] == []
    )
    assert all(v.dtype == torch.float16 for v in payload["model"].values() if v.is_floating_point())
    assert json.loads(card_path(tmp_path / "w" / "default.pt").read_text()) == card and card["bytes"] > 0
    original, _, _ = model_from_checkpoint(source)
    released, _, _ = model_from_checkpoint(tmp_path / "w" / "default.pt")
    frame = torch.from_numpy(EyeSequence(0, 0, 2).render(0)[0])[None, None]
    with torch.no_grad():
        a, b = original.eval()(frame), released.eval()(frame)
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


def test_segment_uses_the_default_model_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "eye.png"
    import cv2

    cv2.imwrite(str(image), EyeSequence(0, 1, 2).render(0)[0][::2, ::2])
    monkeypatch.setattr(segment, "DEFAULT_WEIGHTS", tmp_path / "weights" / "default.pt")
    assert "default model is missing" in error_line(
        segment.main, ["--input", image, "--out", tmp_path / "a"], capsys
    )
    release_weights(
        tiny_checkpoint(tmp_path / "best.pt", [], 0, []), tmp_path / "weights" / "default.pt", {}, []
    )
    segment.main(["--input", str(image), "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "masks" / "eye.png").is_file()
    assert "1 models" in capsys.readouterr().out
    # a user's own models win: two checkpoints named, two members
    other = tiny_checkpoint(tmp_path / "other.pt", [], 1, [])
    segment.main(
        [
            "--input",
            str(image),
            "--out",
            str(tmp_path / "c"),
            "--checkpoints",
            str(other),
            str(other),
            "--masks",
            "labelme",
        ]
    )
    assert "2 models" in capsys.readouterr().out
    assert (tmp_path / "c" / "labelme" / "eye.json").is_file() and (
        tmp_path / "c" / "labelme" / "eye.png"
    ).is_file()


@pytest.mark.slow
def test_pretrain_pipeline_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "pt"
    proc = run_script(
        "-m", "scripts.pretrain", "--out", out, "--config", TINY, "--epochs", 1, "--val-sequences", 4,
        "--score-frames", 2, "--real-video", tmp_path / "absent.mp4",
        "--set", "data.render.frames_per_epoch=8", "--set", "data.render.styles=[headset,closeup]", timeout=600,
    )  # fmt: skip
    assert "rendered frames: 8 new ones every epoch, styles headset, closeup" in proc.stdout
    weights = out / "weights" / "default.pt"
    card = json.loads(weights.with_suffix(".json").read_text())
    # every style, the one no default model trains on (oblique) included
    assert set(card["scores"]["rendered"]["styles"]) == {"classic", "headset", "closeup", "remote", "oblique"}
    assert "deepvog_video" not in card["scores"] and card["train_seconds"] > 0
    assert "--set data.render.frames_per_epoch=8" in card["made_by"]
    result = Segmenter.from_checkpoints([weights], tta="none")(np.zeros((240, 320), np.uint8))
    assert result.mask.shape == (240, 320)
