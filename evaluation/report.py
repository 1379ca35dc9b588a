"""Score saved predictions against ground truth: the sources, the checks, the table and the JSON.

Ground truth comes from a sample list of label files (a fold's ``fold_<k>_val.txt`` or any
``S_0/label_3.npy`` list) or from the challenge's test pickle (``"S_k/<n>.npy"`` -> mask).
Predictions are ``PRED/S_k/<n>.npy`` (``np.save`` of uint8 (400, 640)). A plain images/ + masks/
folder's are ``PRED/<name>.npy``, scored against its masks fitted into 640 x 400 (dataset/folder.py),
255 left out, per group where OpenEDS has sequences. Every number comes
from ``evaluation.metrics.SegmentationMeter``; nothing here computes an IoU of its own.
"""

from __future__ import annotations

import json
import pickle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataset.create_kfolds import fold_files
from dataset.folder import group_of, natural_order
from dataset.openeds import (
    CLASS_NAMES,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    NUM_CLASSES,
    frame_key,
    frame_reader,
    parse_sample_name,
    pred_relpath,
    read_sample_list,
)
from evaluation.metrics import SegmentationMeter, class_iou
from utils.atomic import write_bytes_atomic
from utils.errors import InputError

__all__ = [
    "GroundTruth",
    "FrameScore",
    "ground_truth_from_list",
    "ground_truth_from_fold",
    "ground_truth_from_pickle",
    "read_prediction",
    "score_predictions",
    "rank_frames",
    "format_report",
    "write_bytes_atomic",
    "write_json",
]

SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH)
PROBLEMS_NAMED = 3  # malformed predictions named in the error; the rest are only counted


@dataclass
class GroundTruth:
    """Frame keys to score, where they came from (for the report) and how to read each mask."""

    source: str
    keys: list[str]
    load: Callable[[str], np.ndarray]


def _natural(key: str) -> tuple[int, int]:
    sequence, frame = parse_sample_name(key)
    return int(sequence[2:]), frame


def ground_truth_from_list(data_dir: Path, list_path: Path, source: str | None = None) -> GroundTruth:
    """Labels listed in a sample list (``S_0/label_3.npy`` or ``masks/<name>.png`` lines), read from ``data_dir``."""
    keys = read_sample_list(list_path)
    return GroundTruth(
        source or f"labels listed in {list_path}", keys, frame_reader(Path(data_dir)).read_label
    )


def ground_truth_from_fold(data_dir: Path, fold: int, folds_dir: Path | None = None) -> GroundTruth:
    """Validation labels of fold ``fold``: ``fold_<k>_val.txt`` in ``folds_dir`` (default the data dir)."""
    _, val_file = fold_files(folds_dir if folds_dir is not None else data_dir, fold)
    if not val_file.is_file():
        raise InputError(
            f"fold file not found; create folds first: python -m dataset.create_kfolds --data-dir {data_dir}",
            val_file,
        )
    return ground_truth_from_list(data_dir, val_file, f"fold {fold} ({val_file})")


def _mask_problem(array: Any, exact_dtype: bool) -> str | None:
    """Why ``array`` is not a (400, 640) class mask with values 0..3, or None if it is one.

    ``exact_dtype`` demands uint8 (predictions: the submission encodes the raw .npy bytes);
    otherwise any integer dtype is accepted, as ``read_label`` does for label files.
    """
    if not isinstance(array, np.ndarray):
        return f"not an array ({type(array).__name__})"
    if array.shape != SHAPE:
        return f"shape {array.shape}, expected {SHAPE}"
    if exact_dtype and array.dtype != np.uint8:
        return f"dtype {array.dtype}, expected uint8"
    if not np.issubdtype(array.dtype, np.integer):
        return f"dtype {array.dtype}, expected an integer (uint8) array"
    outside = (array < 0) | (array >= NUM_CLASSES)
    if outside.any():
        return f"values {np.unique(array[outside])[:5].tolist()} outside 0..{NUM_CLASSES - 1}"
    return None


