"""Freshly rendered training frames: a Dataset whose every index is a new eye, never written to disk.

`make pretrain` trains on these (configs/pretrain.yaml, `data.render`): frame i is frame
(i mod 8) of sequence i of style styles[i mod len(styles)], so an index renders the same
frame in any process, and a run that draws new indices every epoch never sees a frame twice.
Each frame is its own person (a sequence is set up for one frame): slower than rendering many
frames of one sequence, but a shuffled epoch would visit sequences in random order anyway.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from dataset.synthetic.render import EyeSequence
from dataset.synthetic.style import parse_styles

__all__ = ["RenderedFrames"]

# Frames simulated per sequence: the trajectory's later frames hold saccades and blinks that
# its first frame never does.
SEQUENCE_FRAMES = 8


class RenderedFrames(Dataset):
    """`length` rendered frames -> {"image": uint8 (1, 400, 640), "mask": int64 (400, 640), "name"}.

    `seed` keeps these frames apart from any on-disk synthetic dataset of the same seed (their
    sequence indices start at 10**6).
    """

    def __init__(self, styles: list[str] | tuple[str, ...], length: int, seed: int = 0) -> None:
        self.styles, self.length, self.seed = parse_styles(list(styles)), length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        style = self.styles[index % len(self.styles)]
        sequence = EyeSequence(self.seed, 10**6 + index, SEQUENCE_FRAMES, style)
        image, label = sequence.render(index * 5 % SEQUENCE_FRAMES)
        return {
            "image": torch.from_numpy(image)[None],
            "mask": torch.from_numpy(label).long(),
            "name": f"rendered/{style}/{index}",
        }
