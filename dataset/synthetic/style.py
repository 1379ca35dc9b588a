"""Camera styles: the ranges every rendered sequence draws its look from (domain randomisation).

A style is a set of knobs. A `(low, high)` knob is drawn uniformly once per sequence (one person
in front of one camera); a `*_p` knob is a per-frame probability; `aspect` is a set of choices.
`classic` is the renderer as the demo has always used it. The others move it toward real
near-eye infrared cameras, each knob's range wide enough to hold what real frames show:

- `headset`: an OpenEDS-like VR headset view, 640 x 400: the whole eye with skin around it, a dark
  vignette with concentric lens rings, long straight lens reflections, a ring of 8-16 tiny glints,
  low contrast (sclera as bright as the skin or darker, the iris often brighter than the sclera),
  lids often half closed, gaze far off-centre.
- `closeup`: a lab eye tracker (DeepVOG, Pupil Labs): a 4:3 camera of 200-400 rows whose iris fills
  much of the frame, a large pupil, 1-3 glints near it, thick lashes top and bottom, bright skin,
  over-exposed and black frames (the frame is letterboxed into 640 x 400 the way segment.py fits it).
- `remote`: a wider field of view: a small eye (iris 30-65 px), rotated, in any aspect, low
  resolution, little vignette.
- `oblique`: a glasses-frame eye camera looking up at the eye from well below (steep
  foreshortening), square or 4:3 at 120-240 rows (Pupil Core's 192 x 192), soft focus, heavy noise and JPEG, bright skin,
  a sclera darker than the skin, an iris brighter than the sclera, a grey pupil under corneal haze. NOT in `real`: it is the
  camera the default model never saw, on which fine-tuning and adaptation are measured.

`python -m dataset.synthetic --list-styles` prints every knob of every style.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass

import numpy as np

from utils.errors import InputError

__all__ = [
    "Style",
    "STYLES",
    "REAL_STYLES",
    "CAMERA_KNOBS",
    "one_camera",
    "style_for",
    "parse_styles",
    "style_table",
]

Range = tuple[float, float]


@dataclass(frozen=True)
class Style:
    """Knobs of one camera style (module docstring). Lengths are pixels of the 640 x 400 frame."""

    name: str
    # Camera geometry
    iris_radius: Range = (82, 112)  # iris radius, px
    eye_shift_x: Range = (-55, 55)  # eye centre from the frame's centre, px
    eye_shift_y: Range = (-5, 45)  # the same, down
    camera_x: Range = (-0.2, 0.2)  # camera direction off the eye's axis, radians (foreshortening)
    camera_y: Range = (-0.35, -0.1)  # the same, vertically (negative: the camera below the eye)
    roll_deg: Range = (0, 0)  # camera roll around the eye, degrees
    aspect: tuple[float, ...] = (1.6,)  # the camera's width / height, letterboxed into 640 x 400
    camera_rows: Range = (400, 400)  # the camera's real rows: fewer = a low-resolution camera upscaled
    gaze: Range = (1.0, 1.0)  # x the usual gaze range (+-26 deg across, +-18 deg up/down)
    # Eye and lids
    pupil_size: Range = (0.3, 0.5)  # pupil radius / iris radius, at rest
    openness: Range = (0.75, 1.0)  # lid opening, x the widest
    blink_rate: Range = (0.03, 0.08)  # per frame
    lash_density: Range = (1.0, 1.0)  # x 70-120 upper and 25-45 lower lashes
    lash_length: Range = (1.0, 1.0)  # x 18-50 px (upper), 8-22 px (lower), at an iris radius of 97 px
    lash_dark: Range = (0.55, 0.85)  # how much of the light a lash stops
    lash_thickness: Range = (1.0, 1.0)  # x 1 px (thin) and 2 px (thick lashes), at an iris radius of 97 px
    lash_down: Range = (0.65, 0.65)  # share of upper lashes hanging down over the eye (the rest point up)
    # Tones (linear 0..1 before gamma)
    skin: Range = (0.42, 0.6)  # skin brightness
    skin_shading: Range = (0.12, 0.12)  # amplitude of the skin's broad unevenness
    skin_texture: Range = (0.04, 0.04)  # amplitude of the skin's pores and fine speckle
    sclera_vs_skin: Range = (1.3, 1.6)  # sclera / skin: 1 = as bright as the skin
    iris: Range = (0.2, 0.42)  # iris brightness (it may exceed the sclera's)
    iris_texture: Range = (1.0, 1.0)  # contrast of the radial fibres and crypts
    pupil: Range = (0.03, 0.09)  # pupil brightness
    corneal_haze: Range = (0.0, 0.0)  # the room mirrored in the cornea: soft light over iris and pupil
    # Headset optics
    vignette: Range = (0.55, 0.8)  # darkening towards the corners (1: black corners)
    lens_rings: Range = (0.02, 0.05)  # amplitude of the concentric lens rings
    arc_streaks: Range = (1, 3)  # faint curved reflections, count
    arc_strength: Range = (0.04, 0.12)  # their brightness
    reflections: Range = (0, 0)  # long straight bright lens reflections across the frame, count
    reflection_strength: Range = (0.1, 0.5)  # their brightness
    glints: Range = (8, 12)  # corneal glints of the LEDs, count
    glint_size: Range = (1.2, 2.6)  # radius, px
    glint_spread: Range = (1.0, 1.0)  # x the LED ring's size on the cornea
    # Sensor
    exposure: Range = (0.85, 1.15)  # gain before clipping
    gamma: Range = (0.8, 1.25)  # the sensor's response curve
    blur: Range = (0.6, 1.2)  # focus blur sigma, px
    read_noise: Range = (0.008, 0.02)  # noise sigma, constant
    shot_noise: Range = (0.01, 0.025)  # noise sigma x sqrt(signal)
    jpeg_quality: Range = (101, 101)  # above 100: no compression
    # Per-frame events
    black_p: float = 0.0  # the illumination off: a black frame, labelled all background
    overexposed_p: float = 0.0  # exposure x 2-4, clipped
    occluder_p: float = 0.0  # a dark or bright band (a finger, hair) over the eye, labelled background

    @property
    def is_classic(self) -> bool:
        return self.name == "classic"


CLASSIC = Style("classic")

HEADSET = Style(
    "headset",
    iris_radius=(62, 118),
    eye_shift_x=(-90, 90),
    eye_shift_y=(-40, 60),
    camera_x=(-0.4, 0.4),
    camera_y=(-0.55, 0.05),
    roll_deg=(-12, 12),
    camera_rows=(300, 400),
    gaze=(1.0, 1.4),
    pupil_size=(0.2, 0.55),
    openness=(0.35, 1.0),
    blink_rate=(0.03, 0.1),
    lash_density=(0.4, 1.3),
    lash_length=(0.7, 1.4),
    lash_dark=(0.3, 0.85),
    lash_thickness=(0.7, 2.0),
    lash_down=(0.3, 0.8),
    skin=(0.25, 0.75),
    skin_texture=(0.02, 0.15),
    skin_shading=(0.08, 0.3),
    sclera_vs_skin=(0.75, 1.45),
    iris=(0.15, 0.7),
    iris_texture=(0.5, 1.8),
    pupil=(0.01, 0.15),
    corneal_haze=(0.0, 0.12),
    vignette=(0.5, 1.1),
    lens_rings=(0.02, 0.3),
    arc_streaks=(0, 3),
    arc_strength=(0.04, 0.3),
    reflections=(0, 4),
    reflection_strength=(0.1, 0.7),
    glints=(8, 16),
    glint_size=(0.8, 2.4),
    glint_spread=(0.8, 1.3),
    exposure=(0.6, 1.5),
    gamma=(0.6, 1.5),
    blur=(0.4, 1.6),
    read_noise=(0.005, 0.04),
    shot_noise=(0.005, 0.04),
    jpeg_quality=(40, 101),
    black_p=0.01,
    overexposed_p=0.02,
    occluder_p=0.03,
)

CLOSEUP = Style(
    "closeup",
    iris_radius=(120, 230),
    eye_shift_x=(-140, 140),
    eye_shift_y=(-70, 90),
    camera_x=(-0.4, 0.4),
    camera_y=(-0.45, 0.2),
    roll_deg=(-15, 15),
    aspect=(4 / 3, 4 / 3, 1.6, 1.25),
    camera_rows=(180, 400),
    gaze=(0.8, 1.3),
    pupil_size=(0.25, 0.6),
    openness=(0.45, 1.0),
    blink_rate=(0.02, 0.08),
    lash_density=(0.8, 2.5),
    lash_length=(0.8, 1.6),
    lash_dark=(0.5, 0.95),
    lash_thickness=(0.8, 2.5),
    lash_down=(0.15, 0.7),
    skin=(0.4, 0.85),
    skin_texture=(0.03, 0.25),
    skin_shading=(0.08, 0.3),
    sclera_vs_skin=(0.8, 1.35),
    iris=(0.15, 0.7),
    iris_texture=(0.5, 1.8),
    pupil=(0.0, 0.12),
    corneal_haze=(0.0, 0.15),
    vignette=(0.0, 0.5),
    lens_rings=(0.0, 0.03),
    arc_streaks=(0, 2),
    arc_strength=(0.04, 0.2),
    reflections=(0, 1),
    reflection_strength=(0.1, 0.4),
    glints=(1, 4),
    glint_size=(2.0, 10.0),
    glint_spread=(0.05, 0.6),
    exposure=(0.7, 1.35),
    gamma=(0.5, 1.4),
    blur=(0.4, 1.8),
    read_noise=(0.005, 0.03),
    shot_noise=(0.005, 0.04),
    jpeg_quality=(35, 101),
    black_p=0.02,
    overexposed_p=0.04,
    occluder_p=0.03,
)

REMOTE = Style(
    "remote",
    iris_radius=(30, 65),
    eye_shift_x=(-170, 170),
    eye_shift_y=(-100, 100),
    camera_x=(-0.45, 0.45),
    camera_y=(-0.45, 0.3),
    roll_deg=(-30, 30),
    aspect=(4 / 3, 1.6, 16 / 9, 1.0),
    camera_rows=(160, 400),
    gaze=(0.8, 1.4),
    pupil_size=(0.2, 0.6),
    openness=(0.4, 1.0),
    lash_density=(0.3, 1.2),
    lash_length=(0.6, 1.4),
    lash_dark=(0.3, 0.85),
    lash_thickness=(0.7, 1.8),
    lash_down=(0.3, 0.8),
    skin=(0.25, 0.85),
    skin_texture=(0.02, 0.2),
    skin_shading=(0.08, 0.35),
    sclera_vs_skin=(0.8, 1.6),
    iris=(0.1, 0.65),
    iris_texture=(0.5, 1.6),
    pupil=(0.0, 0.15),
    corneal_haze=(0.0, 0.12),
    vignette=(0.0, 0.5),
    lens_rings=(0.0, 0.05),
    arc_streaks=(0, 2),
    reflections=(0, 2),
    glints=(1, 6),
    glint_size=(0.8, 2.5),
    glint_spread=(0.2, 1.0),
    exposure=(0.6, 1.4),
    gamma=(0.6, 1.5),
    blur=(0.3, 1.5),
    read_noise=(0.005, 0.04),
    shot_noise=(0.005, 0.04),
    jpeg_quality=(35, 101),
    black_p=0.01,
    overexposed_p=0.02,
    occluder_p=0.03,
)

# Kept out of REAL_STYLES on purpose: the camera the default model never saw, on which
# README "Your own camera" and BENCHMARKS measure fine-tuning and adaptation (issue "Real eyes II").
OBLIQUE = Style(
    "oblique",
    iris_radius=(90, 170),
    eye_shift_x=(-110, 110),
    eye_shift_y=(-90, 30),
    camera_x=(-0.55, 0.55),
    camera_y=(-0.9, -0.6),
    roll_deg=(-25, 25),
    aspect=(1.0, 4 / 3),
    camera_rows=(120, 240),
    gaze=(0.8, 1.2),
    pupil_size=(0.2, 0.6),
    openness=(0.5, 1.0),
    blink_rate=(0.02, 0.06),
    lash_density=(0.6, 1.8),
    lash_length=(0.8, 1.6),
    lash_dark=(0.4, 0.9),
    lash_thickness=(0.8, 2.2),
    lash_down=(0.2, 0.6),
    skin=(0.55, 0.9),
    skin_texture=(0.05, 0.2),
    skin_shading=(0.15, 0.35),
    sclera_vs_skin=(0.55, 0.9),
    iris=(0.45, 0.8),
    iris_texture=(0.3, 1.0),
    pupil=(0.05, 0.22),
    corneal_haze=(0.05, 0.2),
    vignette=(0.0, 0.3),
    lens_rings=(0.0, 0.02),
    arc_streaks=(0, 1),
    reflections=(0, 0),
    glints=(2, 5),
    glint_size=(1.5, 5.0),
    glint_spread=(0.3, 0.8),
    exposure=(0.8, 1.3),
    gamma=(0.45, 0.8),
    blur=(1.2, 3.0),
    read_noise=(0.02, 0.06),
    shot_noise=(0.01, 0.05),
    jpeg_quality=(30, 80),
    black_p=0.01,
    overexposed_p=0.02,
    occluder_p=0.02,
)

STYLES: dict[str, Style] = {style.name: style for style in (CLASSIC, HEADSET, CLOSEUP, REMOTE, OBLIQUE)}
# What "randomised toward real cameras" means when no style is named: all three camera styles.
REAL_STYLES = ("headset", "closeup", "remote")


# What one camera fixes: its placement on the head, lens, LEDs and sensor. A style draws these per
# sequence (every sequence another camera); `one_camera` draws them once, so its sequences are
# different people (eye, lids, lashes, skin, iris, gaze) in front of the same camera.
CAMERA_KNOBS = (
    "camera_x", "camera_y", "roll_deg", "aspect", "camera_rows", "vignette", "lens_rings", "arc_streaks",
    "arc_strength", "reflections", "reflection_strength", "glints", "glint_spread", "exposure", "gamma",
    "blur", "read_noise", "shot_noise", "jpeg_quality",
)  # fmt: skip


def one_camera(style: Style, camera: int) -> Style:
    """Camera number `camera` of `style`: every CAMERA_KNOBS range collapsed to one value drawn
    with that seed (an aspect: one of its choices), named 'style@camera'; the rest unchanged."""
    rng = np.random.default_rng([camera, 7919])
    fixed: dict[str, object] = {}
    for knob in CAMERA_KNOBS:
        value = getattr(style, knob)
        if knob == "aspect":
            fixed[knob] = (value[int(rng.integers(len(value)))],)
        else:
            drawn = float(rng.uniform(*value))
            fixed[knob] = (drawn, drawn)
    return dataclasses.replace(style, name=f"{style.name}@{camera}", **fixed)


def style_for(name: str) -> Style:
    """A style of STYLES by name, or 'name@k': camera k of it (one_camera). InputError otherwise."""
    base, _, camera = name.partition("@")
    if base not in STYLES or (camera and (not camera.isdigit() or base == "classic")):
        raise InputError(
            f"unknown renderer style {name!r} (known: {', '.join(STYLES)}, real; NAME@K is camera K of a style but classic)"
        )
    return one_camera(STYLES[base], int(camera)) if camera else STYLES[base]


def parse_styles(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'headset,closeup' (or a list) -> the style names, checked; 'real' stands for REAL_STYLES;
    'oblique@3' is camera 3 of a style (one_camera)."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if name == "real":
            out.extend(REAL_STYLES)
        else:
            style_for(name)
            out.append(name)
    if not out:
        raise InputError("no renderer style named")
    return tuple(out)


def knob_docs() -> dict[str, str]:
    """Each knob's meaning: its comment in Style's source, the one place it is written."""
    found = re.findall(r"^    (\w+): [^=\n]+=[^#\n]+# (.+)$", inspect.getsource(Style), flags=re.MULTILINE)
    return dict(found)


def style_table() -> str:
    """Every knob of every style, with its meaning, as a Markdown table (docs and `--list-styles`)."""
    knobs = [f.name for f in dataclasses.fields(Style) if f.name != "name"]
    docs = knob_docs()

    def cell(knob: str, value: object) -> str:
        if knob == "aspect":  # choices
            return ", ".join(f"{v:.3g}" for v in sorted(set(value)))
        if isinstance(value, tuple):
            return f"{value[0]:g} .. {value[1]:g}"
        return f"{value:g}"

    lines = ["| knob | meaning | " + " | ".join(STYLES) + " |", "|---|---|" + "---|" * len(STYLES)]
    lines += [
        f"| `{k}` | {docs[k]} | " + " | ".join(cell(k, getattr(s, k)) for s in STYLES.values()) + " |"
        for k in knobs
    ]
    return "\n".join(lines)
