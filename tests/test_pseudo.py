"""predict_ensemble.py --pseudo-dir: confidence-filtered pseudo-labels, manifest, leakage rule, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FPN_OVERRIDES, run_script, tiny_checkpoint, write_tiny_dataset

from dataset.openeds import IGNORE_INDEX, OpenEDSIndex, image_relpath, label_relpath, read_image
from inference.engine import EnsemblePredictor
from inference.pseudo import trained_on_union
from inference.pseudo_keys import allowed_pseudo_keys, read_pseudo_manifest
from models.checkpoint import model_from_checkpoint

# Unlabeled frames (labels sit at n % 3 == 1), two per sequence.
FRAMES = ["S_0/0", "S_0/2", "S_1/3", "S_1/5"]
TRAINED_ON = {"unet": ["S_0/1", "S_0/4"], "fpn": ["S_2/1", "S_0/1"]}


@pytest.fixture(scope="module")
def round_(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One pseudo-labelling round with thresholds chosen from an independent computation."""
    root = tmp_path_factory.mktemp("pseudo")
    data = write_tiny_dataset(root / "data", sequences=3, frames=6)
    unet = tiny_checkpoint(root / "unet.pt", [], 1, TRAINED_ON["unet"])
    fpn = tiny_checkpoint(root / "fpn.pt", FPN_OVERRIDES, 2, TRAINED_ON["fpn"])
    labels = root / "unlabeled.txt"
    labels.write_text("".join(f"{label_relpath(key)}\n" for key in FRAMES))

    members = [(model_from_checkpoint(path)[0], 1.0) for path in (unet, fpn)]
    batch = torch.from_numpy(np.stack([read_image(data / image_relpath(key)) for key in FRAMES]))[:, None]
    predicted, confidence = (t.numpy() for t in EnsemblePredictor(members, tta="none").predict(batch))
    threshold = float(np.quantile(confidence, 0.3))
    shares = (confidence >= threshold).reshape(len(FRAMES), -1).mean(1)
    # Skip exactly the least confident frame: every sequence keeps at least one frame.
    lowest, second = np.sort(shares)[:2]
    min_confident = float((lowest + second) / 2)

    pseudo = root / "pseudo"
    args = ["--data-dir", data, "--label-file", labels, "--checkpoints", unet, fpn, "--tta", "none"]
    args += [
        "--pseudo-dir",
        pseudo,
        "--threshold",
        threshold,
        "--min-confident",
        min_confident,
        "--workers",
        0,
    ]
    proc = run_script("predict_ensemble.py", *args)
    return {
        "data": data, "pseudo": pseudo, "args": args, "stdout": proc.stdout, "predicted": predicted,
        "confidence": confidence, "threshold": threshold, "shares": shares, "min_confident": min_confident,
    }  # fmt: skip


@pytest.mark.slow
def test_pseudo_labels_keep_only_confident_pixels_of_confident_frames(round_: dict) -> None:
    pseudo, threshold = round_["pseudo"], round_["threshold"]
    kept = [
        key for key, share in zip(FRAMES, round_["shares"], strict=True) if share >= round_["min_confident"]
    ]
    assert len(kept) == len(FRAMES) - 1
    for i, key in enumerate(FRAMES):
        path = pseudo / label_relpath(key)
        if key not in kept:
            assert not path.exists(), key
            continue
        mask = np.load(path)
        assert mask.dtype == np.uint8 and mask.shape == (400, 640)
        confident = mask != IGNORE_INDEX
        assert (round_["confidence"][i][confident] >= threshold).all()
        np.testing.assert_array_equal(confident, round_["confidence"][i] >= threshold)
        np.testing.assert_array_equal(mask[confident], round_["predicted"][i][confident])
        assert set(np.unique(mask[confident])) <= {0, 1, 2, 3}

    manifest = read_pseudo_manifest(pseudo)
    assert manifest["keys"] == kept
    assert manifest["trained_on"] == ["S_0/1", "S_0/4", "S_2/1"]
    assert manifest["threshold"] == threshold and manifest["min_confident"] == round_["min_confident"]
    assert [Path(c["checkpoint"]).name for c in manifest["checkpoints"]] == ["unet.pt", "fpn.pt"]
    summary = manifest["summary"]
    assert (summary["frames"], summary["kept"], summary["skipped"]) == (4, 3, 1)
    assert summary["mean_confident_share"] == pytest.approx(round_["shares"].mean(), abs=1e-5)
    kept_shares = round_["shares"][[FRAMES.index(key) for key in kept]]
    assert summary["ignored_pixel_share"] == pytest.approx(1 - kept_shares.mean(), abs=1e-5)
    assert "kept 3/4 frames" in round_["stdout"]


@pytest.mark.slow
def test_leakage_rule_drops_sequences_whose_val_labels_the_models_saw(round_: dict) -> None:
    kept = read_pseudo_manifest(round_["pseudo"])["keys"]
    # S_0/4 is a val label the unet trained on: S_0's pseudo-labels would leak it. S_1/1 was never seen.
    allowed = allowed_pseudo_keys(round_["pseudo"], val_keys=["S_0/4", "S_1/1"])
    assert allowed == [key for key in kept if not key.startswith("S_0/")]
    assert allowed and all(key.startswith("S_1/") for key in allowed)
    assert allowed_pseudo_keys(round_["pseudo"], val_keys=["S_1/1", "S_1/4"]) == kept


@pytest.mark.slow
def test_rerun_resumes_from_the_journal(round_: dict) -> None:
    pseudo = round_["pseudo"]
    manifest = read_pseudo_manifest(pseudo)
    files = sorted(pseudo.rglob("label_*.npy"))
    mtimes = {path: path.stat().st_mtime_ns for path in files}
    content = np.load(files[0])
    files[0].unlink()
    (pseudo / "pseudo.json").unlink()
    proc = run_script("predict_ensemble.py", *round_["args"])
    assert "1 frames to predict, 3 already done" in proc.stdout  # the skipped frame is not redone
    # Redone alone rather than in a batch of 4: CPU convolutions sum in another order, which may
    # move a pixel or two across the threshold; nothing more.
    assert (np.load(files[0]) != content).mean() < 1e-4
    assert all(path.stat().st_mtime_ns == mtimes[path] for path in files[1:])
    rewritten = read_pseudo_manifest(pseudo)
    assert {k: v for k, v in rewritten.items() if k != "summary"} == {
        k: v for k, v in manifest.items() if k != "summary"
    }
    assert rewritten["summary"] == pytest.approx(manifest["summary"], abs=1e-4)


def test_checkpoints_that_do_not_say_what_they_trained_on_count_as_all_labels(tmp_path: Path) -> None:
    labeled = OpenEDSIndex.from_dir(
        write_tiny_dataset(tmp_path / "data", sequences=2, frames=3)
    ).labeled_keys()
    assert trained_on_union([["S_5/1"], None], labeled) == sorted({"S_5/1", *labeled})
    assert trained_on_union([["S_1/1"], ["S_0/1", "S_1/1"]], labeled) == ["S_0/1", "S_1/1"]
