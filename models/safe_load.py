"""torch.load with weights_only=True, plus the numpy globals of the original recipe's checkpoints.

The recipe's train.py saved `{"epoch", "state_dict", "miou_best"}` with `miou_best` a numpy
float64 (np.mean of per-image scores). Pickled, that scalar is `numpy.core.multiarray.scalar`
(`numpy._core.multiarray.scalar` since numpy 2) applied to a `numpy.dtype` whose state is set
on a `numpy.dtypes.Float64DType`, all of which the weights-only unpickler refuses. Exactly those globals are allowed, and only while one file is
read: a pickled array, class or function is still refused unloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RECIPE_NUMPY_GLOBALS", "load_weights_only"]

_scalar = np._core.multiarray.scalar
RECIPE_NUMPY_GLOBALS: list[Any] = [
    (_scalar, "numpy.core.multiarray.scalar"),  # pickled by numpy 1.x, the recipe's
    (_scalar, "numpy._core.multiarray.scalar"),  # pickled by numpy 2.x
    np.dtype,
    np.dtypes.Float64DType,
]


def load_weights_only(path: Path | str) -> Any:
    """Read a torch file on the CPU: tensors, plain values and numpy scalars only, no code."""
    with torch.serialization.safe_globals(RECIPE_NUMPY_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)
