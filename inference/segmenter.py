"""Segment your own eye images: one object built from checkpoints, called on images or a video.

    seg = Segmenter.from_checkpoints(["runs/cpu_fast/fold_0/best.pt"], tta="hflip")
    result = seg(image)                      # a numpy image of any size, gray or colour, 8/16-bit
    result.mask, result.measurements.pupil   # class map at the image's size; fitted ellipses
    for result in seg.video("eye.mp4"):      # also a folder, an image file or a camera index
        print(result.time_s, result.measurements.pupil)

Models come only through inference/members.py (load_members) and run only through the one
engine (inference/engine.EnsemblePredictor, built by inference/predictor.Predictor), so whatever the engine
runs (models of any architecture and input scale, any TTA) this runs too.

Geometry: the models learned 640 x 400 frames. A frame of another size is resized to fit inside
640 x 400 keeping its aspect ratio and centred on a black canvas (black as the model's own
padding and the IR headset's dark vignette); a frame of the same 1.6 aspect is a plain resize
(dataset/model_frame.py, which fits the plain-folder layout's frames for training the same way).
Logits come back at 640 x 400, the canvas's padding is cut off, and they are resized
(bilinear) to the input's size before the softmax and argmax, so class maps, probabilities and
measurements are in the input's pixels. With a min_area (predict_ensemble.py's --min-area), the
classes too small in a frame are found in the models' frame (inference.engine.small_classes, the
pixels predict_ensemble.py counts) and taken out of its probabilities at the input's size.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dataset.model_frame import Placement, place_in_model_frame
from evaluation.measure import EyeMeasurements, measure_eye
from inference.engine import DEFAULT_MIN_AREA, EnsemblePredictor, min_area_per_class, small_classes
from inference.frames import BadFrame, Frame, FrameSource, open_frames, to_gray8
from inference.members import Member, ensemble_members
from inference.pipeline import DroppedFrame, OrderedPipeline
from inference.predictor import Predictor
from runtime.device import select_device
from utils.errors import InputError

__all__ = [
    "DroppedFrame",
    "Placement",
    "SegmentResult",
    "Segmenter",
    "default_workers",
    "place_in_model_frame",
]


def default_workers(device: torch.device) -> int:
    """Engine calls run side by side (inference/pipeline.py): 2, or 1 on a single core.

    On a CPU each worker gets an equal share of the cores for its operators; on CUDA the second
    worker's resizing and measuring overlap the first one's GPU work.
    """
    return 2 if device.type == "cuda" or torch.get_num_threads() >= 2 else 1


def top_class(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(softmax probability of the top class, its index as uint8) of (C, H, W) float32 logits.

    softmax(...).max(0) without the other classes' probabilities: the top class's probability is
    1 / sum(exp(logit - top)). OpenCV's per-plane maximum and exp run in a third less time than
    torch's softmax and max over the class axis on one CPU thread (BENCHMARKS.md, "segment.py").
    Ties go to the lowest class index, as argmax.
    """
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    top = logits[0].copy()
    for plane in logits[1:]:
        top = cv2.max(top, plane)
    total = np.zeros_like(top)
    labels = np.zeros(top.shape, np.uint8)
    for index in range(len(logits) - 1, -1, -1):  # the last write wins: the lowest index
        total += cv2.exp(logits[index] - top)
        labels[logits[index] == top] = index
    return 1.0 / total, labels


@dataclass
class SegmentResult:
    """One segmented frame, at the input's size."""

    mask: np.ndarray  # (H, W) uint8 class map: 0 background, 1 sclera, 2 iris, 3 pupil
    confidence: np.ndarray  # (H, W) float32 ensemble probability of each pixel's class
    measurements: EyeMeasurements
    image: np.ndarray  # (H, W) uint8 gray input frame
    probabilities: np.ndarray | None = None  # (C, H, W) float32, when asked for
    frame: int = 0
    time_s: float | None = None
    name: str = ""
    source: str = ""


