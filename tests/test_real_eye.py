"""experiments.real_eye's reading of labelled pupil ellipses (made with cv2.fitEllipse, as the real
video's labels are): a label drawn back covers the pupil it was fitted to."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from experiments.real_eye import _filled


@pytest.mark.parametrize("angle", [0, 30, 80, 120, 165])
def test_a_fitted_ellipse_label_fills_its_own_pupil(angle: int) -> None:
    pupil = np.zeros((240, 320), np.uint8)
    cv2.ellipse(pupil, (150, 110), (45, 28), angle, 0, 360, 1, -1)
    contour = cv2.findContours(pupil, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
    (cx, cy), (a, b), fitted_angle = cv2.fitEllipse(contour)
    label = {"cx": cx, "cy": cy, "major": max(a, b), "minor": min(a, b), "angle": fitted_angle}
    drawn = _filled(label, pupil.shape)
    assert (drawn & pupil.astype(bool)).sum() / (drawn | pupil.astype(bool)).sum() > 0.97
