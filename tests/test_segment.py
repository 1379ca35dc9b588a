"""segment.py and its parts: measurements against the renderer's exact geometry, the geometry of
frames of any size, the Segmenter API against the engine, and end to end on videos and folders
(bad images, broken and unreadable videos) with a tiny model."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, error_line, tiny_checkpoint

import predict_ensemble
import segment
from config.ensemble import spec_from_checkpoints
from dataset.synthetic.render import EyeSequence
from dataset.synthetic.video import VideoGeometry, blinking_sequence, write_eye_video
from evaluation.blinks import BlinkTracker, Span, blinks, parse_span
from evaluation.measure import CSV_COLUMNS, PUPIL_CONFIDENCE_THRESHOLD, measure_eye
from evaluation.smoothing import PupilSmoother
from inference.engine import DEFAULT_MIN_AREA, EnsemblePredictor, min_area_per_class
from inference.frames import FrameSource, open_frames, read_any_image
from inference.members import load_members
from inference.segment_run import MeasureOptions
from inference.segmenter import Placement, Segmenter, place_in_model_frame
from utils.errors import InputError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("segment") / "tiny.pt", [], seed=0, trained_on=[])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- measurements ---------------------------------------------------------------------------------


def _visible_share(measured_area: int, ellipse: tuple[float, ...]) -> float:
    return measured_area / (math.pi * ellipse[2] * ellipse[3] / 4)


def test_measurements_of_true_masks_match_the_rendered_ellipses() -> None:
    """Centres within a fraction of a pixel and diameters within 1% of the renderer's geometry,
    for whole pupils and irises and for ones the lids half cover; none of them refused."""
    errors: dict[str, list[tuple[float, float, float, float]]] = {"whole": [], "covered": []}
    for index in range(3):
        sequence = EyeSequence(seed=0, index=index, frames=20)
        for n in range(20):
            label = sequence.render(n, glints=False, lashes=False)[1]
            measured = measure_eye(label)
            truth = sequence.ellipses(n)
            for fit, area, true in (
                (measured.pupil, measured.pupil_area, truth["pupil"]),
                (measured.iris, measured.pupil_area + measured.iris_area, truth["iris"]),
            ):
                share = _visible_share(area, true)
                if share < 0.5:
                    continue
                assert fit is not None  # never refused while half of it shows
                angle = abs((fit.angle - true[4] + 90) % 180 - 90) if true[2] > 1.1 * true[3] else 0.0
                errors["whole" if share > 0.98 else "covered"].append(
                    (
                        math.hypot(fit.cx - true[0], fit.cy - true[1]),
                        fit.major / true[2] - 1,
                        fit.minor / true[3] - 1,
                        angle,
                    )
                )
    whole, covered = np.array(errors["whole"]), np.array(errors["covered"])
    assert len(whole) > 10 and len(covered) > 10
    assert whole[:, 0].max() < 0.2 and np.abs(whole[:, 1:3]).max() < 0.01 and whole[:, 3].max() < 3
    assert np.median(covered[:, 0]) < 0.3 and np.median(np.abs(covered[:, 1:3])) < 0.01


def _impossible(cx: float, cy: float, major: float, shape: tuple[int, ...]) -> bool:
    """The issue's impossible ellipse: longer than the frame's diagonal or centred outside the frame."""
    height, width = shape
    return major > math.hypot(height, width) or not (0 <= cx < width and 0 <= cy < height)


def _arc_fit(label: np.ndarray) -> tuple[float, float, float] | None:
    """cv2.fitEllipse of the pupil outline points not next to the lid (class 0): what a fit without checks gives."""
    pupil = (label == 3).astype(np.uint8)
    outline = max(cv2.findContours(pupil, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=len).reshape(
        -1, 2
    )
    lid = cv2.dilate((label == 0).astype(np.uint8), np.ones((3, 3), np.uint8))
    arc = outline[lid[outline[:, 1], outline[:, 0]] == 0]
    if len(arc) < 5:
        return None
    (cx, cy), axes, _ = cv2.fitEllipse(arc.astype(np.float32))
    return cx, cy, max(axes)


def test_a_lid_that_leaves_a_small_arc_gives_no_impossible_ellipse() -> None:
    """A straight lid edge lowered over a 320 x 200 pupil: a plain fit to the arc left below it blows
    up (centre far outside the frame, axes longer than its diagonal); measure_eye refuses such fits,
    and every ellipse it gives stays within the true pupil (the renderer's) grown by 10%."""
    geometry, sequence = VideoGeometry((320, 200)), EyeSequence(seed=0, index=0, frames=20)
    label = geometry.label(sequence.render(19, glints=False, lashes=False)[1])
    cx, cy, major, minor, angle = geometry.ellipse(sequence.ellipses(19)["pupil"])
    ys, xs = np.mgrid[0:200, 0:320]
    blown, refused = 0, 0
    for slope in (0.0, 0.1, -0.15):
        for depth in np.arange(0.0, major / 2, 0.5):
            cut = label.copy()
            cut[ys < cy + depth + slope * (xs - cx)] = 0  # the lid (skin: background) above the edge
            if (cut == 3).sum() < 5:
                continue
            plain = _arc_fit(cut)
            blown += plain is not None and _impossible(*plain, cut.shape)
            measured = measure_eye(cut)
            if measured.pupil is None:
                assert measured.pupil_fit == "refused" and measured.pupil_confidence is None
                refused += 1
                continue
            fit = measured.pupil
            turn = math.radians(angle)
            u = (fit.cx - cx) * math.cos(turn) + (fit.cy - cy) * math.sin(turn)
            v = -(fit.cx - cx) * math.sin(turn) + (fit.cy - cy) * math.cos(turn)
            assert math.hypot(u / (0.55 * major), v / (0.55 * minor)) <= 1, (slope, depth, fit)
            assert fit.major <= 1.25 * major + 2 and measured.pupil_fit == "ok"
    assert blown >= 2 and refused > blown


def test_fragments_and_slivers_give_no_impossible_ellipse() -> None:
    """A thin curved sliver of pupil beside a few small pupil blobs, in an eye without its pupil: a
    plain fit to the sliver goes thousands of pixels off; measure_eye refuses it or keeps it small."""
    geometry, sequence = VideoGeometry((320, 200)), EyeSequence(seed=0, index=0, frames=20)
    eye = geometry.label(sequence.render(19, glints=False, lashes=False)[1])
    eye[eye == 3] = 2
    rng = np.random.default_rng(0)
    blown = 0
    for radius in (20, 40, 80, 160):
        for thickness in (1, 2):
            for span in (20, 40, 60):
                label = eye.copy()
                for x, y in rng.integers((110, 80), (170, 125), size=(4, 2)):
                    label[y : y + 2, x : x + 2] = 3  # blobs of 4 px
                centre = (140, 103 - radius)
                cv2.ellipse(label, centre, (radius, radius), 0, 90 - span / 2, 90 + span / 2, 3, thickness)
                sliver = (label == 3).astype(np.uint8)
                (cx, cy), axes, _ = cv2.fitEllipse(
                    max(cv2.findContours(sliver, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=len)
                )
                blown += _impossible(cx, cy, max(axes), label.shape)
                measured = measure_eye(label)
                assert measured.pupil_fit in ("ok", "refused")
                fit = measured.pupil
                if fit is not None:
                    assert not _impossible(fit.cx, fit.cy, fit.major, label.shape)
                    assert (
                        fit.major <= 1.25 * 2 * radius * math.sin(math.radians(span / 2)) + 2 * thickness + 8
                    )
    assert blown >= 1


def test_a_closed_eye_has_no_ellipses_and_open_0() -> None:
    sequence = blinking_sequence(10)
    closed = measure_eye(sequence.render(5)[1])
    assert closed.pupil is None and closed.iris is None and not closed.open
    row = closed.row()
    assert row["open"] == 0 and row["pupil_cx"] is None and row["iris_major"] is None
    assert list(row) == CSV_COLUMNS[3:]  # everything after frame, time_s, source
    assert measure_eye(sequence.render(0)[1]).open


def _reference_blinks(missing: list[bool], min_length: int, merge_gap: int) -> list[tuple[int, int]]:
    """Blinks the slow way: runs of missing frames, merged across gaps <= merge_gap, kept if long enough."""
    runs, start = [], None
    for position, value in enumerate([*missing, False]):
        if value and start is None:
            start = position
        elif not value and start is not None:
            runs.append([start, position - 1])
            start = None
    merged: list[list[int]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] - 1 <= merge_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(first, last) for first, last in merged if last - first + 1 >= min_length]


def test_blinks_have_a_minimum_length_and_a_merge_gap() -> None:
    assert blinks([5, 0, 0, 7, 0, 3, 0], Span(1), Span(0)) == [(1, 2), (4, 4), (6, 6)]  # every run
    assert blinks([5, 0, 0, 7, 0, 3, 0]) == [(1, 6)]  # the defaults: 2 frames, gaps of 2 merged
    assert blinks([5, 0, 5, 5, 5, 0, 5]) == [] and blinks([]) == [] and blinks([0]) == []
    rng = np.random.default_rng(0)
    for _ in range(200):
        missing = list(rng.random(int(rng.integers(1, 30))) < rng.random())
        min_length, merge_gap = int(rng.integers(1, 4)), int(rng.integers(0, 4))
        areas = [0 if m else 9 for m in missing]
        assert blinks(areas, Span(min_length), Span(merge_gap)) == _reference_blinks(
            missing, min_length, merge_gap
        )


def test_blink_lengths_in_ms_follow_the_frame_times() -> None:
    times = [n * 0.04 for n in range(9)]  # 25 frames/s
    areas = [5, 0, 0, 5, 5, 0, 5, 5, 5]
    assert blinks(areas, Span(80, "ms"), Span(0), times) == [(1, 2)]  # 2 frames = 80 ms
    assert blinks(areas, Span(100, "ms"), Span(0), times) == []
    assert blinks(areas, Span(80, "ms"), Span(80, "ms"), times) == [(1, 5)]  # a gap of 80 ms merged
    with pytest.raises(InputError, match="needs frame times"):
        blinks([0, 0, 5], Span(80, "ms"))


def test_the_blink_tracker_holds_only_the_undecided_frames() -> None:
    """Rows leave as soon as their blink state is known: never more than min + gap + 1 held."""
    tracker: BlinkTracker[int] = BlinkTracker(Span(3), Span(2))
    missing = [bool(v) for v in np.random.default_rng(1).random(300) < 0.3]
    decided: list[tuple[int, int]] = []
    for position, value in enumerate(missing):
        decided += tracker.add(position, value)
        assert position + 1 - len(decided) <= 3 + 2 + 1
    decided += tracker.finish()
    flags = [0] * len(missing)
    for first, last in _reference_blinks(missing, 3, 2):
        flags[first : last + 1] = [1] * (last - first + 1)
    assert decided == list(enumerate(flags))


@pytest.mark.parametrize(
    ("text", "span"), [("2", Span(2)), ("0", Span(0)), ("80ms", Span(80, "ms")), ("12.5ms", Span(12.5, "ms"))]
)
def test_blink_lengths_parse(text: str, span: Span) -> None:
    assert parse_span(text, "--blink-min") == span
    for bad in ("2.5", "-1", "80 s", "ms", ""):
        with pytest.raises(InputError, match="--blink-min must be a whole number of frames"):
            parse_span(bad, "--blink-min")


def test_smoothing_cuts_fixation_jitter_and_follows_a_saccade() -> None:
    """The one-euro filter at 25 frames/s: a fixation with 0.5 px of noise, a 30 px saccade, a blink."""
    rng = np.random.default_rng(0)
    times = np.arange(100) / 25
    xs = np.where(times < 2, 100.0, 130.0) + rng.normal(0, 0.5, 100)
    smoother = PupilSmoother()
    smoothed = np.array([smoother(t, (x, 50.0), 30.0)[0] for t, x in zip(times, xs, strict=True)])
    assert np.median(np.abs(np.diff(smoothed[:50]))) < np.median(np.abs(np.diff(xs[:50]))) / 2
    assert np.abs(smoothed[54:] - 130).max() < 1.5  # within 4 frames (0.16 s) of the saccade
    assert smoother(4.04, None, None) is None and smoother(4.08, (7.0, 8.0), 9.0) == (
        7.0,
        8.0,
        9.0,
    )  # restarts


# --- geometry of frames of any size ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "placement"),
    [
        ((320, 200), Placement(0, 0, 640, 400)),  # the 1.6 aspect: a plain resize
        ((1280, 800), Placement(0, 0, 640, 400)),
        ((400, 400), Placement(120, 0, 400, 400)),  # square: centred, black left and right
        ((800, 200), Placement(0, 120, 640, 160)),
    ],
)
def test_frames_of_any_size_are_fitted_into_the_models_frame(
    size: tuple[int, int], placement: Placement
) -> None:
    image = np.full((size[1], size[0]), 200, np.uint8)
    canvas, where = place_in_model_frame(image)
    assert canvas.shape == (400, 640) and where == placement
    inside = canvas[where.y : where.y + where.height, where.x : where.x + where.width]
    assert (inside == 200).all() and canvas.sum() == inside.sum()