class Segmenter:
    """The ensemble + TTA engine applied to frames of any size (module docstring).

    Args:
        predictor: the engine.
        batch_size: frames per engine call when streaming a folder or video.
        members: the loaded members (for descriptions only).
        workers: engine calls side by side when streaming (inference/pipeline.py); 0: none, the
            frames read, segmented and handed back one batch after another in the caller's thread.
    """

    def __init__(
        self,
        predictor: EnsemblePredictor,
        batch_size: int = 1,
        members: list[Member] | None = None,
        workers: int = 1,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"the batch size must be >= 1, got {batch_size}")
        if workers < 0:
            raise InputError(f"--workers must be >= 0, got {workers}")
        self.predictor = predictor
        self.batch_size = batch_size
        self.members = members or []
        self.workers = workers
        self.runtime = ""  # one line: precision and memory layout, and why
        self.engine_seconds = 0.0  # time spent in engine calls (all workers together), for frames/s
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoints(
        cls,
        checkpoints: Sequence[str | Path] | None = None,
        ensemble: str | Path | None = None,
        tta: str | None = None,
        gpu: str | None = None,
        precision: str = "auto",
        batch_size: int | None = None,
        min_area: int = DEFAULT_MIN_AREA,
        workers: int | None = None,
    ) -> Segmenter:
        """Load the members of `checkpoints` (or of an `ensemble` file) and build the engine.

        tta: none, hflip or hflip+scales (default: the ensemble file's, else hflip). gpu: as
        `--gpu` of every script ('cpu', '0', ...). batch_size: default 8 on CUDA, 1 on a CPU
        (inference/predictor.default_batch_size).
        min_area: --min-area, pixels of the models' 640 x 400 frame below which a class other
        than background is taken out of a frame (0: off). workers: engine calls side by side when
        streaming (default_workers; 0: none). On a CPU, more than one worker sets this process's
        torch threads (and so onnxruntime's) to an equal share of the cores each.
        """
        if min_area < 0:
            raise InputError(f"--min-area must be >= 0 pixels, got {min_area}")
        if workers is not None and workers < 0:
            raise InputError(f"--workers must be >= 0, got {workers}")
        device = select_device(gpu, doing="segmenting")
        workers = default_workers(device) if workers is None else workers
        if device.type == "cpu" and workers > 1:  # before loading: onnxruntime sessions take torch's count
            torch.set_num_threads(max(1, torch.get_num_threads() // workers))
        spec, members = ensemble_members([str(c) for c in checkpoints] if checkpoints else None, ensemble)
        predictor = Predictor.build(
            members, tta=tta, spec_tta=spec.tta, device=device, precision=precision, batch_size=batch_size,
            min_area=min_area_per_class(min_area, members[0].config.num_classes),
        )  # fmt: skip
        segmenter = cls(predictor.engine, predictor.batch_size, members, workers)
        segmenter.runtime = predictor.runtime
        if workers:
            threads = f" x {torch.get_num_threads()} threads" if device.type == "cpu" else ""
            segmenter.runtime += f"; {workers} engine worker(s){threads}"
        return segmenter

    @classmethod
    def from_ensemble(cls, path: str | Path, **kwargs: object) -> Segmenter:
        """from_checkpoints with an ensemble file (members, weights, TTA)."""
        return cls.from_checkpoints(ensemble=path, **kwargs)

    # --- frames in, results out -------------------------------------------------------------------

    def __call__(self, image: np.ndarray, probabilities: bool = False) -> SegmentResult:
        """Segment one image (numpy, gray or BGR, 8- or 16-bit, any size)."""
        frame = Frame(to_gray8(np.asarray(image), "image"), 0, None, "", "")
        return self.segment([frame], probabilities)[0]

    def segment(self, frames: Sequence[Frame], probabilities: bool = False) -> list[SegmentResult]:
        """One engine call for `frames` (each of any size); results in the same order."""
        placed = [place_in_model_frame(frame.image) for frame in frames]
        batch = torch.from_numpy(np.stack([canvas for canvas, _ in placed]))[:, None]
        logits = self.predictor.logits(batch)
        results = []
        for frame, (_, box), frame_logits in zip(frames, placed, logits, strict=True):
            crop = frame_logits[None, :, box.y : box.y + box.height, box.x : box.x + box.width]
            dropped = None
            if self.predictor.min_area is not None:  # counted in the models' frame, as predict_ensemble.py
                dropped = small_classes(crop.softmax(dim=1), self.predictor.min_area)[0]
            height, width = frame.image.shape
            if (box.height, box.width) != (height, width):
                crop = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
            probs = None
            if probabilities or crop.device.type != "cpu" or (dropped is not None and dropped.any()):
                probs = crop[0].softmax(dim=0)
                if dropped is not None:
                    probs = probs.masked_fill(dropped[:, None, None], 0.0)
                confidence, labels = probs.max(dim=0)
                mask, confidence = labels.to(torch.uint8).cpu().numpy(), confidence.cpu().numpy()
            else:
                confidence, mask = top_class(crop[0].numpy())
            results.append(
                SegmentResult(
                    mask=mask,
                    confidence=confidence,
                    measurements=measure_eye(mask, confidence),
                    image=frame.image,
                    probabilities=probs.cpu().numpy() if probabilities and probs is not None else None,
                    frame=frame.index,
                    time_s=frame.time_s,
                    name=frame.name,
                    source=frame.source,
                )
            )
        return results

    def pipeline(
        self, frames: Iterable[Frame | BadFrame], probabilities: bool = False, drop: bool = False
    ) -> contextlib.AbstractContextManager[OrderedPipeline | _Inline]:
        """The frames through the engine, `workers` batches at a time, results in order.

            with seg.pipeline(source.frames(), drop=True) as pipe:
                for item in pipe.results(): ...   # SegmentResult, BadFrame or DroppedFrame

        drop: a live camera: frames that arrive while the engine is behind come back as
        DroppedFrames instead of waiting (inference/pipeline.py). pipe.stop() reads no more frames;
        results() then hands back those already read.
        """

        def work(batch: list[Frame]) -> list[SegmentResult]:
            return self._timed(batch, probabilities)

        def is_work(item: object) -> bool:
            return not isinstance(item, BadFrame)

        if self.workers == 0:
            return _Inline(work, frames, self.batch_size, is_work)
        return OrderedPipeline(work, frames, self.workers, self.batch_size, drop, is_work)

    def stream(
        self, frames: Iterable[Frame | BadFrame], probabilities: bool = False
    ) -> Iterator[SegmentResult | BadFrame]:
        """Results of a stream of frames, in order (pipeline); bad frames pass through."""
        with self.pipeline(frames, probabilities) as pipe:
            try:
                yield from pipe.results()
            except KeyboardInterrupt:  # Ctrl-C: the frames already read still count
                pipe.stop()
                yield from pipe.results()
                raise

    def _timed(self, frames: list[Frame], probabilities: bool) -> list[SegmentResult]:
        began = time.perf_counter()
        results = self.segment(frames, probabilities)
        with self._lock:
            self.engine_seconds += time.perf_counter() - began
        return results

    def source(self, path: str | Path | int, exclude: Path | None = None) -> FrameSource:
        """open_frames: what `path` is (image, folder, video, camera index)."""
        return open_frames(str(path), exclude)

    def video(
        self, path: str | Path | int, max_frames: int | None = None, probabilities: bool = False
    ) -> Iterator[SegmentResult]:
        """Results of every frame of a video file, a camera index, a folder or an image, in order.

        An unreadable image of a folder, or a video that breaks mid-stream, raises InputError
        once the frames before it have been yielded.
        """
        source = self.source(path)
        for item in self.stream(source.frames(max_frames), probabilities):
            if isinstance(item, BadFrame):
                raise InputError(item.error)
            yield item
        if source.broken:
            raise InputError(source.broken, source.label)

    folder = video


class _Inline(contextlib.AbstractContextManager):
    """workers 0: OrderedPipeline's interface without threads (one batch after another)."""

    def __init__(self, work, frames, batch_size, is_work) -> None:  # noqa: ANN001 - as OrderedPipeline
        self.work, self.frames, self.batch_size, self.is_work = work, iter(frames), batch_size, is_work
        self.dropped, self._stopped, self._pending = 0, False, []

    def __exit__(self, *exc: object) -> None:
        return None

    def stop(self) -> None:
        self._stopped = True

    def results(self) -> Iterator[object]:
        if not self._stopped:
            for item in self.frames:
                if not self.is_work(item):
                    yield from self.work(self._pending) if self._pending else ()
                    self._pending = []
                    yield item
                    continue
                self._pending.append(item)
                if len(self._pending) == self.batch_size:
                    batch, self._pending = self._pending, []
                    yield from self.work(batch)
                if self._stopped:
                    break
        if self._pending:
            batch, self._pending = self._pending, []
            yield from self.work(batch)
