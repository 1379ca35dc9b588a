"""Metrics: checked against sklearn's jaccard_score and a brute-force per-pixel count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from evaluation.metrics import SegmentationMeter, class_iou, confusion_matrix, miou_2019

C = 4
IGNORE = 255


def random_batch(
    seed: int, batch: int = 6, shape: tuple[int, int] = (10, 12)
) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 predictions and targets, with classes missing from pred, truth or both."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, C, (batch, *shape)).astype(np.uint8)
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, C, target.shape)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = IGNORE
    target[0][target[0] == 3] = 1  # class 3 missing from truth only
    pred[1][pred[1] == 2] = 0  # class 2 missing from prediction only
    target[2][target[2] == 1] = 0  # class 1 missing from both
    pred[2][pred[2] == 1] = 0
    return pred, target


def brute_force_iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class IoU of one image by counting pixels one by one; NaN where the union is empty."""
    inter, union = np.zeros(C), np.zeros(C)
    for p, t in zip(pred.ravel().tolist(), target.ravel().tolist(), strict=True):
        if t == IGNORE:
            continue
        for c in range(C):
            inter[c] += p == c and t == c
            union[c] += p == c or t == c
    with np.errstate(invalid="ignore"):
        return inter / union


def sklearn_iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class IoU over the non-ignored pixels, an empty union scoring 1."""
    keep = target != IGNORE
    return jaccard_score(target[keep], pred[keep], labels=list(range(C)), average=None, zero_division=1.0)


def test_confusion_matrix_rows_are_truth_and_ignore_is_dropped() -> None:
    target = np.array([[0, 1, 1, IGNORE]])
    pred = np.array([[0, 2, 1, 3]])
    expected = np.zeros((C, C), np.int64)
    expected[0, 0] = expected[1, 2] = expected[1, 1] = 1
    cm = confusion_matrix(pred, target)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_labels_out_of_range_raise() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([4]), np.array([0]))


def test_per_image_iou_matches_sklearn_and_brute_force() -> None:
    pred, target = random_batch(seed=0)
    iou = class_iou(confusion_matrix(pred, target, per_image=True))
    for i in range(len(pred)):
        np.testing.assert_allclose(iou[i], sklearn_iou(pred[i], target[i]))
        np.testing.assert_allclose(iou[i], np.nan_to_num(brute_force_iou(pred[i], target[i]), nan=1.0))
    assert iou[2, 1] == 1.0  # absent from both
    assert iou[0, 3] == 0.0 and iou[1, 2] == 0.0  # absent from one side only


def test_meter_metrics_match_independent_computation() -> None:
    pred, target = random_batch(seed=1)
    meter = SegmentationMeter()
    meter.update(pred, target)
    result = meter.compute()

    per_image = np.stack([sklearn_iou(p, t) for p, t in zip(pred, target, strict=True)])
    keep = target != IGNORE
    dataset = jaccard_score(target[keep], pred[keep], labels=list(range(C)), average=None, zero_division=1.0)
    in_truth = [
        np.nanmean(np.where(np.isin(range(C), t), brute_force_iou(p, t), np.nan))
        for p, t in zip(pred, target, strict=True)
    ]

    assert result["n_images"] == len(pred)
    assert result["miou"] == pytest.approx(per_image.mean())
    np.testing.assert_allclose(result["per_class_iou"], per_image.mean(0))
    np.testing.assert_allclose(result["per_class_iou_dataset"], dataset)
    assert result["miou_dataset"] == pytest.approx(dataset.mean())
    assert result["miou_2019"] == pytest.approx(np.mean(in_truth))
    assert result["per_sequence"] == {}


def test_2019_variant_skips_classes_absent_from_truth() -> None:
    cm = np.zeros((C, C), np.int64)
    cm[0, 0], cm[1, 1], cm[1, 3] = 5, 1, 1  # truth has 0 and 1; 3 is predicted but not true
    assert miou_2019(cm) == pytest.approx((1.0 + 0.5) / 2)


def test_torch_and_numpy_inputs_agree() -> None:
    pred, target = random_batch(seed=2)
    from_numpy, from_torch = SegmentationMeter(), SegmentationMeter()
    from_numpy.update(pred, target)
    from_torch.update(torch.from_numpy(pred).long(), torch.from_numpy(target).long())
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target))
    assert isinstance(cm, torch.Tensor) and cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), confusion_matrix(pred, target))
    assert from_numpy.compute() == from_torch.compute()


def test_per_sequence_groups_by_prefix() -> None:
    pred, target = random_batch(seed=3, batch=4)
    names = ["S_3/17", "S_3/label_20.npy", "S_10/4", "S_10/9"]
    meter = SegmentationMeter()
    meter.update(pred, target, names=names)
    per_sequence = meter.compute()["per_sequence"]

    for seq, rows in {"S_3": [0, 1], "S_10": [2, 3]}.items():
        alone = SegmentationMeter()
        alone.update(pred[rows], target[rows])
        assert per_sequence[seq] == pytest.approx(alone.compute()["miou"])


def test_merged_states_equal_one_meter_fed_everything() -> None:
    pred, target = random_batch(seed=4)
    names = [f"S_{i % 2}/{i}" for i in range(len(pred))]
    whole = SegmentationMeter()
    whole.update(pred, target, names=names)
    ranks = [SegmentationMeter(), SegmentationMeter()]
    ranks[0].update(pred[:2], target[:2], names=names[:2])
    ranks[1].update(torch.from_numpy(pred[2:]), torch.from_numpy(target[2:]), names=names[2:])

    merged = SegmentationMeter()
    for rank in ranks:
        merged.merge(rank)
    assert merged.compute() == whole.compute()

    # What distributed validation does: concatenate the state tensors (plus all-gather padding).
    gathered = torch.cat([ranks[0].state(), ranks[1].state(), torch.zeros(1, C, C, dtype=torch.int64)])
    assert gathered.dtype == torch.int64
    rebuilt = SegmentationMeter.from_state(gathered, num_classes=C)
    assert rebuilt.compute() == {**whole.compute(), "per_sequence": {}}
    with_names = SegmentationMeter.from_state(gathered[: len(names)], names=names)
    assert with_names.compute() == whole.compute()


def test_fully_ignored_images_are_dropped_and_empty_meter_is_nan() -> None:
    meter = SegmentationMeter()
    assert np.isnan(meter.compute()["miou"]) and np.isnan(meter.compute()["miou_dataset"])
    pred, target = random_batch(seed=5, batch=3)
    target[1] = IGNORE
    meter.update(pred, target)
    assert meter.compute()["n_images"] == 2
