"""Rendering one synthetic eye sequence: a simulated person's identity and 5 Hz trajectory, and
each frame drawn analytically with its exact label.

Every edge in the image is anti-aliased from a signed distance, and the label is the hard
partition of the same distances (distance < 0), so labels are exact for the rendered geometry.
Glints, eyelashes and streak reflections are drawn into the image only, never into the label,
as in the real annotations.

A sequence's look is drawn from a camera style (dataset/synthetic/style.py): `classic` (the
demo's data, unchanged) or the styles randomised toward real cameras. Beyond classic, a frame
may be rolled with the camera (the label warped with it, each pixel taking the class covering
most of it), seen by a camera of another aspect (letterboxed into 640 x 400 with black bars
labelled background, as segment.py fits such frames) and fewer rows (noise and JPEG at the
camera's size, upscaled back), and be black (label all background), over-exposed or partly
hidden by an occluder (labelled background where it covers more than half of a pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dataset.openeds import IMAGE_HEIGHT as HEIGHT
from dataset.openeds import IMAGE_WIDTH as WIDTH
from dataset.synthetic.style import Style, style_for

__all__ = ["HEIGHT", "WIDTH", "EyeSequence", "eye_frames"]

# Polar iris texture table: rows are the normalised radius (pupil edge -> limbus), columns
# the angle. Long in radius and thin in angle, so resampling gives radial fibres.
IRIS_RHO, IRIS_THETA = 64, 720


def _smooth_noise(
    rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int] = (HEIGHT, WIDTH)
) -> np.ndarray:
    """Zero-mean, unit-ish noise with features ~size/cells wide (bicubic upsampling of a coarse grid)."""
    coarse = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class _FrameState:
    """The moving parts of one frame (angles in radians, lengths in pixels)."""

    gaze_x: float  # + moves the iris right in the image
    gaze_y: float  # + moves the iris down in the image
    openness: float  # upper lid: 0 closed (blink), 1 the identity's normal opening
    pupil: float  # pupil radius / iris radius
    slip_x: float  # headset slip of the whole eye
    slip_y: float
    gain: float  # LED/exposure flicker


class EyeSequence:
    """One simulated person: fixed identity, a precomputed 5 Hz trajectory, frame renderer.

    All randomness comes from `np.random.default_rng([seed, index, ...])`, so a sequence
    renders identically in any process and any frame can be rendered on its own. `style`: a
    name of dataset/synthetic/style.py's STYLES or a Style; the classic style draws exactly the
    numbers it always drew, the others draw their extra knobs from a stream of their own.
    """

    def __init__(self, seed: int, index: int, frames: int, style: str | Style = "classic") -> None:
        self.seed, self.index, self.frames = seed, index, frames
        self.style = style_for(style) if isinstance(style, str) else style
        rng = np.random.default_rng([seed, index, 2])
        self._camera(np.random.default_rng([seed, index, 4]))
        self._identity(rng)
        self._static_layers(rng)
        self.states = self._trajectory(rng)

    def _camera(self, rng: np.random.Generator) -> None:
        """The style's knobs beyond classic's: camera roll, aspect and rows, optics, lash and texture scales."""
        st, u = self.style, rng.uniform
        self.roll = u(*st.roll_deg)
        self.aspect = float(rng.choice(st.aspect))
        self.camera_rows = u(*st.camera_rows)
        self.gaze_scale = u(*st.gaze)
        self.lash_scale = 1.0
        self.lash_density = u(*st.lash_density)
        self.lash_down = u(*st.lash_down)
        self.lash_thickness = u(*st.lash_thickness)
        self.skin_texture = u(*st.skin_texture)
        self.corneal_haze = u(*st.corneal_haze)
        self.lash_length = u(*st.lash_length)
        self.skin_shading = u(*st.skin_shading)
        self.iris_contrast = u(*st.iris_texture)
        self.glint_spread = u(*st.glint_spread)
        self.jpeg_quality = int(u(*st.jpeg_quality))
        self.n_reflections = int(rng.integers(int(st.reflections[0]), int(st.reflections[1]) + 1))
        self.reflection_strength = u(*st.reflection_strength)
        self.extra_rng_seed = int(rng.integers(2**31))

    def _identity(self, rng: np.random.Generator) -> None:
        """Draw the per-person constants: geometry, camera, tones."""
        u, st = rng.uniform, self.style
        self.iris_r = u(*st.iris_radius)
        self.eye_x, self.eye_y = WIDTH / 2 + u(*st.eye_shift_x), HEIGHT / 2 + u(*st.eye_shift_y)
        self.half_width = self.iris_r * u(2.1, 2.6)  # corner to corner / 2
        self.lid_up = self.iris_r * u(0.95, 1.4)  # upper lid height above the corner line
        self.lid_lo = self.iris_r * u(0.45, 0.75)
        self.lid_tilt = u(-0.08, 0.08)  # slope of the corner line
        self.lid_skew_up, self.lid_skew_lo = u(-0.25, 0.25), u(-0.25, 0.25)
        self.lid_rise = u(0.25, 0.45)  # how far the lower lid rises in a blink (x lid_lo)
        self.open_base = u(*st.openness)
        self.ball_y = self.eye_y + u(-0.1, 0.2) * self.iris_r  # rotation centre, below the corner line
        self.rot_r = self.iris_r * u(1.6, 1.9)  # eye rotation radius (12 mm ball, 6 mm iris)
        # The camera sits below and to the side, so even a straight gaze is foreshortened.
        self.cam_x, self.cam_y = u(*st.camera_x), u(*st.camera_y)
        self.pupil_base = u(*st.pupil_size)
        self.pupil_offset = rng.normal(0, 0.04, 2)  # pupils are rarely centred in the iris
        self.pupil_aspect = u(0.92, 1.0)
        self.blink_rate = u(*st.blink_rate)  # per 5 Hz frame
        # Tones (linear, 0..1 before gamma): classic: sclera brighter than skin, iris darker, pupil darkest.
        self.skin = u(*st.skin)
        self.sclera = min(0.95, self.skin * u(*st.sclera_vs_skin))
        self.iris = u(*st.iris)
        self.pupil_tone = u(*st.pupil)
        self.gamma = u(*st.gamma)
        self.exposure = u(*st.exposure)
        self.blur = u(*st.blur)
        self.read_noise, self.shot_noise = u(*st.read_noise), u(*st.shot_noise)
        # Lashes and glints are drawn in pixels of a classic eye (iris radius ~97 px); other styles scale them.
        self.lash_widths = (1, 2)  # px, thin and thick lashes
        if not st.is_classic:
            self.lash_scale = self.lash_length * self.iris_r / 97.0
            width = self.lash_thickness * self.iris_r / 97.0
            self.lash_widths = (max(1, round(width)), max(2, round(2 * width)))

    def _static_layers(self, rng: np.random.Generator) -> None:
        """Precompute what does not move within a sequence: skin, lens, iris texture, lash/LED layouts."""
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        # Skin: smooth shading, mid-scale unevenness and pores.
        fine = cv2.GaussianBlur(rng.standard_normal((HEIGHT, WIDTH)).astype(np.float32), (0, 0), 0.8)
        shading = (
            1
            + self.skin_shading * _smooth_noise(rng, (3, 4))
            + 0.04 * _smooth_noise(rng, (12, 18))
            + self.skin_texture * fine
        )
        self.skin_map = (self.skin * shading).astype(np.float32)
        self.fine = fine
        self.noise_bank = rng.standard_normal(3 * HEIGHT * WIDTH, dtype=np.float32)
        # Lens: a dark vignette and faint concentric rings of the headset optics.
        lx, ly = WIDTH / 2 + rng.uniform(-40, 40), HEIGHT / 2 + rng.uniform(-30, 30)
        radius = np.hypot(xx - lx, (yy - ly) * 1.1) / 380.0
        st = self.style
        vignette = np.clip(
            1 - rng.uniform(*st.vignette) * radius ** rng.uniform(2.0, 3.2),
            0.02 if st.vignette[1] > 1 else 0.05,
            1,
        )
        period, phase = rng.uniform(14, 26), rng.uniform(0, 2 * np.pi)
        rings = 1 + rng.uniform(*st.lens_rings) * np.sin(radius * 380 / period * 2 * np.pi + phase) * radius
        self.lens = (vignette * rings).astype(np.float32)
        # Streak reflections of the optics: long faint arcs, each blurred into a soft band.
        streaks = np.zeros((HEIGHT, WIDTH), np.uint8)
        for _ in range(rng.integers(int(st.arc_streaks[0]), int(st.arc_streaks[1]) + 1)):
            centre = (int(rng.uniform(0, WIDTH)), int(rng.uniform(0, HEIGHT)))
            axes = (int(rng.uniform(150, 500)), int(rng.uniform(40, 200)))
            start = rng.uniform(0, 360)
            cv2.ellipse(
                streaks,
                centre,
                axes,
                rng.uniform(0, 180),
                start,
                start + rng.uniform(20, 70),
                255,
                int(rng.integers(2, 7)),
                cv2.LINE_AA,
            )
        self.streaks = cv2.GaussianBlur(streaks.astype(np.float32) / 255, (0, 0), 3) * rng.uniform(
            *st.arc_strength
        )
        if not st.is_classic:
            self.streaks += self._reflections(np.random.default_rng([self.extra_rng_seed, 1]))
            side = int(2 * (self.iris_r + 3)) + 2
            haze = _smooth_noise(
                np.random.default_rng([self.extra_rng_seed, 3]), (5, 5), (2 * side, 2 * side)
            )
            self.haze = np.clip(haze, 0, None)
        # Iris: radial fibres (noise long in radius, thin in angle), crypts, collarette.
        fibres = cv2.resize(
            rng.standard_normal((6, IRIS_THETA // 3)).astype(np.float32),
            (IRIS_THETA, IRIS_RHO),
            interpolation=cv2.INTER_CUBIC,
        )
        fibres += 0.5 * cv2.resize(
            rng.standard_normal((12, IRIS_THETA)).astype(np.float32),
            (IRIS_THETA, IRIS_RHO),
            interpolation=cv2.INTER_LINEAR,
        )
        crypts = np.clip(_smooth_noise(rng, (5, 36), (IRIS_RHO, IRIS_THETA)) - 1.0, 0, None)
        s = np.linspace(0, 1, IRIS_RHO, dtype=np.float32)[:, None]
        collarette = 1 + 0.12 * np.exp(-(((s - rng.uniform(0.25, 0.4)) / 0.06) ** 2))
        limbus = 1 - rng.uniform(0.35, 0.6) * np.clip((s - 0.72) / 0.28, 0, 1) ** 1.5
        ruff = 1 - 0.25 * np.exp(-s / 0.04)  # dark pigment rim at the pupil
        texture = (1 + 0.16 * fibres - 0.35 * crypts) * collarette * limbus * ruff
        if not st.is_classic:  # the texture's contrast around its mean
            texture = np.clip(texture.mean() + self.iris_contrast * (texture - texture.mean()), 0.05, None)
        # One wrap-around column so bilinear lookups across the angle seam are continuous.
        self.iris_tex = np.concatenate([texture, texture[:, :1]], axis=1).astype(np.float32)
        # Eyelashes: roots spread along the lids (denser towards the outer corner), most of
        # the upper ones hanging over the eye as seen from a camera below the eye.
        n_up, n_lo = int(rng.integers(70, 120)), int(rng.integers(25, 45))
        if not st.is_classic:
            n_up, n_lo = round(n_up * self.lash_density), round(n_lo * self.lash_density)
        self.lash_t = np.concatenate([rng.beta(2.2, 2.0, n_up) * 1.8 - 0.9, rng.uniform(-0.8, 0.8, n_lo)])
        self.lash_upper = np.arange(n_up + n_lo) < n_up
        down = np.where(rng.random(n_up) < self.lash_down, 1.0, -1.0)
        self.lash_dir_y = np.concatenate([down, np.ones(n_lo)])
        self.lash_len = (
            np.concatenate([rng.uniform(18, 50, n_up), rng.uniform(8, 22, n_lo)]) * self.lash_scale
        )
        self.lash_spread = rng.uniform(0.5, 1.2, n_up + n_lo)  # outward lean, x lash position
        self.lash_curl = rng.normal(0, 0.25, n_up + n_lo)
        self.lash_thick = rng.random(n_up + n_lo) < 0.3
        self.lash_dark = rng.uniform(*st.lash_dark)
        # LED ring: classic 8-12 LEDs around the lens, seen as glints on the cornea.
        n_led = int(rng.integers(int(st.glints[0]), int(st.glints[1]) + 1))
        self.led_angle = (
            np.linspace(0, 2 * np.pi, n_led, endpoint=False)
            + rng.uniform(0, 2 * np.pi)
            + rng.normal(0, 0.08, n_led)
        )
        self.led_axes = self.iris_r * np.array([rng.uniform(0.45, 0.7), rng.uniform(0.35, 0.55)])
        self.led_size = rng.uniform(*st.glint_size, n_led)
        if not st.is_classic:
            self.led_axes = self.led_axes * self.glint_spread

    def _trajectory(self, rng: np.random.Generator) -> list[_FrameState]:
        """Simulate the 5 Hz sequence: fixations with drift, saccades, pupil changes, blinks."""
        max_x, max_y = 0.45 * self.gaze_scale, 0.32 * self.gaze_scale  # classic: ~26 and ~18 degrees
        target = np.array([rng.normal(0, 0.15), rng.normal(0, 0.1)])
        gaze = target.copy()
        pupil, slip = self.pupil_base, np.zeros(2)
        states, reopening = [], False
        for _ in range(self.frames):
            if rng.random() < 0.22:  # saccade to a new target; the eye is there by the next sample
                target = np.array([rng.normal(0, 0.5 * max_x), rng.normal(0, 0.5 * max_y)])
                gaze = target + rng.normal(0, 0.02, 2)
            else:  # fixation or slow pursuit
                gaze = gaze + 0.5 * (target - gaze) + rng.normal(0, 0.025, 2)
            gaze = np.clip(gaze, [-max_x, -max_y], [max_x, max_y])
            pupil = float(np.clip(pupil + 0.3 * (self.pupil_base - pupil) + rng.normal(0, 0.03), 0.2, 0.68))
            slip = 0.9 * slip + rng.normal(0, 0.8, 2)
            openness = self.open_base * rng.uniform(0.93, 1.07)
            if reopening:  # the frame after a full blink often catches the lid on its way up
                openness *= rng.uniform(0.3, 0.85)
                reopening = False
            elif rng.random() < self.blink_rate:
                full = rng.random() < 0.45
                openness = 0.0 if full else openness * rng.uniform(0.05, 0.6)
                reopening = full and rng.random() < 0.5
            states.append(
                _FrameState(
                    float(gaze[0]),
                    float(gaze[1]),
                    openness,
                    pupil,
                    float(slip[0]),
                    float(slip[1]),
                    rng.uniform(0.96, 1.04),
                )
            )
        return states

    def _lids(self, state: _FrameState) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower lid y for every image column (equal where the eye is closed)."""
        xs = np.arange(WIDTH, dtype=np.float64)
        ex, ey = self.eye_x + state.slip_x, self.eye_y + state.slip_y
        t = np.clip((xs - ex) / self.half_width, -1, 1)
        line = ey + self.lid_tilt * (xs - ex)
        upper_shape = self.lid_up * (1 - t**2) ** 0.9 * (1 + self.lid_skew_up * t)
        lower_shape = self.lid_lo * (1 - t**2) ** 1.2 * (1 + self.lid_skew_lo * t)
        lower_open = line + lower_shape
        closed = lower_open - self.lid_rise * lower_shape  # where the lids meet in a full blink
        # The upper lid follows vertical gaze: it drops when looking down.
        a = max(0.0, state.openness * (1 - 0.9 * state.gaze_y))
        upper = closed - a * (closed - (line - upper_shape))
        lower = lower_open - (1 - min(a, 1.0)) * self.lid_rise * lower_shape
        return upper, lower

    def _iris_geometry(self, state: _FrameState) -> tuple[np.ndarray, np.ndarray]:
        """Iris centre (x, y) and the 2x2 map from image offsets to unit-iris coordinates.

        The iris is a disk on a sphere: rotating by the gaze moves its centre by rot_r*sin
        and foreshortens it along the viewing direction by cos(tilt).
        """
        centre = np.array(
            [
                self.eye_x + state.slip_x + self.rot_r * math.sin(state.gaze_x),
                self.ball_y + state.slip_y + self.rot_r * math.sin(state.gaze_y),
            ]
        )
        view = np.array([math.sin(state.gaze_x - self.cam_x), math.sin(state.gaze_y - self.cam_y)])
        cos_tilt = math.sqrt(max(0.25, 1 - float(view @ view)))
        phi = math.atan2(view[1], view[0])
        rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
        to_unit = rot @ np.diag([1 / cos_tilt, 1.0]) @ rot.T / self.iris_r
        return centre, to_unit

    def render(self, n: int, glints: bool = True, lashes: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Render frame `n`: (uint8 image (400, 640), uint8 label (400, 640)).

        `glints` and `lashes` switch those image-only layers off; the label never changes.
        """
        state = self.states[n]
        rng = np.random.default_rng([self.seed, self.index, 3, n])
        upper, lower = self._lids(state)
        upper32, lower32 = upper.astype(np.float32), lower.astype(np.float32)
        crease = upper32 - 0.35 * self.iris_r * (0.3 + 0.7 * min(1.0, state.openness))
        # Everything that depends on the eye lives in a band of rows around it (lashes, crease
        # and lid margins included); outside it the frame is plain skin, drawn once.
        top = max(0, int(crease.min()) - int(56 * self.lash_scale))
        bottom = min(HEIGHT, int(lower32.max()) + int(32 * self.lash_scale))
        rows = np.arange(top, bottom, dtype=np.float32)[:, None]

        # Eye opening: signed distance to the nearer lid, normal to the lid curve.
        up_norm = (1 / np.sqrt(1 + np.gradient(upper) ** 2)).astype(np.float32)
        lo_norm = (1 / np.sqrt(1 + np.gradient(lower) ** 2)).astype(np.float32)
        dist_open = np.minimum((rows - upper32) * up_norm, (lower32 - rows) * lo_norm)
        opening = dist_open > 0
        # A column whose lids meet must show no eyeball at all, not a half-covered seam.
        cover_open = np.clip(dist_open + 0.5, 0, 1) * np.clip(lower32 - upper32, 0, 1)

        # Eyeball: sclera darkening towards the corners (curvature) and under the upper lid (shadow).
        ex = self.eye_x + state.slip_x
        cols = np.arange(WIDTH, dtype=np.float32)
        across = 1 - 0.35 * np.clip((cols - ex) / self.half_width, -1, 1) ** 2
        # Lid shadow: 1 at the upper lid, fading within ~10 px below it.
        shadow = np.exp(np.clip((upper32 - rows) / (0.08 * self.iris_r), -30, 0))
        eye = self.sclera * across * (1 - 0.3 * shadow) * (1 + 0.03 * self.fine[top:bottom])

        label = np.zeros((HEIGHT, WIDTH), np.uint8)
        band_label = label[top:bottom]
        band_label[opening] = 1
        centre, to_unit = self._iris_geometry(state)
        self._draw_iris(eye, band_label, opening, top, centre, to_unit, state)

        # Skin around the eye, darker along the lid margins and in the upper lid crease.
        # Both fade out past the eye corners, where the lid lines meet and run on as a straight line.
        near_eye = np.clip((1.12 - np.abs(cols - ex) / self.half_width) / 0.3, 0, 1)
        margins = 0.3 * np.exp(-np.abs(rows - upper32) / 6.0) + 0.2 * np.exp(-np.abs(rows - lower32) / 5.0)
        margins += 0.18 * np.exp(-(((rows - crease) / 7.0) ** 2))
        skin = self.skin_map[top:bottom] * (1 - near_eye * margins)
        image = self.skin_map.copy()
        band = image[top:bottom]
        band[:] = skin + cover_open * (eye - skin)

        if glints:
            band += self._glints(state, centre, rng)[top:bottom] * cover_open
        if lashes:
            band *= 1 - self.lash_dark * self._lashes(upper, lower, state)[top:bottom]
        gain = self.exposure * state.gain
        if self.style.is_classic:
            image = self._optics(image, gain)
            return self._sensor(image, rng), label
        return self._camera_frame(image, label, centre, gain, n, rng)

    def _optics(self, image: np.ndarray, gain: float) -> np.ndarray:
        """Lens vignette and rings, streaks, exposure, focus blur, gamma."""
        image = cv2.scaleAdd(cv2.multiply(image, self.lens, scale=gain), gain, self.streaks)
        image = cv2.GaussianBlur(np.clip(image, 0, 1), (0, 0), self.blur)
        cv2.pow(image, self.gamma, dst=image)
        return image

    def _sensor(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise, then 8 bits: a random window of the sequence's noise bank (drawing fresh normals
        costs more than the rest of the frame); read noise plus shot noise that grows with the signal."""
        size = image.size
        start = int(rng.integers(0, self.noise_bank.size - size))
        noise = self.noise_bank[start : start + size].reshape(image.shape)
        image += noise * np.sqrt(self.read_noise**2 + self.shot_noise**2 * image)
        return cv2.convertScaleAbs(image, alpha=255)

    def _camera_frame(
        self,
        image: np.ndarray,
        label: np.ndarray,
        centre: np.ndarray,
        gain: float,
        n: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The styles beyond classic: occluder, roll, optics, the camera's aspect and rows, JPEG, events."""
        events = np.random.default_rng([self.extra_rng_seed, 2, n])
        st = self.style
        black, over, occluded = events.random(3) < (st.black_p, st.overexposed_p, st.occluder_p)
        if occluded:
            self._occlude(image, label, centre, events)
        if self.roll:
            image, label = self._rolled(image, label)
        if over:
            gain *= events.uniform(2.0, 4.0)
        image = self._optics(image, gain)
        x0, y0, w, h = self.camera_box
        rows = min(h, round(self.camera_rows))
        cols = max(1, round(w * rows / h))
        seen = image[y0 : y0 + h, x0 : x0 + w]
        if (cols, rows) != (w, h):
            seen = cv2.resize(seen, (cols, rows), interpolation=cv2.INTER_AREA)
        seen = self._sensor(np.ascontiguousarray(seen), rng)
        if black:  # the illumination off: the sensor's dark noise only
            seen = events.integers(0, 4, seen.shape, dtype=np.uint8)
            label = np.zeros_like(label)
        elif self.jpeg_quality <= 100:
            encoded = cv2.imencode(".jpg", seen, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])[1]
            seen = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
        if (cols, rows) != (w, h):
            seen = cv2.resize(seen, (w, h), interpolation=cv2.INTER_LINEAR)
        frame = np.zeros((HEIGHT, WIDTH), np.uint8)
        frame[y0 : y0 + h, x0 : x0 + w] = seen
        if (w, h) != (WIDTH, HEIGHT):
            outside = np.ones((HEIGHT, WIDTH), bool)
            outside[y0 : y0 + h, x0 : x0 + w] = False
            label[outside] = 0
        return frame, label

    @property
    def camera_box(self) -> tuple[int, int, int, int]:
        """Where the camera's frame sits in 640 x 400 (x, y, width, height): its aspect, letterboxed."""
        w = min(WIDTH, round(HEIGHT * self.aspect))
        h = min(HEIGHT, round(WIDTH / self.aspect))
        return (WIDTH - w) // 2, (HEIGHT - h) // 2, w, h

    @property
    def roll_matrix(self) -> np.ndarray:
        """The camera roll as a 2 x 3 affine map of the render, around the eye."""
        return cv2.getRotationMatrix2D((float(self.eye_x), float(self.eye_y)), self.roll, 1.0)

    def _rolled(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image and label turned by the camera roll; each label pixel takes the class covering most of it."""
        matrix, size = self.roll_matrix, (WIDTH, HEIGHT)
        border = cv2.BORDER_REFLECT_101
        image = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=border)
        cover = [cv2.warpAffine((label == c).astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR, borderMode=border)
                 for c in range(4)]  # fmt: skip
        return image, np.argmax(np.stack(cover), axis=0).astype(np.uint8)

    def _occlude(
        self, image: np.ndarray, label: np.ndarray, centre: np.ndarray, rng: np.random.Generator
    ) -> None:
        """A dark or bright band across the eye; the label is background where it covers most of a pixel."""
        angle = rng.uniform(0, np.pi)
        through = centre + rng.normal(0, 0.8 * self.iris_r, 2)
        reach = np.array([math.cos(angle), math.sin(angle)]) * 2 * WIDTH
        layer = np.zeros((HEIGHT, WIDTH), np.uint8)
        a, b = ((through - reach) * 16).astype(int), ((through + reach) * 16).astype(int)
        width = max(1, int(rng.uniform(0.2, 0.9) * self.iris_r))  # thickness is in pixels, not shifted
        cv2.line(layer, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, width, cv2.LINE_AA, 4)
        cover = cv2.GaussianBlur(layer.astype(np.float32) / 255, (0, 0), rng.uniform(1, 6))
        tone = rng.uniform(0.0, 0.08) if rng.random() < 0.6 else rng.uniform(0.7, 1.0)
        image += cover * (tone - image)
        label[cover > 0.5] = 0

    def _reflections(self, rng: np.random.Generator) -> np.ndarray:
        """Long straight bright reflections of the headset's lens, across the whole frame (image only)."""
        layer = np.zeros((HEIGHT, WIDTH), np.float32)
        for _ in range(self.n_reflections):
            angle = rng.uniform(0, np.pi)
            through = np.array([rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)])
            reach = np.array([math.cos(angle), math.sin(angle)]) * rng.uniform(150, 2 * WIDTH)
            band = np.zeros((HEIGHT, WIDTH), np.uint8)
            a, b = ((through - reach) * 16).astype(int), ((through + reach) * 16).astype(int)
            width = int(rng.uniform(1, 9))  # thickness is in pixels, not shifted
            cv2.line(band, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 255, width, cv2.LINE_AA, 4)
            layer += cv2.GaussianBlur(
                band.astype(np.float32) / 255, (0, 0), rng.uniform(0.8, 5)
            ) * rng.uniform(0.4, 1.0)
        return layer * self.reflection_strength

    def _draw_iris(
        self,
        eye: np.ndarray,
        label: np.ndarray,
        opening: np.ndarray,
        top: int,
        centre: np.ndarray,
        to_unit: np.ndarray,
        state: _FrameState,
    ) -> None:
        """Blend the textured iris and the pupil into `eye` and label them, within the iris box only.

        `eye`, `label` and `opening` are the band of frame rows starting at row `top`.
        """
        reach = self.iris_r + 3
        x0, x1 = max(0, int(centre[0] - reach)), min(WIDTH, int(centre[0] + reach) + 1)
        y0, y1 = max(top, int(centre[1] - reach)), min(top + len(eye), int(centre[1] + reach) + 1)
        if x0 >= x1 or y0 >= y1 or not opening[y0 - top : y1 - top, x0:x1].any():
            return
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(centre[0])
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(centre[1])
        y0, y1 = y0 - top, y1 - top  # band coordinates from here on
        m = to_unit.astype(np.float32)
        qx, qy = m[0, 0] * dx + m[0, 1] * dy, m[1, 0] * dx + m[1, 1] * dy
        rho = np.sqrt(qx * qx + qy * qy) + 1e-6
        # Signed distance in pixels = (rho - 1) / |grad rho|, grad rho = M^T q / rho.
        gx, gy = (m[0, 0] * qx + m[1, 0] * qy) / rho, (m[0, 1] * qx + m[1, 1] * qy) / rho
        dist_iris = (rho - 1) / np.sqrt(gx * gx + gy * gy)
        # Pupil: an ellipse in unit-iris coordinates, offset and sized to stay inside the iris.
        offset = self.pupil_offset.astype(np.float32)
        radius = np.float32(min(state.pupil, 0.85 - float(np.hypot(*offset))))
        px, py = (qx - offset[0]) / radius, (qy - offset[1]) / (radius * self.pupil_aspect)
        rp = np.sqrt(px * px + py * py) + 1e-6
        sx, sy = px / (rp * radius), py / (rp * radius * self.pupil_aspect)
        gpx, gpy = m[0, 0] * sx + m[1, 0] * sy, m[0, 1] * sx + m[1, 1] * sy
        dist_pupil = (rp - 1) / np.sqrt(gpx * gpx + gpy * gpy)

        # Texture lookup: angle and the radius normalised between pupil edge and limbus, so
        # a dilating pupil compresses the fibres as a real iris does.
        theta = (np.arctan2(qy, qx) + np.pi) * (IRIS_THETA / (2 * np.pi))
        s = np.clip((rho - radius) / (1 - radius), 0, 1) * (IRIS_RHO - 1)
        tex = cv2.remap(self.iris_tex, theta.astype(np.float32), s.astype(np.float32), cv2.INTER_LINEAR)
        box = eye[y0:y1, x0:x1]
        cover_iris = np.clip(0.5 - dist_iris, 0, 1)
        cover_pupil = np.clip(0.5 - dist_pupil, 0, 1)
        box += cover_iris * (self.iris * tex - box)
        box += cover_pupil * (self.pupil_tone - box)
        if self.corneal_haze:  # the room mirrored in the cornea, moving with the eye, over iris and pupil
            hy, hx = self.haze.shape
            oy, ox = y0 + top - int(centre[1] - reach) + hy // 4, x0 - int(centre[0] - reach) + hx // 4
            box += cover_iris * self.corneal_haze * self.haze[oy : oy + y1 - y0, ox : ox + x1 - x0]

        inside = opening[y0:y1, x0:x1]
        box_label = label[y0:y1, x0:x1]
        iris_px = inside & (dist_iris < 0)
        box_label[iris_px] = 2
        box_label[iris_px & (dist_pupil < 0)] = 3

    def ellipses(self, n: int) -> dict[str, tuple[float, float, float, float, float]]:
        """The exact pupil and iris ellipses of frame `n`, whatever the lids cover of them.

        {"pupil": ..., "iris": ...}, each (cx, cy, major, minor, angle): centre in pixel-index
        coordinates, full axis lengths, and the major axis's angle in degrees 0..180 from +x towards
        +y, the conventions of evaluation/measure.py. The iris is {d: |M d| < 1} for M the map
        to unit-iris coordinates; the pupil, {d: |D (M d - o)| < 1} around the pupil offset o.
        """
        state = self.states[n]
        centre, to_unit = self._iris_geometry(state)
        offset = self.pupil_offset
        radius = min(state.pupil, 0.85 - float(np.hypot(*offset)))  # as _draw_iris draws it
        shapes = {
            "pupil": (
                centre + np.linalg.solve(to_unit, offset),
                np.diag([1 / radius, 1 / (radius * self.pupil_aspect)]) @ to_unit,
            ),
            "iris": (centre, to_unit),
        }
        out = {}
        for name, (middle, a) in shapes.items():
            eigenvalues, vectors = np.linalg.eigh(a.T @ a)  # ascending: the major axis first
            major, minor = 2 / np.sqrt(eigenvalues)
            direction = vectors[:, 0]
            if self.roll:  # a rotation moves the centre and turns the axes, lengths kept
                turn = self.roll_matrix
                middle, direction = turn[:, :2] @ middle + turn[:, 2], turn[:, :2] @ direction
            angle = math.degrees(math.atan2(direction[1], direction[0])) % 180.0
            out[name] = (float(middle[0]), float(middle[1]), float(major), float(minor), angle)
        return out

    def _glints(self, state: _FrameState, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """LED glints (and now and then a short corneal streak) as an additive layer.

        The corneal bulge moves about half as far as the iris with gaze, so the glint ring
        lags the pupil, as in real eye-tracking images.
        """
        ball = np.array([self.eye_x + state.slip_x, self.ball_y + state.slip_y])
        ring = ball + 0.55 * (centre - ball) + np.array([0.0, -0.1 * self.iris_r])
        xs = ring[0] + self.led_axes[0] * np.cos(self.led_angle)
        ys = ring[1] + self.led_axes[1] * np.sin(self.led_angle)
        layer = np.zeros((HEIGHT, WIDTH), np.uint8)
        # Glints off the cornea, on the sclera, are dimmer.
        on_cornea = np.hypot(xs - centre[0], ys - centre[1]) < self.iris_r
        for x, y, size, bright in zip(xs, ys, self.led_size, on_cornea, strict=True):
            cv2.circle(
                layer, (int(x * 16), int(y * 16)), int(size * 16), 255 if bright else 110, -1, cv2.LINE_AA, 4
            )
        if rng.random() < 0.3:
            start = ring + rng.normal(0, 0.4 * self.iris_r, 2)
            end = start + rng.normal(0, 0.3 * self.iris_r, 2)
            cv2.line(
                layer,
                (int(start[0] * 16), int(start[1] * 16)),
                (int(end[0] * 16), int(end[1] * 16)),
                60,
                3,
                cv2.LINE_AA,
                4,
            )
        glow = cv2.GaussianBlur(layer, (0, 0), 1.0).astype(np.float32)
        return glow * np.float32(state.gain / 255 * 1.3)

    def _lashes(self, upper: np.ndarray, lower: np.ndarray, state: _FrameState) -> np.ndarray:
        """Eyelash coverage 0..1: curved strokes rooted on the current lid lines."""
        ex = self.eye_x + state.slip_x
        root_x = ex + self.lash_t * self.half_width * 0.97
        column = np.clip(root_x.astype(int), 0, WIDTH - 1)
        root_y = np.where(self.lash_upper, upper[column], lower[column])
        # Each lash: a quadratic curve leaning outward, sampled at 4 points (sub-pixel, shift 4).
        s = np.linspace(0, 1, 4)[None, :]
        length = self.lash_len[:, None]
        lean = self.lash_t[:, None] * self.lash_spread[:, None]
        x = root_x[:, None] + length * (lean * s + self.lash_curl[:, None] * s**2)
        y = root_y[:, None] + length * self.lash_dir_y[:, None] * (s - 0.35 * s**2)
        points = (np.stack([x, y], axis=-1) * 16).astype(np.int32)
        layer = np.zeros((HEIGHT, WIDTH), np.uint8)
        thin, thick = self.lash_widths
        cv2.polylines(layer, list(points[~self.lash_thick]), False, 255, thin, cv2.LINE_AA, 4)
        cv2.polylines(layer, list(points[self.lash_thick]), False, 255, thick, cv2.LINE_AA, 4)
        return layer.astype(np.float32) / 255


def eye_frames(count: int, seed: int) -> np.ndarray:
    """`count` rendered eye frames (N, 1, 400, 640) uint8, each from its own sequence: what export.py
    checks a graph on (and calibrates int8 on without a list), and what tests feed an engine."""
    frames = [EyeSequence(seed, index, frames=8).render(index % 8)[0] for index in range(count)]
    return np.stack(frames)[:, None]
