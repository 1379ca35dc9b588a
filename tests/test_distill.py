"""Distillation: the KL term, the teacher cache (predict_ensemble.py --probs-dir), train.py --teacher
under the leakage rule, the distill.* config keys and the student config's parameter budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, run_script, tiny_checkpoint, write_tiny_dataset

from config.schema import load_config
from dataset.create_kfolds import main as create_kfolds_main
from dataset.openeds import image_relpath, parse_sample_name, read_image, read_sample_list
from inference.engine import EnsemblePredictor
from inference.teacher import probs_relpath, read_teacher_manifest
from models.checkpoint import load_checkpoint, model_from_checkpoint
from models.zoo import build_model
from training.distill import PROB_FLOOR, distillation_loss, load_teacher
from training.loop import _distilled_loss
from training.resume import config_changes
from utils.errors import InputError


def _soft(probs: torch.Tensor) -> torch.Tensor:
    return (probs * 255).round().to(torch.uint8)


def _kl_by_hand(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> float:
    """The documented term from its definition, in float64 numpy: T^2 * mean KL(p^(1/T)/Z || softmax(z/T))."""
    p = np.maximum(soft.double().numpy() / 255.0, PROB_FLOOR) ** (1 / temperature)
    p /= p.sum(axis=1, keepdims=True)
    z = logits.double().numpy() / temperature
    log_q = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    return float((p * (np.log(p) - log_q)).sum(1).mean() * temperature**2)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_term_matches_its_definition_at_every_temperature(temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, 8, generator=generator) * 3
    soft = _soft(torch.randn(2, 4, 6, 8, generator=generator).mul(4).softmax(1))
    loss = distillation_loss(logits, soft, temperature)
    assert loss.item() == pytest.approx(_kl_by_hand(logits, soft, temperature), rel=1e-5)


def test_kl_term_is_zero_when_the_student_equals_the_teacher_and_resizes_targets() -> None:
    probs = torch.tensor([0.7, 0.2, 0.06, 0.04]).view(1, 4, 1, 1).expand(1, 4, 8, 12)
    soft = _soft(probs)
    logits = (soft.float() / 255).clamp_min(PROB_FLOOR).log()[..., ::2, ::2]  # student at half resolution
    assert distillation_loss(logits, soft, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.zeros_like(logits), soft, 2.0).item() > 0.1


def test_kl_term_ignores_pixels_an_augmentation_moved_in() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 4, 4, 8, generator=generator)
    soft = _soft(torch.randn(1, 4, 4, 8, generator=generator).softmax(1))
    padded = soft.clone()
    padded[..., 4:] = 0  # no probabilities there (Affine's fill)
    expected = _kl_by_hand(logits[..., :4], soft[..., :4], 2.0)
    assert distillation_loss(logits, padded, 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_labelled_frames_get_the_label_loss_only_and_teacher_frames_the_kl_only() -> None:
    settings = load_config(TINY, ["distill.weight=0.5", "distill.temperature=2"]).distill
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 4, 6, 8, generator=generator)
    masks = torch.randint(0, 4, (4, 6, 8), generator=generator)
    soft = _soft(torch.randn(4, 4, 6, 8, generator=generator).softmax(1))
    taught = torch.tensor([False, True, False, True])
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    loss = _distilled_loss(criterion, logits, masks, soft, taught, settings)
    expected = 0.5 * criterion(logits[~taught], masks[~taught]) + 0.5 * 0.5 * distillation_loss(
        logits[taught], soft[taught], 2.0
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # The teacher's targets of labelled frames and the masks of teacher frames are never read.
    other_soft, other_masks = soft.clone(), masks.clone()
    other_soft[~taught] = 0
    other_masks[taught] = 255
    assert _distilled_loss(criterion, logits, other_masks, other_soft, taught, settings).item() == loss.item()


def test_label_weight_adds_the_label_loss_on_the_teachers_argmax() -> None:
    settings = load_config(TINY, ["distill.label_weight=0.7", "distill.temperature=2"]).distill
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 6, 8, generator=generator)
    soft = _soft(torch.randn(2, 4, 12, 16, generator=generator).mul(3).softmax(1))  # the teacher at full size
    soft[1, :, :, 8:] = 0  # moved in by an augmentation: no label there
    taught = torch.tensor([True, True])
    masks = torch.full((2, 6, 8), 255)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    # The teacher's argmax at the student's size, by hand: 2x2 means of the probabilities.
    pooled = soft.float().view(2, 4, 6, 2, 8, 2).mean(dim=(3, 5))
    hard = pooled.argmax(1).masked_fill(pooled.sum(1) <= 127.5, 255)
    assert (hard[1, :, 4:] == 255).all() and (hard[0] != 255).all()
    expected = distillation_loss(logits, soft, 2.0) + 0.7 * criterion(logits, hard)
    loss = _distilled_loss(criterion, logits, masks, soft, taught, settings)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("distill.temprature=2", "distill.temprature"),
        ("distill.temperature=0", "distill.temperature"),
        ("distill.share=1", "distill.share"),
        ("distill.weight=-1", "distill.weight"),
        ("distill.label_weight=-1", "distill.label_weight"),
    ],
)
def test_bad_distill_keys_are_refused_naming_the_key(override: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle.replace(".", r"\.")):
        load_config(TINY, [override])


def test_a_checkpoint_from_before_the_distill_keys_resumes_with_their_defaults() -> None:
    config = load_config(TINY)
    saved = config.model_dump(mode="json")
    del saved["distill"]
    assert config_changes(saved, config) == ""
    changed = load_config(TINY, ["distill.weight=2"])
    assert config_changes(saved, changed) == "distill.weight: 1.0 -> 2.0"


def test_student_config_fits_the_parameter_budget() -> None:
    config = load_config(ROOT / "configs" / "student.yaml", ["encoder_weights=null"])
    model = build_model(config)
    assert sum(param.numel() for param in model.parameters()) <= 500_000
    assert model(torch.zeros(1, 1, 400, 640, dtype=torch.uint8)).shape == (1, 4, 400, 640)


def _teacher_folder(root: Path, keys: list[str], trained_on: list[str]) -> Path:
    root.mkdir(parents=True)
    manifest = {"keys": keys, "trained_on": trained_on, "checkpoints": [], "tta": "none", "num_classes": 4}
    (root / "teacher.json").write_text(json.dumps(manifest))
    return root


def test_leakage_rule_drops_sequences_whose_val_labels_the_teacher_saw(tmp_path: Path) -> None:
    keys = ["S_0/0", "S_0/2", "S_1/0", "S_2/0", "S_2/1"]
    teacher = _teacher_folder(tmp_path / "t", keys, trained_on=["S_0/1", "S_2/4"])
    val = ["S_0/1", "S_1/1"]  # S_0/1 the teacher saw: S_0 is out; S_1/1 it did not: S_1 stays
    loaded = load_teacher(teacher, val, labeled={"S_2/1"}, num_classes=4)
    assert loaded.keys == ["S_1/0", "S_2/0"]  # S_2/1 is a labelled frame: it trains on its label
    assert (loaded.dropped, loaded.trained_on) == (2, ["S_0/1", "S_2/4"])
    leaky = _teacher_folder(tmp_path / "leaky", ["S_0/0", "S_2/0"], trained_on=["S_0/1", "S_2/4"])
    with pytest.raises(InputError, match="leakage: .* every sequence its 2 frames come from .2 sequences"):
        load_teacher(leaky, ["S_0/1", "S_2/4"], labeled=set(), num_classes=4)
    with pytest.raises(InputError, match="predicts 4 classes, the student's config 3"):
        load_teacher(teacher, val, labeled=set(), num_classes=3)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A teacher cached by predict_ensemble.py --probs-dir, and students trained on it (by folder and by YAML)."""
    root = tmp_path_factory.mktemp("distill")
    data = write_tiny_dataset(root / "data")
    folds = root / "folds"
    create_kfolds_main(["--data-dir", str(data), "--folds", "2", "--by", "sequence", "--out-dir", str(folds)])
    train, val = (read_sample_list(folds / f"fold_0_{part}.txt") for part in ("train", "val"))
    # The teacher saw every label: the fold's validation sequences must be left out.
    teacher_ckpt = tiny_checkpoint(root / "teacher.pt", [], 3, sorted(train + val))
    unlabeled = read_sample_list(folds / "unlabeled.txt")
    run_script("predict_ensemble.py", "--data-dir", data, "--label-file", folds / "unlabeled.txt",
               "--probs-dir", root / "teacher", "--checkpoints", teacher_ckpt, "--tta", "none", "--workers", 0)  # fmt: skip
    common = ["--config", TINY, "--data-dir", data, "--folds-dir", folds, "--fold", 0, "--epochs", 1]
    by_folder = run_script("train.py", *common, "--output-dir", root / "a", "--teacher", root / "teacher")
    ensemble = root / "teacher.yaml"
    ensemble.write_text(f"tta: none\nmembers:\n  - {{checkpoint: {teacher_ckpt}, weight: 1.0}}\n")
    by_yaml = run_script("train.py", *common, "--output-dir", root / "b", "--teacher", ensemble)
    val_sequences = {parse_sample_name(key)[0] for key in val}
    allowed = [key for key in unlabeled if parse_sample_name(key)[0] not in val_sequences]
    return {
        "data": data, "root": root, "teacher_ckpt": teacher_ckpt, "unlabeled": unlabeled, "allowed": allowed,
        "by_folder": by_folder, "by_yaml": by_yaml, "trained_on": sorted(train + val),
    }  # fmt: skip


