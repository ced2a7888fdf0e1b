"""Losses on logits: agreement with smp where definitions match, stability on empty masks."""

from __future__ import annotations

import pytest
import torch

from skinseg.errors import ConfigError, UnknownNameError
from skinseg.losses import DiceBCELoss, DiceLoss, IoULoss, create_loss

smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")


def _batch(seed: int = 0, n: int = 3, hw: int = 16):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 1, hw, hw, generator=g) * 3
    target = (torch.rand(n, 1, hw, hw, generator=g) > 0.6).float()
    return logits, target


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_batch_reduction_matches_smp(seed, smooth):
    logits, target = _batch(seed)
    # smp 0.6 computes Dice as a Tversky score, (TP + s) / (TP + FP/2 + FN/2 + s): its smoothing s is
    # our 2s in (2 TP + s) / (|P| + |T| + s).
    ours_dice = DiceLoss(reduction="batch", smooth=2 * smooth)(logits, target)
    ref_dice = smp_losses.DiceLoss("binary", from_logits=True, smooth=smooth)(logits, target)
    assert torch.allclose(ours_dice, ref_dice, atol=1e-6)
    ours_iou = IoULoss(reduction="batch", smooth=smooth)(logits, target)
    ref_iou = smp_losses.JaccardLoss("binary", from_logits=True, smooth=smooth)(logits, target)
    assert torch.allclose(ours_iou, ref_iou, atol=1e-6)


def test_image_reduction_is_mean_of_single_images():
    logits, target = _batch(1)
    loss = DiceLoss(reduction="image")(logits, target)
    singles = [DiceLoss(reduction="batch")(logits[i:i + 1], target[i:i + 1]) for i in range(3)]
    assert torch.allclose(loss, torch.stack(singles).mean(), atol=1e-6)


def test_perfect_prediction_scores_near_zero_and_wrong_near_one():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 20
    assert float(DiceLoss()(good, target)) < 1e-3
    assert float(IoULoss()(good, target)) < 1e-3
    assert float(DiceLoss(smooth=0)(-good, target)) > 0.99


@pytest.mark.parametrize("cls", [DiceLoss, IoULoss, DiceBCELoss])
def test_empty_masks_are_stable(cls):
    target = torch.zeros(2, 1, 8, 8)
    logits = torch.full((2, 1, 8, 8), -20.0, requires_grad=True)
    loss = cls()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) < 1e-3
    assert torch.isfinite(logits.grad).all()
    # an empty target with a confident false positive is penalised
    assert float(cls()(torch.full((2, 1, 8, 8), 20.0), target)) > 0.9


def test_dice_bce_is_weighted_sum():
    logits, target = _batch(2)
    combo = DiceBCELoss(dice_weight=0.3, bce_weight=2.0)(logits, target)
    expected = 0.3 * DiceLoss()(logits, target) + 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(combo, expected, atol=1e-6)


def test_errors():
    with pytest.raises(ConfigError, match="reduction"):
        DiceLoss(reduction="sum")
    with pytest.raises(ConfigError, match="same shape"):
        DiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(UnknownNameError, match="Did you mean 'dice'"):
        create_loss("dise")
    assert isinstance(create_loss("IoU"), IoULoss)


# --- Lovász hinge ------------------------------------------------------------------------------


def test_lovasz_matches_smp_per_image_and_batch():
    from skinseg.losses import LovaszHingeLoss

    logits, target = _batch(4)
    ref = smp_losses.LovaszLoss("binary", per_image=True)(logits, target)
    assert torch.allclose(LovaszHingeLoss()(logits, target), ref, atol=1e-6)
    one = LovaszHingeLoss(reduction="batch")
    singles = torch.stack([one(logits[i:i + 1], target[i:i + 1]) for i in range(3)])
    assert torch.allclose(LovaszHingeLoss()(logits, target), singles.mean(), atol=1e-6)
    pooled = smp_losses.LovaszLoss("binary", per_image=False)(logits, target)
    assert torch.allclose(LovaszHingeLoss(reduction="batch")(logits, target), pooled, atol=1e-6)


def test_lovasz_known_answers_and_gradient():
    from skinseg.losses import LovaszHingeLoss

    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 5  # every pixel right with a margin > 1
    assert float(LovaszHingeLoss()(perfect, target)) == pytest.approx(0.0)
    wrong = -perfect
    assert float(LovaszHingeLoss()(wrong, target)) > 1.0
    logits = torch.zeros(2, 1, 8, 8, requires_grad=True)
    LovaszHingeLoss()(logits, target).backward()
    # at zero logits, raising lesion logits and lowering background logits both lower the loss
    assert (logits.grad[target.bool()] < 0).all() and (logits.grad[~target.bool()] >= 0).all()


def test_lovasz_by_name_and_errors():
    from skinseg.losses import LovaszHingeLoss

    assert isinstance(create_loss("Lovasz"), LovaszHingeLoss)
    with pytest.raises(ConfigError, match="same shape"):
        LovaszHingeLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ConfigError, match="reduction"):
        LovaszHingeLoss(reduction="pixel")
    with pytest.raises(UnknownNameError, match="lovasz"):
        create_loss("lovasz_hinge")
