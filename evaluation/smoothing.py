"""Temporal smoothing of the pupil centre and diameter: the one-euro filter, causal, frame by frame.

The one-euro filter (Casiez, Roussel and Vogel, CHI 2012) is an exponential smoother whose cut-off
rises with the signal's speed: during a fixation (slow) it smooths hard, cutting the frame-to-frame
jitter of the fits, and during a saccade (fast) it follows with little lag. Per frame at time t,
with the time step dt since the previous frame:

    speed  = low-pass(|x - x_prev| / dt, cut-off D_CUTOFF_HZ)
    cutoff = MIN_CUTOFF_HZ + BETA x speed
    x_hat  = x_hat_prev + alpha(cutoff) (x - x_hat_prev),   alpha = 1 / (1 + 1 / (2 pi cutoff dt))

The centre (x and y) shares one speed, the Euclidean one in px/s; the diameter (the major axis) is
filtered on its own. A frame without a pupil ellipse (a blink, a refused fit) restarts the filter
at the next ellipse, so a smoothed value never bridges a gap. Measured on DeepVOG's real video
(BENCHMARKS.md, "Pupil confidence", Smoothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["OneEuro", "PupilSmoother", "MIN_CUTOFF_HZ", "CENTRE_BETA", "DIAMETER_BETA", "D_CUTOFF_HZ"]

# Cut-off at rest (Hz), speed gains (Hz per px/s) and the speed's own low-pass (Hz): chosen on
# DeepVOG's real video (25 frames/s), where the centre's beta 0.05 halved the jitter further but lagged
# behind saccades (centre error median 0.97 -> 1.37 px against the labels; 0.2: 1.03 px).
MIN_CUTOFF_HZ = 1.0
CENTRE_BETA = 0.2
DIAMETER_BETA = 0.05
D_CUTOFF_HZ = 1.0


def _alpha(cutoff_hz: float, dt: float) -> float:
    return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff_hz * dt))


@dataclass
class OneEuro:
    """One-euro filter of a vector (the module docstring's formulas); `reset` forgets the past."""

    min_cutoff: float = MIN_CUTOFF_HZ
    beta: float = CENTRE_BETA
    d_cutoff: float = D_CUTOFF_HZ

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._value: tuple[float, ...] | None = None
        self._time: float | None = None
        self._speed = 0.0

    def __call__(self, time_s: float, value: tuple[float, ...]) -> tuple[float, ...]:
        if self._value is None or self._time is None or not time_s > self._time:
            self._value, self._time = tuple(value), time_s
            return self._value
        dt = time_s - self._time
        raw_speed = math.dist(value, self._value) / dt
        self._speed += _alpha(self.d_cutoff, dt) * (raw_speed - self._speed)
        alpha = _alpha(self.min_cutoff + self.beta * self._speed, dt)
        self._value = tuple(old + alpha * (new - old) for old, new in zip(self._value, value, strict=True))
        self._time = time_s
        return self._value


class PupilSmoother:
    """Smoothed (cx, cy, major) of each frame's pupil ellipse; None where a frame has none."""

    def __init__(self) -> None:
        self.centre = OneEuro(beta=CENTRE_BETA)
        self.diameter = OneEuro(beta=DIAMETER_BETA)

    def __call__(
        self, time_s: float, centre: tuple[float, float] | None, major: float | None
    ) -> tuple[float, float, float] | None:
        if centre is None or major is None:
            self.centre.reset()
            self.diameter.reset()
            return None
        cx, cy = self.centre(time_s, centre)
        (diameter,) = self.diameter(time_s, (major,))
        return cx, cy, diameter