@pytest.mark.slow
def test_probs_dir_holds_the_engines_probabilities_in_uint8(distilled: dict) -> None:
    teacher, data = distilled["root"] / "teacher", distilled["data"]
    manifest = read_teacher_manifest(teacher)
    assert manifest["keys"] == distilled["unlabeled"] and manifest["num_classes"] == 4
    assert manifest["trained_on"] == distilled["trained_on"]
    model, _, _ = model_from_checkpoint(distilled["teacher_ckpt"])
    key = distilled["unlabeled"][0]
    frame = torch.from_numpy(read_image(data / image_relpath(key)))[None, None]
    expected = EnsemblePredictor([(model, 1.0)], tta="none").probabilities(frame)[0]
    stored = np.load(teacher / probs_relpath(key))["probs"]
    assert stored.dtype == np.uint8 and stored.shape == (4, 400, 640)
    assert np.abs(stored.astype(np.float64) / 255 - expected.double().numpy()).max() <= 0.5 / 255 + 1e-6


@pytest.mark.slow
def test_train_with_a_teacher_folder_distils_on_the_leak_free_frames_only(distilled: dict) -> None:
    allowed, unlabeled = distilled["allowed"], distilled["unlabeled"]
    assert 0 < len(allowed) < len(unlabeled)
    line = f"{len(allowed)} frames to distil on ({len(unlabeled) - len(allowed)} dropped by the leakage rule)"
    assert line in distilled["by_folder"].stdout
    payload = load_checkpoint(distilled["root"] / "a" / "tiny" / "fold_0" / "last.pt")
    # The student learnt second-hand what the teacher learnt: its trained_on says so.
    assert payload["trained_on"] == distilled["trained_on"]
    assert payload["config"]["distill"] == {
        "share": 0.5,
        "weight": 1.0,
        "temperature": 1.0,
        "label_weight": 0.0,
    }


