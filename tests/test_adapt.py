"""adapt.py: frames picked evenly and fitted as segment.py fits them, BatchNorm statistics of the new
frames, pseudo-labels that ignore the padding, rounds on a rendered video ending in a checkpoint the
engine takes, and bad input refused with one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY, error_line, run_script, tiny_checkpoint

import adapt
from config.schema import load_config
from dataset.synthetic.video import write_eye_video
from inference.segmenter import Segmenter, place_in_model_frame
from models.checkpoint import load_checkpoint
from models.zoo import build_model
from training.adapt import (
    AdaptSettings,
    Labelling,
    class_thresholds,
    fine_tune,
    labelling_stats,
    load_init,
    pseudo_targets,
    read_frames,
    reestimate_batchnorm,
    round_frames,
)

STEP_FIELDS = {"confident_share", "agreement", "class_shares", "label_class_shares", "seconds"}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 rendered frames at 4:3, so they sit on the 640 x 400 canvas with padding left and right."""
    path = tmp_path_factory.mktemp("video") / "eye.mp4"
    write_eye_video(path, frames=8, size=(160, 120))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", [], seed=0, trained_on=["S_0/1"])


def test_frames_are_picked_evenly_and_placed_as_segment_places_them(tmp_path: Path, video: Path) -> None:
    rng = np.random.default_rng(0)
    originals = {}
    for n in range(10):  # two sizes: 1.6 aspect (a plain resize) and 4:3 (padded)
        image = rng.integers(0, 256, (200, 320) if n % 2 else (120, 160), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"{n}.png"), image)
        originals[str(n)] = image
    frames = read_frames(tmp_path, max_frames=4)
    assert frames.names == ["0", "3", "6", "9"] and frames.available == 10
    for name, canvas, inside in zip(frames.names, frames.images, frames.inside, strict=True):
        expected, box = place_in_model_frame(originals[name])
        assert np.array_equal(canvas, expected)
        assert inside.sum() == box.width * box.height and inside[box.y, box.x]
    assert (
        frames.inside[1].all() and not frames.inside[0].all()
    )  # 320 x 200 fills the canvas; 160 x 120 does not
    assert read_frames(video, max_frames=3).names == ["000000", "000004", "000007"]  # first, middle, last


def test_a_video_shorter_than_its_header_is_picked_among_the_frames_it_holds(tmp_path: Path) -> None:
    video = tmp_path / "eye.avi"
    write_eye_video(video, frames=8, size=(160, 120))
    video.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 2])  # the AVI header still says 8
    frames = read_frames(video, max_frames=3)
    held = frames.available
    assert 0 < held < 8
    assert frames.names == [f"{round(i):06d}" for i in np.linspace(0, held - 1, min(3, held))]


def test_batchnorm_statistics_become_those_of_the_new_frames(video: Path) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(TINY), pretrained=False).eval()
    images = read_frames(video, max_frames=4).images
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in layers]
    moved = reestimate_batchnorm(model, images, batch_size=len(images), device=torch.device("cpu"))
    assert moved["layers"] == len(layers) > 0 and moved["mean_shift"] > 0
    assert all(not torch.equal(m.running_mean, old) for m, old in zip(layers, before, strict=True))
    assert not model.training and all(m.momentum == 0.1 for m in layers)  # mode and momentum restored
    # One batch of every frame: each layer's running statistics are what its input has in a
    # train-mode pass over that batch (the mean, and the unbiased variance), read by hooks.
    seen = {}

    def record(layer: torch.nn.Module, args: tuple[torch.Tensor], _: torch.Tensor) -> None:
        seen[layer] = (args[0].mean((0, 2, 3)), args[0].var((0, 2, 3)))

    for layer in layers:
        layer.register_forward_hook(record)
        layer.momentum = 0.0  # this pass leaves the statistics as they are
    with torch.no_grad():
        model.train()(torch.from_numpy(images)[:, None])
    for layer in layers:
        assert torch.allclose(layer.running_mean, seen[layer][0], atol=1e-5)
        assert torch.allclose(layer.running_var, seen[layer][1], rtol=1e-4, atol=1e-6)


