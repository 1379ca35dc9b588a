"""Renderer camera styles (dataset/synthetic/style.py): labels stay exact under each randomisation,
the rendered training stream, and the epoch sampler's fresh frames."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, error_line

from dataset.synthetic import EyeSequence, generate
from dataset.synthetic.cli import main as synthetic_main
from dataset.synthetic.stream import RenderedFrames
from dataset.synthetic.style import (
    CAMERA_KNOBS,
    REAL_STYLES,
    STYLES,
    Style,
    knob_docs,
    parse_styles,
    style_for,
    style_table,
)
from evaluation.measure import measure_eye
from training.data import EpochSampler
from utils.errors import InputError


@pytest.mark.parametrize("name", REAL_STYLES)
def test_styles_render_valid_frames(name: str) -> None:
    """Every style gives 640 x 400 uint8 frames whose labels hold 0..3 and show an eye in most frames."""
    with_eye = 0
    for index in range(6):
        image, label = EyeSequence(5, index, 8, name).render(index % 8)
        assert image.shape == label.shape == (400, 640) and image.dtype == label.dtype == np.uint8
        assert label.max() <= 3
        with_eye += bool((label == 2).any())
    assert with_eye >= 3


def test_letterbox_bars_are_black_and_background() -> None:
    """A 4:3 camera sits centred in 640 x 400 with black bars labelled background, as segment.py places it."""
    style = dataclasses.replace(STYLES["closeup"], aspect=(4 / 3,), black_p=0.0)
    sequence = EyeSequence(0, 3, 8, style)
    x0, y0, w, h = sequence.camera_box
    assert (x0, y0, w, h) == (53, 0, 533, 400)
    image, label = sequence.render(2)
    for bar in (np.s_[:, :x0], np.s_[:, x0 + w :]):
        assert image[bar].max() == 0 and label[bar].max() == 0
    assert image[:, x0 : x0 + w].mean() > 10


def test_black_frames_are_labelled_background() -> None:
    """The illumination off: a dark frame and no eye in its label."""
    style = dataclasses.replace(STYLES["headset"], black_p=1.0)
    image, label = EyeSequence(0, 1, 8, style).render(0)
    assert image.max() < 8 and label.max() == 0


def test_rolled_labels_match_the_rolled_ellipses() -> None:
    """Under a camera roll, the ellipse fitted to the label's pupil is the renderer's exact ellipse,
    as closely as without a roll (a pupil cut by a lid is off either way)."""
    errors = {}
    for roll in ((0, 0), (20, 25)):
        style = dataclasses.replace(
            STYLES["headset"], roll_deg=roll, openness=(1.0, 1.0), black_p=0.0, occluder_p=0.0
        )
        for index in range(10):
            sequence = EyeSequence(2, index, 8, style)
            fitted = measure_eye(sequence.render(0)[1]).pupil
            if fitted is not None:
                cx, cy, major, _, _ = sequence.ellipses(0)["pupil"]
                errors.setdefault(index, []).append(
                    (math.hypot(fitted.cx - cx, fitted.cy - cy), fitted.major - major)
                )
    # Pupils whose unrolled fit is off (a lid cuts them) are left out.
    pairs = [e for e in errors.values() if len(e) == 2 and e[0][0] < 0.5]
    assert len(pairs) >= 6
    for (centre, major), (centre_rolled, major_rolled) in pairs:
        assert abs(centre_rolled - centre) < 0.3 and abs(major_rolled - major) < 0.6
    assert np.median([rolled[0] for _, rolled in pairs]) < 0.2


def test_rendered_stream_is_deterministic_and_fresh() -> None:
    frames = RenderedFrames(["headset", "closeup"], length=6, seed=3)
    first, again, other = frames[4], RenderedFrames(["headset", "closeup"], 6, seed=3)[4], frames[5]
    assert (
        len(frames) == 6 and first["name"] == "rendered/headset/4" and other["name"] == "rendered/closeup/5"
    )
    assert first["image"].shape == (1, 400, 640) and first["mask"].shape == (400, 640)
    assert np.array_equal(first["image"].numpy(), again["image"].numpy())
    assert not np.array_equal(first["image"].numpy(), frames[2]["image"].numpy())


def test_epoch_sampler_draws_new_fresh_frames_every_epoch() -> None:
    sampler = EpochSampler(n_real=5, n_pseudo=0, share=0.0, seed=0, fresh=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = [index for _, index in sampler]
        assert len(indices) == len(sampler) == 12
        assert sorted(i for i in indices if i < 5) == list(range(5))  # every label, every epoch
        epochs.append({i for i in indices if i >= 5})
    assert epochs[0] == set(range(5, 12)) and epochs[1] == set(range(12, 19)) and not epochs[0] & epochs[2]


def test_generator_writes_styles_in_turn(tmp_path: Path) -> None:
    summary = generate(
        tmp_path / "d", sequences=2, frames=4, label_every=2, test_per_sequence=0, styles="headset,remote"
    )
    assert summary["styles"] == ["headset", "remote"]
    image = cv2.imread(str(tmp_path / "d" / "S_1" / "0.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(image, EyeSequence(0, 1, 4, "remote").render(0)[0])


def test_style_names_and_the_knob_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_styles("real") == REAL_STYLES and parse_styles(["classic", "closeup"]) == (
        "classic",
        "closeup",
    )
    with pytest.raises(InputError, match="unknown renderer style 'nope'"):
        parse_styles("headset,nope")
    table = style_table()
    assert set(knob_docs()) == {f.name for f in dataclasses.fields(Style)} - {"name"}  # every knob documented
    synthetic_main(["--list-styles"])
    assert "| `glints` | corneal glints of the LEDs, count | 8 .. 12 | 8 .. 16 |" in capsys.readouterr().out
    # docs/synthetic-styles.md holds the table as the code has it
    assert table in (ROOT / "docs" / "synthetic-styles.md").read_text()
    assert "renderer style 'bogus'" in error_line(synthetic_main, ["--out", "x", "--style", "bogus"], capsys)


def test_one_camera_fixes_the_camera_and_leaves_the_people_to_vary() -> None:
    camera = style_for("oblique@1")
    base = STYLES["oblique"]
    assert camera.name == "oblique@1" and style_for("oblique@1") == camera  # the same camera every time
    for knob in CAMERA_KNOBS:
        value, ranged = getattr(camera, knob), getattr(base, knob)
        if knob == "aspect":
            assert len(value) == 1 and value[0] in ranged
        else:
            assert value[0] == value[1] and ranged[0] <= value[0] <= ranged[1]
    people = {f.name for f in dataclasses.fields(Style)} - set(CAMERA_KNOBS) - {"name"}
    assert all(getattr(camera, knob) == getattr(base, knob) for knob in people)
    assert style_for("oblique@2") != camera
    assert "oblique" not in REAL_STYLES  # the camera the default model never saw
    # two people in front of one camera: the letterbox (aspect) and rows are the camera's
    first, second = (EyeSequence(3, i, 1, "oblique@1").render(0)[0] for i in (0, 1))
    assert ((first == 0).all(axis=0) == (second == 0).all(axis=0)).all()
    assert parse_styles("oblique@1,headset") == ("oblique@1", "headset")
    for bad in ("oblique@x", "classic@1", "nope@1"):
        with pytest.raises(InputError, match="unknown renderer style"):
            style_for(bad)