@pytest.mark.slow
def test_train_with_an_ensemble_yaml_caches_only_the_allowed_frames_first(distilled: dict) -> None:
    cache = distilled["root"] / "b" / "tiny" / "teacher_fold_0"
    assert read_teacher_manifest(cache)["keys"] == distilled["allowed"]
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.npz")) == sorted(
        probs_relpath(key) for key in distilled["allowed"]
    )
    assert f"{len(distilled['allowed'])} frames to distil on (0 dropped" in distilled["by_yaml"].stdout
    a = load_checkpoint(distilled["root"] / "a" / "tiny" / "fold_0" / "last.pt")["model"]
    b = load_checkpoint(distilled["root"] / "b" / "tiny" / "fold_0" / "last.pt")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)  # the same frames, targets and seed


def test_student_config_loads_and_sets_the_distill_keys() -> None:
    config = load_config(ROOT / "configs" / "student.yaml")
    assert (config.network, config.in_channels, config.num_classes) == ("unet", 1, 4)
    assert config.distill.temperature > 0 and 0 < config.distill.share < 1


@pytest.mark.slow
def test_make_student_pipeline_scores_teacher_and_both_students(tmp_path: Path) -> None:
    """scripts/student.py end to end on a small synthetic set: tiny config, a random-init tiny teacher."""
    data = tmp_path / "data"
    run_script("-m", "dataset.synthetic", "--out", data, "--sequences", 4, "--frames", 12, "--label-every", 3,
               "--test-per-sequence", 2, "--workers", 1)  # fmt: skip
    labels = read_sample_list(data / "labels.txt")
    teacher = [tiny_checkpoint(tmp_path / f"t{seed}.pt", [], seed, labels) for seed in (0, 1)]
    out = tmp_path / "student"
    proc = run_script("-m", "scripts.student", "--out", out, "--data-dir", data, "--config", TINY, "--folds", 2,
                      "--teacher-checkpoints", *teacher, timeout=900)  # fmt: skip
    for name in ("teacher", "distilled", "labels-only"):
        assert json.loads((out / "metrics" / f"{name}.json").read_text())["n_images"] == 8, name
    # Same compute: the labels-only student ran epochs / (1 - distill.share) epochs.
    epochs = load_config(TINY).optimizer.schedule.epochs
    assert load_checkpoint(out / "runs" / "student_labels" / "fold_0" / "last.pt")["epoch"] == 2 * epochs
    summary = proc.stdout.split("OpenEDS-Seg student summary", 1)[1]
    assert (
        "teacher ensemble" in summary and "distilled student" in summary and "labels-only student" in summary
    )
    assert "distilled - teacher" in summary and "(target: within 0.01)" in summary
    # The distilled student, exported alone, segments a synthetic video through onnxruntime.
    segmented = json.loads((out / "segment" / "summary.json").read_text())
    assert segmented["frames"] == 200 and segmented["frames_per_s"] > 0
    assert (out / "segment" / "pupil.png").is_file() and "segment.py with student.onnx" in summary
    assert json.loads((out / "student.json").read_text())["tta"] == "none"