def test_blended_batchnorm_statistics_are_the_mixture_of_old_and_new(video: Path) -> None:
    torch.manual_seed(0)
    model = build_model(load_config(TINY), pretrained=False).eval()
    images = read_frames(video, max_frames=4).images
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for layer in layers:  # statistics unlike the frames', so the mixture differs from both
        layer.running_mean.fill_(0.5)
        layer.running_var.fill_(2.0)
    new = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = build_model(load_config(TINY), pretrained=False).eval()
    fresh.load_state_dict(new)
    reestimate_batchnorm(fresh, images, batch_size=len(images), device=torch.device("cpu"))
    reestimate_batchnorm(model, images, batch_size=len(images), device=torch.device("cpu"), blend=0.25)
    fresh_layers = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for mixed, full in zip(layers, fresh_layers, strict=True):
        mean, var = full.running_mean, full.running_var
        assert torch.allclose(mixed.running_mean, 0.25 * mean + 0.75 * 0.5, atol=1e-6)
        expected = 0.25 * var + 0.75 * 2.0 + 0.25 * 0.75 * (mean - 0.5) ** 2
        assert torch.allclose(mixed.running_var, expected, rtol=1e-5, atol=1e-6)


def test_class_balanced_thresholds_keep_a_share_of_every_class() -> None:
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 4, (2, 50, 60), dtype=np.uint8)
    confidence = np.where(
        classes == 3, rng.uniform(0.4, 0.8, classes.shape), rng.uniform(0.9, 1.0, classes.shape)
    )
    inside = np.ones(classes.shape, bool)
    plain = class_thresholds(classes, confidence, inside, 0.9, 0.0, 4)
    assert plain == [0.9] * 4  # no pupil pixel reaches 0.9: a global threshold labels none
    balanced = class_thresholds(classes, confidence, inside, 0.9, 0.5, 4)
    assert balanced[:3] == [0.9] * 3  # the confident classes keep the global threshold
    kept = (confidence[classes == 3] >= balanced[3]).mean()
    assert 0.49 <= kept <= 0.51 and balanced[3] < 0.9


def test_pseudo_labels_keep_confident_frame_pixels_and_ignore_the_padding() -> None:
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, (2, 400, 640), dtype=np.uint8)
    confident = rng.random((2, 400, 640)) < 0.7
    inside = np.zeros((2, 400, 640), bool)
    inside[:, :, 54:587] = True  # a 4:3 frame: 533 columns, padding left and right
    targets = pseudo_targets(Labelling(classes, confident), inside)
    assert (targets[~inside] == 255).all()
    assert np.array_equal(targets[inside & confident], classes[inside & confident])
    assert (targets[inside & ~confident] == 255).all()
    previous = Labelling(np.where(rng.random((2, 400, 640)) < 0.2, 0, classes).astype(np.uint8), confident)
    stats = labelling_stats(Labelling(classes, confident), inside, previous, 4)
    assert stats["confident_share"] == round(confident[inside].mean(), 4)
    assert stats["agreement"] == round((classes == previous.classes)[inside].mean(), 4)
    assert list(stats["class_shares"]) == ["background", "sclera", "iris", "pupil"]
    assert stats["class_shares"]["pupil"] == round((classes[inside] == 3).mean(), 4)


def test_fine_tuning_moves_the_weights_and_keeps_the_batchnorm_statistics(video: Path) -> None:
    torch.manual_seed(0)
    config = load_config(TINY)
    model = build_model(config, pretrained=False)
    images = read_frames(video, max_frames=2).images
    targets = np.where(images > 100, 1, 0).astype(np.uint8)
    targets[:, :, :50] = 255
    before = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    losses = fine_tune(
        model, config, images, targets, AdaptSettings(epochs=1, replay=0), 1, torch.device("cpu"), None, False
    )
    assert len(losses) == 1 and np.isfinite(losses[0])
    after = model.state_dict()
    stats = [key for key in before if key.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[key], before[key]) for key in stats)
    assert not torch.equal(after["net.segmentation_head.0.weight"], before["net.segmentation_head.0.weight"])
    # with rendered frames of the known cameras mixed in: an epoch holds both, the rendered ones
    # with their exact labels (no ignored pixel, every class of an open eye)
    frames = round_frames(images, targets, replay=2, seed=5)
    assert len(frames) == 4 and np.array_equal(frames[0]["mask"].numpy(), targets[0])
    assert 255 not in frames[3]["mask"] and frames[3]["name"].startswith("rendered/")
    # tones matched to bright new frames: the rendered frame moves toward them, its label stays
    bright = np.full_like(images, 220)
    matched = round_frames(bright, targets, replay=2, seed=5, match="histogram")
    as_rendered = round_frames(bright, targets, replay=2, seed=5)
    assert matched[3]["image"].float().mean() > as_rendered[3]["image"].float().mean() + 50
    assert torch.equal(matched[3]["mask"], as_rendered[3]["mask"])
    replay = AdaptSettings(epochs=1, replay=2)
    losses = fine_tune(model, config, images, targets, replay, 1, torch.device("cpu"), None, False)
    assert len(losses) == 1 and np.isfinite(losses[0])


