"""The synthetic OpenEDS 2020 generator: no real data can be downloaded here, so every command
and test in the repo trains and is judged on frames made by this package.

Each sequence is one simulated person wearing a VR headset: a fixed identity (eye position,
scale, skin, iris, lighting, camera) and a 5 Hz trajectory of gaze (smooth drift with
saccades), pupil dilation and blinks (render.py draws it); layout.py plans the labelled and
hidden test frames and writes the dataset folder; cli.py is the command line:

    python -m dataset.synthetic --out data/synthetic --sequences 24 --frames 60 --workers 2
"""

from dataset.synthetic.layout import MARKER_NAME, SequencePlan, generate, is_complete, plan_sequence
from dataset.synthetic.render import HEIGHT, WIDTH, EyeSequence

__all__ = [
    "HEIGHT",
    "WIDTH",
    "MARKER_NAME",
    "EyeSequence",
    "SequencePlan",
    "plan_sequence",
    "generate",
    "is_complete",
]