# What a ground-truth pickle may name: numpy's array and dtype rebuilders, nothing else. Dicts,
# strings and numbers need no global at all, so every other name (os.system, builtins.eval, a
# class) is refused before it is looked up, let alone called.
_PICKLE_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2 stores bytes via encode


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """The standard library's way to restrict unpickling: find_class allows listed globals only."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"holds a pickled {module}.{name}")


def ground_truth_from_pickle(path: Path, data_dir: Path | None = None) -> GroundTruth:
    """The challenge's test ground truth: a pickled dict ``"S_k/<n>.npy"`` -> uint8 (400, 640) mask.

    Read through a restricted unpickler (numpy arrays, dicts, strings, numbers only): a pickle
    that names any other class or function is refused without running it. Only `path` is read;
    `data_dir` only serves the hint when the file is there instead.
    """
    try:
        with open(path, "rb") as handle:
            data = _ArraysOnlyUnpickler(handle).load()
    except FileNotFoundError:
        there = Path(data_dir) / path if data_dir is not None and not Path(path).is_absolute() else None
        hint = f" (there is {there}: pass that path)" if there is not None and there.is_file() else ""
        raise InputError(f"ground-truth pickle not found{hint}", path) from None
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("holds a pickled "):
            raise InputError(
                f"{exc}: refused unloaded (only numpy arrays, dicts, strings and numbers are read); "
                "nothing in it was run",
                path,
            ) from None
        raise InputError(f"not a readable pickle (UnpicklingError: {exc})", path) from None
    except Exception as exc:  # unpickling a bad file can raise almost any exception type
        raise InputError(f"not a readable pickle ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(data, dict):
        raise InputError(f'expected a dict "S_k/<n>.npy" -> mask, got {type(data).__name__}', path)
    if not data:
        raise InputError("the ground-truth dict is empty", path)
    masks: dict[str, np.ndarray] = {}
    for name, mask in data.items():
        try:
            key = frame_key(*parse_sample_name(name)) if isinstance(name, str) else None
        except ValueError:
            key = None
        if key is None:
            raise InputError(f'key {name!r} is not a sample name like "S_0/3.npy"', path)
        problem = _mask_problem(mask, exact_dtype=False)
        if problem is not None:
            raise InputError(f"entry {name!r}: {problem}", path)
        if key in masks:
            raise InputError(f"entry {name!r}: frame {key} appears twice", path)
        masks[key] = mask.astype(np.uint8, copy=False)
    return GroundTruth(f"test ground truth ({path})", sorted(masks, key=_natural), masks.__getitem__)


def _load_prediction(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(mask, None) for a well-formed prediction file, else (None, what is wrong)."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError, EOFError) as exc:
        return None, f"unreadable: {' '.join(str(exc).split())}"
    if not isinstance(array, np.ndarray):
        return None, "an .npz archive, expected one .npy array"
    problem = _mask_problem(array, exact_dtype=True)
    return (None, problem) if problem else (array, None)


def read_prediction(pred_dir: Path, key: str) -> np.ndarray:
    """One prediction ``pred_dir/S_k/<n>.npy`` as uint8 (400, 640); InputError naming it if malformed."""
    path = Path(pred_dir) / pred_relpath(key)
    mask, problem = _load_prediction(path)
    if mask is None:
        raise InputError(f"prediction {problem}", path)
    return mask


def score_predictions(truth: GroundTruth, pred_dir: Path) -> SegmentationMeter:
    """Feed every (prediction, truth) pair to a meter; all-or-nothing.

    Predictions are checked while scoring (one pass, one mask pair in memory at a time); if any
    is missing or malformed the whole run fails with one error that counts them and names the
    first few, so no partial result is ever reported as valid.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError("prediction directory not found", pred_dir)
    meter = SegmentationMeter(NUM_CLASSES)
    problems: list[str] = []
    for key in truth.keys:
        target = truth.load(key)
        pred, problem = _load_prediction(pred_dir / pred_relpath(key))
        if pred is None:
            problems.append(f"{pred_relpath(key)} ({problem})")
        elif not problems:  # once one is bad the result is void: only keep checking
            meter.update(pred[None], target[None], names=[key])
    if problems:
        named = ", ".join(problems[:PROBLEMS_NAMED]) + (", ..." if len(problems) > PROBLEMS_NAMED else "")
        raise InputError(
            f"{len(problems)} of {len(truth.keys)} predictions missing or malformed: {named}", pred_dir
        )
    return meter


@dataclass
class FrameScore:
    """Primary mIoU of one frame and its per-class IoU (absent class = 1)."""

    key: str
    miou: float
    class_iou: list[float]


def rank_frames(meter: SegmentationMeter) -> list[FrameScore]:
    """Every frame of the meter, worst primary mIoU first (ties in scoring order)."""
    per_image = class_iou(meter.state().numpy())
    scores = [
        FrameScore(str(name), float(iou.mean()), iou.tolist())
        for name, iou in zip(meter.names, per_image, strict=True)
    ]
    return sorted(scores, key=lambda score: score.miou)


def format_report(
    metrics: dict[str, Any], frame_keys: list[str], header: str, sequences_shown: int = 10
) -> str:
    """Plain aligned text: IoU per class, the three mIoUs, frame count, then the worst sequences."""
    label_w = max(len(name) for name in CLASS_NAMES) + 2
    lines = [header, "", f"{'class':<{label_w}}{'IoU (per frame)':>17}{'IoU (all pixels)':>20}"]
    for name, per_image, dataset in zip(
        CLASS_NAMES, metrics["per_class_iou"], metrics["per_class_iou_dataset"], strict=True
    ):
        lines.append(f"{name:<{label_w}}{per_image:>17.4f}{dataset:>20.4f}")
    summary = [
        ("mIoU (primary: per frame, absent class = 1)", f"{metrics['miou']:.4f}"),
        ("mIoU (dataset: all pixels at once)", f"{metrics['miou_dataset']:.4f}"),
        ("mIoU (OpenEDS 2019: classes in the truth)", f"{metrics['miou_2019']:.4f}"),
        ("frames", str(metrics["n_images"])),
    ]
    summary_w = max(len(label) for label, _ in summary) + 2
    lines += [""] + [f"{label:<{summary_w}}{value:>8}" for label, value in summary]

    per_sequence = metrics["per_sequence"]
    if per_sequence:
        frames = Counter(group_of(key) for key in frame_keys)
        ordered = sorted(per_sequence.items(), key=lambda item: (item[1], natural_order(item[0])))
        name_w = max(len(name) for name in per_sequence) + 2
        lines += ["", f"per-sequence mIoU, worst first ({len(ordered)} sequences):"]
        for name, miou in ordered[:sequences_shown]:
            lines.append(f"  {name:<{name_w}}{miou:.4f}  ({frames[name]} frames)")
        rest = ordered[sequences_shown:]
        if rest:
            lines.append(f"  ... {len(rest)} more, from {rest[0][1]:.4f} to {rest[-1][1]:.4f}")
    return "\n".join(lines)


def write_json(path: Path, metrics: dict[str, Any]) -> None:
    """The meter's metrics as indented JSON, written atomically."""
    write_bytes_atomic(path, (json.dumps(metrics, indent=2) + "\n").encode())