def test_fp16_release_file_is_taken_as_init(tmp_path: Path, checkpoint: Path) -> None:
    payload = load_checkpoint(checkpoint)
    half = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
    torch.save({"model": half, "config": payload["config"], "trained_on": []}, tmp_path / "default.pt")
    init = load_init(tmp_path / "default.pt")
    assert init.trained_on == [] and next(init.model.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_adapt_end_to_end_writes_a_checkpoint_the_engine_takes(
    tmp_path: Path, video: Path, checkpoint: Path
) -> None:
    out = tmp_path / "run"
    # threshold 0.25: every pixel of a 4-class softmax is confident, so every share is exact
    proc = run_script(
        "adapt.py", "--init", checkpoint, "--input", video, "--out", out,
        "--rounds", 2, "--epochs", 1, "--max-frames", 6, "--threshold", 0.25, "--replay", 2,
    )  # fmt: skip
    assert "round 2/2" in proc.stdout and "adapted.pt" in proc.stdout
    report = json.loads((out / "adapt.json").read_text())
    assert report["finished"] and report["frames"] == 6 and report["available_frames"] == 8
    assert set(report["before"]) >= STEP_FIELDS and report["before"]["agreement"] is None
    assert set(report["batchnorm"]) >= STEP_FIELDS and report["batchnorm"]["layers"] > 0
    assert report["settings"]["replay"] == 2 and report["settings"]["bn_blend"] == AdaptSettings().bn_blend
    assert [entry["round"] for entry in report["rounds"]] == [1, 2]
    for entry in report["rounds"]:
        assert set(entry) >= STEP_FIELDS and len(entry["losses"]) == 1
        assert entry["confident_share"] == 1.0 and 0.0 <= entry["agreement"] <= 1.0
        assert entry["label_class_shares"] == entry["class_shares"]
        assert sum(entry["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)

    adapted, init = load_checkpoint(out / "adapted.pt"), load_checkpoint(checkpoint)
    assert (
        adapted["trained_on"] == ["S_0/1"] and adapted["epoch"] == 2 and adapted["config"] == init["config"]
    )
    changed = [key for key, tensor in init["model"].items() if not torch.equal(adapted["model"][key], tensor)]
    assert any(key.endswith("running_mean") for key in changed) and any(
        key.endswith(".weight") for key in changed
    )
    segmenter = Segmenter.from_checkpoints([out / "adapted.pt"], gpu="cpu")
    result = segmenter(np.full((120, 160), 90, np.uint8))
    assert result.mask.shape == (120, 160)


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing init", "checkpoint not found"),
        ("not a checkpoint", "not a checkpoint"),
        ("onnx", "exported graph"),
        ("unreadable video", "cannot open the video"),
        ("camera", "not a camera"),
        ("out holds a run", "holds another run"),
        ("threshold", "--threshold"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, video: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str], case: str, needle: str
) -> None:
    init, source, out, extra = checkpoint, str(video), tmp_path / "run", []
    if case == "missing init":
        init = tmp_path / "nowhere.pt"
    elif case == "not a checkpoint":
        init = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(2)}, init)
    elif case == "onnx":
        init = tmp_path / "model.onnx"
        init.write_bytes(b"onnx")
    elif case == "unreadable video":
        source = str(tmp_path / "broken.mp4")
        Path(source).write_bytes(b"\x00not a video" * 100)
    elif case == "camera":
        source = "0"
    elif case == "out holds a run":
        out.mkdir()
        (out / "best.pt").write_bytes(b"")
    else:
        extra = ["--threshold", "1.5"]
    line = error_line(adapt.main, ["--init", init, "--input", source, "--out", out, *extra], capsys)
    assert needle in line
    if case != "out holds a run":
        assert not out.exists()
    else:
        assert sorted(p.name for p in out.iterdir()) == ["best.pt"]
    named = {
        "missing init": init,
        "not a checkpoint": init,
        "onnx": init,
        "unreadable video": source,
        "out holds a run": out,
    }
    if case in named:
        assert str(named[case]) in line