def test_images_of_any_depth_and_colour_read_as_8_bit_gray(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    cv2.imwrite(str(tmp_path / "colour.png"), cv2.merge([gray, gray, gray]))
    cv2.imwrite(str(tmp_path / "twelve_bit.tiff"), gray.astype(np.uint16) * 16)  # a 12-bit sensor
    assert np.array_equal(read_any_image(tmp_path / "colour.png"), gray)
    assert np.abs(read_any_image(tmp_path / "twelve_bit.tiff").astype(int) - gray).max() <= 1


# --- the API goes through the one engine ----------------------------------------------------------


def test_the_segmenter_at_640x400_gives_the_engines_class_map(checkpoint: Path) -> None:
    seg = Segmenter.from_checkpoints([checkpoint], tta="hflip", gpu="cpu")
    image = blinking_sequence(1).render(0)[0]
    result = seg(image, probabilities=True)
    engine = EnsemblePredictor(
        [(m.model, m.weight) for m in load_members(spec_from_checkpoints([checkpoint]))]
    )
    labels, _ = engine.predict(torch.from_numpy(image)[None, None])
    assert np.array_equal(result.mask, labels[0].numpy())
    assert result.probabilities.shape == (4, 400, 640)
    assert np.allclose(result.probabilities.sum(0), 1, atol=1e-4)
    small = seg(cv2.resize(image, (200, 125), interpolation=cv2.INTER_AREA))
    assert small.mask.shape == (125, 200) and small.measurements.pupil_area == int((small.mask == 3).sum())


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [("eye.mp4", (320, 200)), ("square.avi", (400, 400))])
def test_a_video_at_another_resolution_gives_a_row_and_a_mask_per_frame(
    name: str, size: tuple[int, int], checkpoint: Path, tmp_path: Path
) -> None:
    frames, fps = 6, 5.0
    video = tmp_path / name
    write_eye_video(video, frames=frames, fps=fps, size=size)
    out = tmp_path / "out"
    segment.main(
        [
            "--checkpoints",
            str(checkpoint),
            "--input",
            str(video),
            "--out",
            str(out),
            "--overlay",
            "--batch-size",
            "4",
        ]
    )

    rows = read_rows(out / "measurements.csv")
    assert list(rows[0])[: len(CSV_COLUMNS)] == CSV_COLUMNS
    assert [int(r["frame"]) for r in rows] == list(range(frames))
    assert [float(r["time_s"]) for r in rows] == pytest.approx([n / fps for n in range(frames)])
    masks = sorted((out / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{n:06d}.png" for n in range(frames)]
    for row, path in zip(rows, masks, strict=True):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (size[1], size[0]) and mask.max() <= 3
        assert int(row["pupil_area"]) == int((mask == 3).sum()) and int(row["sclera_area"]) == int(
            (mask == 1).sum()
        )
        assert int(row["open"]) == int(((mask == 2) | (mask == 3)).any())
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    with av.open(str(out / "overlay.mp4")) as container:  # H.264: plays in a browser
        assert container.streams.video[0].codec_context.name == "h264"
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
    assert (out / "pupil.png").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["frames"] == frames


def test_the_synthetic_video_carries_its_geometry(tmp_path: Path) -> None:
    """The test video's own truth: a true mask measured at the video's size matches the ellipse mapped there."""
    geometry = VideoGeometry((320, 200))
    sequence = blinking_sequence(4)
    label = geometry.label(sequence.render(0)[1])
    pupil = measure_eye(label).pupil
    cx, cy, major, _, _ = geometry.ellipse(sequence.ellipses(0)["pupil"])
    assert math.hypot(pupil.cx - cx, pupil.cy - cy) < 0.5 and abs(pupil.major / major - 1) < 0.04


def test_a_folder_with_a_corrupt_image_writes_the_good_ones_and_exits_2(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    image = blinking_sequence(1).render(0)[0]
    cv2.imwrite(str(folder / "2.png"), image)
    cv2.imwrite(str(folder / "10.jpg"), cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))  # colour
    cv2.imwrite(
        str(folder / "sub" / "a.tiff"), cv2.resize(image, (400, 400)).astype(np.uint16) * 257
    )  # 16-bit
    (folder / "3.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"

    line = error_line(
        segment.main, ["--checkpoints", checkpoint, "--input", folder, "--out", out, "--overlay"], capsys
    )

    assert line == (
        f"error: {folder}: 1 of 4 images could not be read (the others were segmented and written): "
        f"{folder / '3.png'}: not a readable image (corrupt, truncated or not an image?)"
    )
    rows = read_rows(out / "measurements.csv")
    assert [(r["frame"], Path(r["source"]).name) for r in rows] == [
        ("0", "2.png"),
        ("2", "10.jpg"),
        ("3", "a.tiff"),
    ]
    assert cv2.imread(str(out / "masks" / "sub" / "a.png"), cv2.IMREAD_UNCHANGED).shape == (400, 400)
    assert sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png")) == [
        "10.png",
        "2.png",
        "sub/a.png",
    ]
    assert not (out / "pupil.png").exists()  # images, not a video


def test_a_video_that_breaks_mid_stream_keeps_the_frames_read(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "eye.avi"
    write_eye_video(video, frames=10, fps=10, size=(160, 100))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # the AVI header still announces 10 frames
    out = tmp_path / "out"

    line = error_line(
        segment.main, ["--checkpoints", checkpoint, "--input", video, "--out", out, "--overlay"], capsys
    )

    rows = read_rows(out / "measurements.csv")
    assert 0 < len(rows) < 10
    assert line == (
        f"error: {video}: the video ended after {len(rows)} of its 10 frames (truncated or damaged?); "
        f"the outputs of the {len(rows)} frames read are written"
    )
    assert len(list((out / "masks").glob("*.png"))) == len(rows)
    assert int(cv2.VideoCapture(str(out / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)
    assert (out / "pupil.png").is_file() and not list(out.glob(".*.tmp*"))


def test_unreadable_inputs_are_one_line_errors_and_write_nothing(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    (tmp_path / "broken.png").write_bytes(b"")
    out = tmp_path / "out"
    for name, message in (
        ("broken.mp4", "cannot open the video (not a format OpenCV reads, or damaged)"),
        ("broken.png", "not a readable image (corrupt, truncated or not an image?)"),
        ("missing.mp4", "input not found"),
    ):
        line = error_line(
            segment.main, ["--checkpoints", checkpoint, "--input", tmp_path / name, "--out", out], capsys
        )
        assert line.startswith(f"error: {tmp_path / name}: {message}"), line
        assert not out.exists()


def test_an_earlier_runs_outputs_are_kept_unless_overwrite(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "eye.png"
    cv2.imwrite(str(image), blinking_sequence(1).render(0)[0])
    argv = ["--checkpoints", checkpoint, "--input", image, "--out", tmp_path / "out", "--masks", "npy"]
    segment.main([str(a) for a in argv])
    assert np.load(tmp_path / "out" / "masks" / "eye.npy").shape == (400, 640)
    line = error_line(segment.main, argv, capsys)
    assert "holds the outputs of an earlier run (masks, measurements.csv, summary.json)" in line
    segment.main([str(a) for a in [*argv[:-1], "none", "--overwrite"]])
    assert (
        not (tmp_path / "out" / "masks").exists()
        and len(read_rows(tmp_path / "out" / "measurements.csv")) == 1
    )


def test_the_api_streams_a_video_and_raises_after_a_break(checkpoint: Path, tmp_path: Path) -> None:
    video = tmp_path / "eye.mp4"
    write_eye_video(video, frames=5, fps=10, size=(320, 200))
    seg = Segmenter.from_checkpoints([checkpoint], tta="none", gpu="cpu", batch_size=2)
    results = list(seg.video(video))
    assert [r.frame for r in results] == list(range(5)) and results[0].mask.shape == (200, 320)
    assert open_frames(video).total == 5


def test_ctrl_c_finishes_the_outputs_of_the_frames_read(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "eye.mp4"
    write_eye_video(video, frames=8, fps=10, size=(160, 100))
    frames = FrameSource.frames

    def interrupted(self: FrameSource, max_frames: int | None = None) -> Iterator[object]:
        for item in frames(self, max_frames):
            if item.index == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(FrameSource, "frames", interrupted)
    out = tmp_path / "out"
    argv = ["--checkpoints", checkpoint, "--input", video, "--out", out, "--overlay", "--batch-size", "2"]
    with pytest.raises(SystemExit) as exit_info:
        segment.main([str(a) for a in argv])
    assert exit_info.value.code == 130
    assert len(read_rows(out / "measurements.csv")) == 3 and len(list((out / "masks").glob("*.png"))) == 3
    assert int(cv2.VideoCapture(str(out / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert (
        json.loads((out / "summary.json").read_text())["ended"] == "ctrl-c" and (out / "pupil.png").is_file()
    )


def test_the_measurement_options_add_their_columns_and_masks_none_keeps_only_the_csv(
    checkpoint: Path, tmp_path: Path
) -> None:
    video, out = tmp_path / "eye.mp4", tmp_path / "out"
    write_eye_video(video, frames=10, fps=10, size=(160, 100))
    segment.main(
        [str(a) for a in ("--checkpoints", checkpoint, "--input", video, "--out", out, "--masks", "none",
                          "--mm-per-px", 0.05, "--smooth", "--blink-min", "200ms", "--blink-gap", 1)]
    )  # fmt: skip

    rows = read_rows(out / "measurements.csv")
    extra = ["pupil_diameter_mm", "pupil_cx_smooth", "pupil_cy_smooth", "pupil_major_smooth"]
    assert list(rows[0]) == [*CSV_COLUMNS, *extra, "pupil_diameter_mm_smooth", "blink", "dropped"]
    assert sorted(path.name for path in out.iterdir()) == ["measurements.csv", "pupil.png", "summary.json"]
    for row in rows:
        assert row["pupil_fit"] in ("ok", "refused", "none") and row["iris_fit"] in ("ok", "refused", "none")
        assert (row["pupil_fit"] == "ok") == (row["pupil_major"] != "") == (row["pupil_cx_smooth"] != "")
        assert (row["pupil_fit"] == "none") == (row["pupil_area"] == "0")
        if row["pupil_major"]:
            assert float(row["pupil_diameter_mm"]) == pytest.approx(
                0.05 * float(row["pupil_major"]), abs=1e-3
            )
            assert 0 <= float(row["pupil_confidence"]) <= 1
    missing = [row["pupil_area"] == "0" for row in rows]
    flags = [0] * len(rows)
    for first, last in _reference_blinks(missing, 2, 1):  # 200 ms at 10 frames/s: 2 frames
        flags[first : last + 1] = [1] * (last - first + 1)
    assert [int(row["blink"]) for row in rows] == flags
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["pupil_fits"].values()) == 10 and summary["blink_rule"].startswith("at least 200ms")


def test_min_area_is_the_engines_step(checkpoint: Path, tmp_path: Path) -> None:
    """segment.py's --min-area is predict_ensemble.py's: the engine's class map at 640 x 400."""
    image = blinking_sequence(1).render(0)[0]
    counts = np.bincount(
        Segmenter.from_checkpoints([checkpoint], tta="none", gpu="cpu")(image).mask.ravel(), minlength=4
    )
    min_area = int(np.sort(counts[1:][counts[1:] > 0])[0]) + 1  # the smallest class present goes
    members = load_members(spec_from_checkpoints([checkpoint]))
    engine = EnsemblePredictor(
        [(m.model, m.weight) for m in members], tta="none", min_area=min_area_per_class(min_area, 4)
    )
    labels, _ = engine.predict(torch.from_numpy(image)[None, None])
    mask = Segmenter.from_checkpoints([checkpoint], tta="none", gpu="cpu", min_area=min_area)(image).mask
    assert np.array_equal(mask, labels[0].numpy()) and len(np.unique(mask)) < (counts > 0).sum()
    assert segment.parse_args(["--input", "x", "--out", "y"]).min_area == str(DEFAULT_MIN_AREA)
    assert predict_ensemble.parse_args(["--data-dir", "d", "--label-file", "l"]).min_area == str(
        DEFAULT_MIN_AREA
    )


def test_measurements_csv_is_written_as_frames_finish(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader tailing measurements.csv sees each row a few frames later (the blink rule's wait)."""
    video, out = tmp_path / "eye.mp4", tmp_path / "out"
    write_eye_video(video, frames=10, fps=10, size=(160, 100))
    frames, seen = FrameSource.frames, []

    def watched(self: FrameSource, max_frames: int | None = None) -> Iterator[object]:
        for item in frames(self, max_frames):
            if (out / "measurements.csv").exists():
                seen.append((item.index, len(read_rows(out / "measurements.csv"))))
            yield item

    monkeypatch.setattr(FrameSource, "frames", watched)
    segment.main(
        [str(a) for a in ("--checkpoints", checkpoint, "--input", video, "--out", out, "--masks", "none")]
    )
    assert [index for index, _ in seen] == list(range(10))
    # Held back: at most blink-min + blink-gap + 1 rows waiting for their blink state, and the
    # pipeline's jobs in flight (2 per worker, 2 workers; inference/pipeline.py) ahead of the reader.
    assert all(rows >= index - (2 + 2 + 1) - 4 for index, rows in seen)
    assert any(rows > 0 for _, rows in seen)
    assert len(read_rows(out / "measurements.csv")) == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-area", "auto"], "--min-area auto reads the members' training labels"),
        (["--min-area", "-3"], "--min-area must be a whole number of pixels, got '-3'"),
        (
            ["--blink-min", "2.5"],
            "--blink-min must be a whole number of frames (3) or milliseconds (80ms), got '2.5'",
        ),
        (["--blink-gap", "soon"], "--blink-gap must be a whole number of frames"),
        (["--mm-per-px", "0"], "--mm-per-px must be a positive number of millimetres, got 0.0"),
        (["--smooth"], "--smooth needs frame times, which a video or camera has and an image has not"),
        (["--blink-min", "80ms"], "--blink-min 80ms needs frame times"),
        (["--iris-mm", "-1"], "--iris-mm must be a positive number of millimetres, got -1.0"),
        (["--preview"], "--preview needs"),  # the pinned OpenCV is headless, and tests have no display
    ],
)
def test_bad_measurement_options_are_one_line_errors(
    extra: list[str], message: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "eye.png"
    cv2.imwrite(str(image), np.zeros((20, 32), np.uint8))
    line = error_line(
        segment.main,
        ["--checkpoints", checkpoint, "--input", image, "--out", tmp_path / "out", *extra],
        capsys,
    )
    assert message in line, line
    assert not (tmp_path / "out").exists()


def test_two_images_that_would_share_an_output_name_are_refused(tmp_path: Path) -> None:
    image = np.zeros((20, 32), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    with pytest.raises(InputError, match="a.jpg and a.png would get the same output name"):
        open_frames(tmp_path)


def test_the_readme_documents_every_column_and_the_threshold() -> None:
    section = (ROOT / "README.md").read_text().split("## Segment your own images and videos", 1)[1]
    section = section.split("\n## ", 1)[0]
    columns = MeasureOptions(mm_per_px=0.05, smooth=True).columns()
    documented = set(re.findall(r"^\| `([a-z_]+)`", section, re.M)) | {
        "iris_cx",
        "iris_cy",
        "iris_major",
        "iris_minor",
    }
    documented |= {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }
    assert set(columns) <= documented, set(columns) - documented
    assert f"Drop rows below {PUPIL_CONFIDENCE_THRESHOLD:g}" in section


def test_the_readme_api_lines_run(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = (ROOT / "README.md").read_text().split("## Segment your own images and videos", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 6  # an import and the five lines
    video = tmp_path / "eye.mp4"
    write_eye_video(video, frames=3, fps=10, size=(320, 200))
    code = code.replace(
        '"demo/runs/cpu_fast/fold_0/best.pt", "demo/runs/cpu_fast/fold_1/best.pt"', repr(str(checkpoint))
    )
    code = code.replace('"demo/eye.mp4"', repr(str(video)))
    exec(code, {"image": blinking_sequence(1).render(0)[0]})  # noqa: S102 - the README's own lines
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and printed[1].startswith("0.0 ")
