"""Blinks in a stream of frames: runs without a pupil, merged across short gaps, long enough.

A frame is *missing* when its class map holds no pupil pixel (pupil_area 0: a closed eye, or a
lid over the whole pupil; a lid over part of it is not missing). Runs of missing frames whose
gap (the frames with a pupil between them) is at most `merge_gap` are merged into one span,
the gap frames included; a span is a blink when it lasts at least `min_length`. Lengths are
counted in frames, or in milliseconds from the frames' times (a span lasts from its first
frame's time to the time of the frame that shows the pupil again; a gap from that frame to the
next missing one). Defaults: 2 frames each (DEFAULT_BLINK_MIN, DEFAULT_BLINK_GAP).

`BlinkTracker` decides as frames arrive: a frame's blink state is known at most about
`min_length` + `merge_gap` frames later, and only those undecided frames are held.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from utils.errors import InputError

__all__ = ["Span", "parse_span", "BlinkTracker", "blinks", "DEFAULT_BLINK_MIN", "DEFAULT_BLINK_GAP"]

T = TypeVar("T")


@dataclass(frozen=True)
class Span:
    """A length in frames or in milliseconds ("frames" or "ms")."""

    value: float
    unit: str = "frames"

    def __str__(self) -> str:
        return f"{self.value:g}ms" if self.unit == "ms" else f"{self.value:g} frames"


DEFAULT_BLINK_MIN = Span(2)
DEFAULT_BLINK_GAP = Span(2)


def parse_span(text: str, flag: str) -> Span:
    """'3' (frames) or '80ms' -> Span; anything else is a one-line InputError naming `flag`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms)?\s*", str(text))
    if match is None or (match.group(2) is None and "." in match.group(1)):
        raise InputError(f"{flag} must be a whole number of frames (3) or milliseconds (80ms), got {text!r}")
    return Span(float(match.group(1)), "ms" if match.group(2) else "frames")


@dataclass
class _Frame(Generic[T]):
    item: T
    position: int
    time_s: float | None


class BlinkTracker(Generic[T]):
    """Feed frames in order with `add`; get back the frames decided so far with their blink flag.

    Args:
        min_length: shortest blink (a merged span of missing frames).
        merge_gap: longest run of frames with a pupil that still joins two missing runs.
    """

    def __init__(self, min_length: Span = DEFAULT_BLINK_MIN, merge_gap: Span = DEFAULT_BLINK_GAP) -> None:
        self.min_length, self.merge_gap = min_length, merge_gap
        self.blinks: list[tuple[T, T]] = []  # (first, last) items of each blink, once decided
        self._pending: list[_Frame[T]] = []  # undecided frames, in order
        self._start: _Frame[T] | None = None  # first missing frame of the open span
        self._last_missing: _Frame[T] | None = None
        self._gap_start: _Frame[T] | None = None  # first frame with a pupil after the span's last missing run
        self._confirmed = False
        self._last: _Frame[T] | None = None
        self._previous: _Frame[T] | None = None  # the frame before _last (the last frame's duration)
        self._position = 0

    def _length(self, first: _Frame[T], end: _Frame[T], span: Span) -> float:
        if span.unit == "frames":
            return end.position - first.position
        if first.time_s is None or end.time_s is None:
            raise InputError(
                f"a blink length in ms ({span}) needs frame times (a video or a camera); give frames"
            )
        return round((end.time_s - first.time_s) * 1000.0, 6)  # 0.12 - 0.04 s is 80 ms, not 79.99999

    def add(self, item: T, missing: bool, time_s: float | None = None) -> list[tuple[T, int]]:
        """One frame (missing: no pupil); returns the frames now decided, in order, with 1 (blink) or 0."""
        frame = _Frame(item, self._position, time_s)
        self._position += 1
        self._previous, self._last = self._last, frame
        out: list[tuple[T, int]] = []
        if self._start is not None and self._gap_start is None:  # the open span's missing run reaches here
            if (
                not self._confirmed
                and self._length(self._start, frame, self.min_length) >= self.min_length.value
            ):
                self._confirmed = True
                out += self._release(1)
            if not missing:
                self._gap_start = frame
        elif self._start is not None and missing:  # a missing frame after a gap: merge or start anew
            if self._length(self._gap_start, frame, self.merge_gap) <= self.merge_gap.value:
                self._gap_start = None
                if self._confirmed:
                    out += self._release(1)
            else:
                out += self._close()
        if self._start is None:
            if not missing:
                return [*out, (item, 0)]
            self._start, self._confirmed, self._gap_start = frame, False, None
        self._pending.append(frame)
        if missing:
            self._last_missing = frame
            if self._confirmed:
                out += self._release(1)
        elif self._length(self._gap_start, frame, self.merge_gap) >= self.merge_gap.value:
            out += self._close()  # the gap is already longer than merge_gap: the span has ended
        return out

    def finish(self) -> list[tuple[T, int]]:
        """The end of the stream: decide every frame still held."""
        if self._start is not None and self._gap_start is None and not self._confirmed:
            last, before = self._last, self._previous
            step = (
                None
                if before is None or last.time_s is None or before.time_s is None
                else last.time_s - before.time_s
            )
            end = _Frame(last.item, last.position + 1, None if step is None else last.time_s + step)
            if self.min_length.unit == "ms" and end.time_s is None:
                end.time_s = last.time_s
            if self._length(self._start, end, self.min_length) >= self.min_length.value:
                self._confirmed = True
                return [*self._release(1), *self._close()]
        return self._close()

    def _release(self, flag: int) -> list[tuple[T, int]]:
        out = [(frame.item, flag) for frame in self._pending]
        self._pending = []
        return out

    def _close(self) -> list[tuple[T, int]]:
        """End the open span: a blink if confirmed; the frames held are not blink frames."""
        if self._start is not None and self._confirmed:
            self.blinks.append((self._start.item, self._last_missing.item))
        self._start, self._gap_start, self._confirmed = None, None, False
        return self._release(0)


def blinks(
    pupil_areas: Sequence[int],
    min_length: Span = DEFAULT_BLINK_MIN,
    merge_gap: Span = DEFAULT_BLINK_GAP,
    times: Sequence[float] | None = None,
) -> list[tuple[int, int]]:
    """Blinks as (first, last) positions, inclusive, of a whole sequence of pupil areas."""
    tracker: BlinkTracker[int] = BlinkTracker(min_length, merge_gap)
    for position, area in enumerate(pupil_areas):
        tracker.add(position, area <= 0, None if times is None else times[position])
    tracker.finish()
    return tracker.blinks
