"""Frames through the engine in worker threads, results in order: segment.py at camera rate.

    pipe = OrderedPipeline(work, frames, workers=2, batch_size=1, drop=False)
    with pipe:
        for item in pipe.results():   # in the order the frames were read
            ...
        # after a Ctrl-C: pipe.stop(), then pipe.results() again gives the frames already read

Stages: a reader thread pulls items from `frames` (decoding a video, reading a camera or image
files) and groups them into jobs of up to `batch_size` frames; `workers` threads each take a
job, run `work(batch)` (the engine, the resize back, the measurements: Segmenter.segment) and
file the results under the job's number; the caller's thread takes them back in order and
writes them. Threads, not processes: PyTorch's operators, onnxruntime's runs, OpenCV's decoding
and contour fitting all release the GIL, so the stages run side by side on separate cores, and
the models are loaded once. The caller gives each worker its share of the cores (the Segmenter
sets torch's and onnxruntime's thread counts so that workers x threads = the cores): on 2 cores,
two single-threaded engine calls at once beat one call on two threads for the small models of
this repo (BENCHMARKS.md, "segment.py").

Bounded: at most `depth` jobs are read and not yet handed back (queued, running or waiting for
an earlier job), so a slow writer holds the reader back and memory stays flat whatever the
input's length. With `drop` (a live camera), the reader does not wait: a frame read while
`depth` jobs are in flight is handed back at once as a `DroppedFrame` in its place in the order,
so the run keeps up with the camera instead of falling behind it.

Items that `is_work` says are not frames (BadFrame: an unreadable image of a folder) pass through
in order without a worker. An exception in a worker or in the reader is raised by `results()` at
its place in the order, after every earlier result has been handed back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DroppedFrame", "OrderedPipeline"]


@dataclass
class DroppedFrame:
    """A camera frame not segmented because the engine was behind (drop mode)."""

    index: int
    time_s: float | None
    name: str
    source: str


_END = object()  # the reader's last job: the input ended (or the pipeline was stopped)


class OrderedPipeline:
    """Reader thread -> `workers` worker threads -> results in input order (module docstring)."""

    def __init__(
        self,
        work: Callable[[list[Any]], list[Any]],
        items: Iterable[Any],
        workers: int = 1,
        batch_size: int = 1,
        drop: bool = False,
        is_work: Callable[[Any], bool] = lambda item: True,
        depth: int | None = None,
    ) -> None:
        if workers < 1 or batch_size < 1:
            raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
        self.work, self.items, self.workers, self.batch_size = work, items, workers, batch_size
        self.drop, self.is_work = drop, is_work
        self.depth = depth or 2 * workers
        self.dropped = 0
        self._cond = threading.Condition()
        self._jobs: list[tuple[int, list[Any]]] = []  # waiting for a worker
        # job number -> (kind, payload): "items" (a job's results) or "error" (admitted jobs),
        # "passed" or "dropped" (items handed back as they are), "end"
        self._done: dict[int, tuple[str, Any]] = {}
        self._in_flight = 0  # jobs read and not yet handed back (dropped frames not counted)
        self._next = 0  # the next job number to hand back
        self._stop = threading.Event()
        self._closing = False  # workers leave the jobs still queued
        self._threads: list[threading.Thread] = []

    # --- the caller's side -------------------------------------------------------------------------

    def __enter__(self) -> OrderedPipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._read, name="frames-reader", daemon=True)]
        self._threads += [
            threading.Thread(target=self._serve, name=f"engine-{n}", daemon=True) for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Read no more frames; those already read are still segmented and handed back."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop and wait for the threads (a worker finishes the job it holds)."""
        self.stop()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def results(self) -> Iterator[Any]:
        """Every item in input order: the work's results, passed-through items, DroppedFrames."""
        while True:
            with self._cond:
                while self._next not in self._done:
                    self._cond.wait(timeout=0.1)  # a timeout keeps Ctrl-C prompt in the caller's thread
                kind, payload = self._done.pop(self._next)
                self._next += 1
                if kind in ("items", "error"):  # an admitted job
                    self._in_flight -= 1
                    self._cond.notify_all()
            if kind == "end":
                return
            if kind == "error":
                raise payload
            yield from payload

    # --- the threads -------------------------------------------------------------------------------

    def _file(self, number: int, kind: str, payload: Any) -> None:
        with self._cond:
            self._done[number] = (kind, payload)
            self._cond.notify_all()

    def _admit(self) -> bool:
        """Wait for room for one more job (False: stopped); in drop mode, never wait (False: full)."""
        with self._cond:
            while self._in_flight >= self.depth:
                if self.drop or self._stop.is_set():
                    return False
                self._cond.wait(timeout=0.1)
            if self._stop.is_set():
                return False
            self._in_flight += 1
            return True

    def _read(self) -> None:
        number, batch = 0, []

        def submit(batch: list[Any]) -> None:
            nonlocal number
            with self._cond:
                self._jobs.append((number, batch))
                self._cond.notify_all()
            number += 1

        try:
            for item in self.items:
                if self._stop.is_set():
                    break
                if not self.is_work(item):  # passed through in order, after the frames before it
                    if batch:
                        submit(batch)
                        batch = []
                    self._file(number, "passed", [item])
                    number += 1
                    continue
                if batch:  # a job already admitted is filling up
                    batch.append(item)
                elif self._admit():
                    batch = [item]
                elif self._stop.is_set():
                    break
                else:  # drop mode and no room: hand the frame back as dropped, in its place
                    self.dropped += 1
                    self._file(
                        number, "dropped", [DroppedFrame(item.index, item.time_s, item.name, item.source)]
                    )
                    number += 1
                    continue
                if len(batch) == self.batch_size:
                    submit(batch)
                    batch = []
            if batch:
                submit(batch)
                batch = []
        except BaseException as exc:  # the source failed: raised in order, after the frames before it
            if batch:
                submit(batch)
            with self._cond:
                self._in_flight += 1
            self._file(number, "error", exc)
            number += 1
        finally:
            with self._cond:
                self._done[number] = ("end", None)
                self._jobs.extend([(-1, [])] * self.workers)  # one end marker per worker
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                number, batch = self._jobs.pop(0)
            if number < 0:
                return
            try:
                self._file(number, "items", self.work(batch))
            except BaseException as exc:
                self._file(number, "error", exc)
