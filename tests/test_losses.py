"""Loss functions: they train, ignore_index means nothing leaks, combos add up, bad names fail."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch.losses import FocalLoss

from losses import LOSSES, ComboLoss, build_loss

IGNORE = 255
SEED_PARAMS = {
    "weights": {"dice": 1, "focal": 1, "bce": 1},
    "ohpm": False,
    "ohpm_pixels": 131072,
    "per_image": False,
}
CASES = [
    ("ComboLoss", SEED_PARAMS),
    ("ComboLoss", {"weights": {"ce": 1, "lovasz": 0.5}, "ohpm": True, "ohpm_pixels": 20, "per_image": True}),
    ("CrossEntropy", {}),
    ("ce", {"ohpm": True, "ohpm_pixels": 10}),
    ("Lovasz", {}),
    ("lovasz", {"per_image": True}),
    ("Dice", {}),
    ("Dice", {"per_image": True}),
    ("Focal", {"gamma": 2.0}),
    ("bce", {}),
]


def make_batch(seed: int = 0, ignore_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (2, 4, 8, 8) and targets with about `ignore_fraction` ignored pixels."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=gen)
    target = torch.randint(0, 4, (2, 8, 8), generator=gen)
    target[torch.rand(2, 8, 8, generator=gen) < ignore_fraction] = IGNORE
    return logits, target


@pytest.mark.parametrize(("loss_type", "params"), CASES)
def test_gradient_step_lowers_loss(loss_type: str, params: dict) -> None:
    loss_fn = build_loss(loss_type, params)
    logits, target = make_batch()
    logits.requires_grad_(True)
    before = loss_fn(logits, target)
    before.backward()
    with torch.no_grad():
        after = loss_fn(logits - 0.5 * logits.grad, target)
    assert torch.isfinite(before) and after < before


@pytest.mark.parametrize(("loss_type", "params"), CASES)
def test_ignored_pixels_contribute_nothing(loss_type: str, params: dict) -> None:
    loss_fn = build_loss(loss_type, params)
    logits, target = make_batch()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = logits.clone()
    changed[ignored] = torch.randn(int(ignored.sum())) * 100

    grads = []
    values = []
    for x in (logits, changed):
        x = x.clone().requires_grad_(True)
        loss = loss_fn(x, target)
        loss.backward()
        values.append(loss.detach())
        grads.append(x.grad)
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert torch.all(grads[0][ignored] == 0)


@pytest.mark.parametrize(("loss_type", "params"), CASES)
def test_all_ignored_batch_is_zero_not_nan(loss_type: str, params: dict) -> None:
    logits, _ = make_batch()
    logits.requires_grad_(True)
    target = torch.full((2, 8, 8), IGNORE)
    loss = build_loss(loss_type, params)(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


def test_one_fully_ignored_image_in_per_image_mode() -> None:
    logits, target = make_batch()
    target[1] = IGNORE
    for loss_type in ("Dice", "Lovasz"):
        per_image = build_loss(loss_type, {"per_image": True})(logits, target)
        first_only = build_loss(loss_type, {})(logits[:1], target[:1])
        torch.testing.assert_close(per_image, first_only)


def test_combo_is_weighted_sum_of_parts() -> None:
    logits, target = make_batch(seed=1)
    weights = {"dice": 1.0, "focal": 2.0, "bce": 0.5, "ce": 0.25, "lovasz": 3.0}
    combo = build_loss("ComboLoss", {"weights": weights})(logits, target)
    expected = sum(w * build_loss(name, {})(logits, target) for name, w in weights.items())
    torch.testing.assert_close(combo, expected)


def test_pixel_terms_match_reference_implementations() -> None:
    logits, target = make_batch(seed=2)
    ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(build_loss("CrossEntropy", {})(logits, target), ce)
    smp_focal = FocalLoss(mode="multiclass", ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(build_loss("Focal", {})(logits, target), smp_focal)


def test_ohpm_averages_the_hardest_pixels() -> None:
    logits, target = make_batch(seed=3)
    valid = target != IGNORE
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    hardest = per_pixel[valid].sort(descending=True).values[:7].mean()
    mined = build_loss("ce", {"ohpm": True, "ohpm_pixels": 7})(logits, target)
    torch.testing.assert_close(mined, hardest)


def test_zero_weight_terms_are_skipped() -> None:
    combo = ComboLoss({"dice": 1, "lovasz": 0})
    assert list(combo.terms) == ["dice"]


@pytest.mark.parametrize(
    ("loss_type", "params", "named"),
    [
        ("Tversky", {}, "Tversky"),
        ("ComboLoss", {"weights": {"dice": 1, "jaccard": 1}}, "jaccard"),
        ("ComboLoss", {"weights": {"dice": 0}}, "at least one"),
        ("ComboLoss", {"weights": {"dice": -1}}, "dice"),
        ("Dice", {"smooth": 1.0}, "smooth"),
        ("ce", {"ohpm": True, "ohpm_pixels": 0}, "ohpm_pixels"),
    ],
)
def test_bad_config_raises_value_error_naming_it(loss_type: str, params: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build_loss(loss_type, params)


def test_registry_names() -> None:
    assert {"ComboLoss", "CrossEntropy", "ce", "Lovasz", "lovasz", "Dice", "Focal"} <= set(LOSSES)
