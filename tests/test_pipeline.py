"""inference/pipeline.py: frames through worker threads, handed back in order, bounded, dropping when live."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from inference.pipeline import DroppedFrame, OrderedPipeline


@dataclass
class Item:
    index: int
    time_s: float | None = None
    name: str = ""
    source: str = "test"
    bad: bool = False


def _slow_double(delays: dict[int, float]) -> object:
    def work(batch: list[Item]) -> list[int]:
        time.sleep(sum(delays.get(item.index, 0.0) for item in batch))
        return [2 * item.index for item in batch]

    return work


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 1), (3, 1), (2, 3)])
def test_results_come_back_in_input_order_with_passed_items_in_place(workers: int, batch_size: int) -> None:
    rng = random.Random(0)
    items = [Item(n, bad=n in (4, 9)) for n in range(20)]
    delays = {n: rng.choice([0.0, 0.002, 0.01]) for n in range(20)}
    with OrderedPipeline(
        _slow_double(delays), items, workers, batch_size, is_work=lambda item: not item.bad
    ) as pipe:
        got = list(pipe.results())
    expected = [item if item.bad else 2 * item.index for item in items]
    assert got == expected


def test_a_slow_writer_holds_the_reader_back() -> None:
    """At most `depth` jobs are read and not yet handed back, however long the input."""
    pulled = 0

    def source() -> Iterator[Item]:
        nonlocal pulled
        for n in range(40):
            pulled += 1
            yield Item(n)

    ahead = []
    with OrderedPipeline(_slow_double({}), source(), workers=2, depth=3) as pipe:
        for taken, _ in enumerate(pipe.results(), start=1):
            time.sleep(0.002)
            ahead.append(pulled - taken)
    assert max(ahead) <= 3 + 1  # the jobs in flight, and the item the reader holds while it waits


def test_a_live_source_faster_than_the_engine_drops_frames_in_place() -> None:
    def camera() -> Iterator[Item]:
        for n in range(30):
            time.sleep(0.002)
            yield Item(n, time_s=n / 500)

    with OrderedPipeline(_slow_double(dict.fromkeys(range(30), 0.02)), camera(), drop=True) as pipe:
        got = list(pipe.results())
    dropped = [item.index for item in got if isinstance(item, DroppedFrame)]
    done = [value // 2 for value in got if not isinstance(value, DroppedFrame)]
    assert 0 < len(dropped) == pipe.dropped and sorted(dropped + done) == list(range(30))
    positions = [item.index if isinstance(item, DroppedFrame) else item // 2 for item in got]
    assert positions == list(range(30))  # dropped rows in their place


def test_without_drop_a_slow_engine_loses_nothing() -> None:
    with OrderedPipeline(_slow_double(dict.fromkeys(range(10), 0.01)), [Item(n) for n in range(10)]) as pipe:
        assert list(pipe.results()) == [2 * n for n in range(10)] and pipe.dropped == 0


def test_an_error_comes_after_the_results_before_it() -> None:
    def work(batch: list[Item]) -> list[int]:
        if batch[0].index == 5:
            raise ValueError("frame 5 is bad")
        time.sleep(0.01 if batch[0].index < 5 else 0)  # later frames finish first
        return [batch[0].index]

    got = []
    with (
        OrderedPipeline(work, [Item(n) for n in range(10)], workers=3) as pipe,
        pytest.raises(ValueError, match="frame 5 is bad"),
    ):
        for value in pipe.results():
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_a_source_that_fails_raises_after_its_frames() -> None:
    def broken() -> Iterator[Item]:
        yield Item(0)
        yield Item(1)
        raise KeyboardInterrupt  # as Ctrl-C while reading a camera

    got = []
    with OrderedPipeline(_slow_double({}), broken(), workers=2) as pipe:
        with pytest.raises(KeyboardInterrupt):
            for value in pipe.results():
                got.append(value)
        assert list(pipe.results()) == []  # nothing after the end
    assert got == [0, 2]


def test_stop_hands_back_the_frames_already_read_and_reads_no_more() -> None:
    pulled = threading.Event()

    def endless() -> Iterator[Item]:
        n = 0
        while True:
            if n == 3:
                pulled.set()
            yield Item(n)
            n += 1

    with OrderedPipeline(_slow_double(dict.fromkeys(range(1000), 0.005)), endless(), workers=2) as pipe:
        pulled.wait(5)
        first = next(pipe.results())
        pipe.stop()
        rest = list(pipe.results())
    indices = [first, *rest]
    assert indices == [2 * n for n in range(len(indices))] and len(indices) < 20


# --- segment.py through the pipeline --------------------------------------------------------------

import csv  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from conftest import tiny_checkpoint  # noqa: E402

import segment  # noqa: E402
from dataset.synthetic.video import VideoGeometry, write_eye_video  # noqa: E402
from evaluation.measure import measure_eye  # noqa: E402
from inference.frames import Frame, open_frames  # noqa: E402
from inference.segment_run import MeasureOptions, prepare_output_dir, run_segmentation  # noqa: E402
from inference.segmenter import Segmenter, SegmentResult  # noqa: E402


class TruthSegmenter(Segmenter):
    """A perfect model: each frame's mask is the renderer's label (optionally slow)."""

    def __init__(self, labels: list[np.ndarray], delay: float = 0.0, workers: int = 2) -> None:
        super().__init__(predictor=None, members=[], workers=workers)  # type: ignore[arg-type]
        self.labels, self.delay, self.jitter = labels, delay, 0.0

    def segment(self, frames: list[Frame], probabilities: bool = False) -> list[SegmentResult]:
        time.sleep(self.delay * len(frames) + self.jitter * sum(f.index % 3 for f in frames))
        return [
            SegmentResult(
                mask=self.labels[f.index],
                confidence=np.ones(f.image.shape, np.float32),
                measurements=measure_eye(self.labels[f.index]),
                image=f.image,
                frame=f.index,
                time_s=f.time_s,
                name=f.name,
                source=f.source,
            )  # fmt: skip
            for f in frames
        ]


def _video(tmp_path: Path, frames: int) -> tuple[Path, list[np.ndarray]]:
    video, size = tmp_path / "eye.mp4", (160, 100)
    sequence = write_eye_video(video, frames=frames, fps=10, size=size)
    geometry = VideoGeometry(size)
    return video, [geometry.label(sequence.render(n)[1]) for n in range(frames)]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_worker_threads_write_the_rows_one_thread_writes(tmp_path: Path) -> None:
    video, labels = _video(tmp_path, 12)
    for workers in (0, 3):
        segmenter = TruthSegmenter(labels, workers=workers)
        segmenter.jitter = 0.005  # frames 2, 5, ... take longest: later frames finish first
        prepare_output_dir(tmp_path / f"w{workers}", overwrite=False)
        run_segmentation(
            segmenter, open_frames(video), tmp_path / f"w{workers}", masks="none", progress=False
        )
    assert _rows(tmp_path / "w0" / "measurements.csv") == _rows(tmp_path / "w3" / "measurements.csv")
    assert json.loads((tmp_path / "w3" / "summary.json").read_text())["workers"] == 3


def test_segment_py_sets_its_workers_and_their_threads(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", [], seed=0, trained_on=[])
    video, _ = _video(tmp_path, 3)
    torch.set_num_threads(2)
    segment.main([str(a) for a in ("--checkpoints", checkpoint, "--input", video, "--out", tmp_path / "out",
                                   "--masks", "none", "--workers", 2)])  # fmt: skip
    assert torch.get_num_threads() == 1  # each worker's share of the 2 threads
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["workers"] == 2


def test_a_camera_that_outruns_the_engine_gets_dropped_rows_in_place(tmp_path: Path) -> None:
    video, labels = _video(tmp_path, 16)
    out = tmp_path / "out"
    prepare_output_dir(out, overwrite=False)
    summary = run_segmentation(
        TruthSegmenter(labels, delay=0.05), open_frames(video), out, masks="none", progress=False, drop=True
    )
    rows = _rows(out / "measurements.csv")
    dropped = [row for row in rows if row["dropped"] == "1"]
    assert [int(row["frame"]) for row in rows] == list(range(16))
    assert 0 < len(dropped) == summary.dropped and summary.frames == 16 - len(dropped)
    assert all(row["pupil_area"] == row["pupil_cx"] == row["pupil_fit"] == "" for row in dropped)
    assert all(row["time_s"] != "" and row["blink"] in ("0", "1") for row in dropped)
    kept = [row for row in rows if row["dropped"] == "0"]
    assert all(int(row["pupil_area"]) == int((labels[int(row["frame"])] == 3).sum()) for row in kept)


def test_iris_mm_scales_the_pupil_by_the_fitted_iris(tmp_path: Path) -> None:
    video, labels = _video(tmp_path, 6)
    out = tmp_path / "out"
    prepare_output_dir(out, overwrite=False)
    options = MeasureOptions(iris_mm=11.7, smooth=True)
    run_segmentation(
        TruthSegmenter(labels), open_frames(video), out, masks="none", progress=False, options=options
    )
    rows = [row for row in _rows(out / "measurements.csv") if row["pupil_major"] and row["iris_major"]]
    assert rows
    for row in rows:
        scale = 11.7 / float(row["iris_major"])
        assert float(row["pupil_diameter_mm"]) == pytest.approx(float(row["pupil_major"]) * scale, abs=2e-3)
        assert float(row["pupil_diameter_mm_smooth"]) == pytest.approx(
            float(row["pupil_major_smooth"]) * scale, abs=2e-3
        )


def test_top_class_is_softmax_max_with_argmax_ties() -> None:
    from inference.segmenter import top_class

    logits = torch.randn(4, 40, 64)
    logits[:, :5] = 0.0  # all classes tied: argmax takes class 0
    logits[2:, 5:10] = 3.0  # classes 2 and 3 tied on top: class 2
    confidence, labels = top_class(logits.numpy())
    expected_confidence, expected_labels = logits.softmax(0).max(0)
    assert np.array_equal(labels, expected_labels.numpy().astype(np.uint8))
    assert np.allclose(confidence, expected_confidence.numpy(), atol=1e-6)
