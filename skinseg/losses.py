"""Segmentation losses on logits: Dice, IoU (Jaccard), Dice + BCE and the Lovász hinge.

All take ``(N, 1, H, W)`` logits and a ``(N, 1, H, W)`` target in {0, 1} and return
a scalar tensor (lower is better). ``reduction="image"`` computes the soft score
per image then averages (every image counts the same, like the ISIC metric);
``reduction="batch"`` pools all pixels of the batch (as smp does). ``smooth``
keeps both stable on empty masks: an empty target with an empty prediction
gives a loss near 0.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import did_you_mean
from .errors import ConfigError, UnknownNameError

__all__ = ["DiceLoss", "IoULoss", "DiceBCELoss", "LovaszHingeLoss", "create_loss", "LOSSES"]

Reduction = Literal["image", "batch"]


def _soft_counts(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ConfigError(f"`logits` and `target` must have the same shape; got {tuple(logits.shape)} and {tuple(target.shape)}.")
    prob = torch.sigmoid(logits.float())
    target = target.float()
    dims = tuple(range(1, prob.ndim)) if reduction == "image" else tuple(range(prob.ndim))
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return inter, total


class _SoftLoss(nn.Module):
    def __init__(self, *, reduction: Reduction = "image", smooth: float = 1.0) -> None:
        super().__init__()
        if reduction not in ("image", "batch"):
            raise ConfigError(f"`reduction` must be 'image' or 'batch'; got {reduction!r}.")
        if smooth < 0:
            raise ConfigError(f"`smooth` must be >= 0; got {smooth!r}.")
        self.reduction = reduction
        self.smooth = float(smooth)


class DiceLoss(_SoftLoss):
    """1 - soft Dice = 1 - (2 |P.T| + s) / (|P| + |T| + s)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, total = _soft_counts(logits, target, self.reduction)
        return (1 - (2 * inter + self.smooth) / (total + self.smooth).clamp_min(1e-7)).mean()


class IoULoss(_SoftLoss):
    """1 - soft Jaccard = 1 - (|P.T| + s) / (|P| + |T| - |P.T| + s)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, total = _soft_counts(logits, target, self.reduction)
        return (1 - (inter + self.smooth) / (total - inter + self.smooth).clamp_min(1e-7)).mean()


class DiceBCELoss(nn.Module):
    """``dice_weight * DiceLoss + bce_weight * BCEWithLogits`` (BCE averaged over pixels)."""

    def __init__(self, *, reduction: Reduction = "image", smooth: float = 1.0, dice_weight: float = 1.0,
                 bce_weight: float = 1.0) -> None:
        super().__init__()
        self.dice = DiceLoss(reduction=reduction, smooth=smooth)
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return self.dice_weight * self.dice(logits, target) + self.bce_weight * bce


class LovaszHingeLoss(nn.Module):
    """The Lovász hinge (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU, optimised directly.

    With ``reduction="image"`` (default) it is computed per image and averaged, like the
    ISIC per-image Jaccard; ``"batch"`` pools the pixels of the batch. Errors are hinge
    margins on the logits (``1 - logit * sign``), sorted and weighted by the Lovász
    extension of the Jaccard loss, so the pixels that would flip the IoU most weigh most.
    Thin wrapper over ``segmentation_models_pytorch.losses.LovaszLoss("binary")``. Best
    used to fine-tune a model trained with :class:`DiceBCELoss` (as Berman et al. advise).
    """

    def __init__(self, *, reduction: Reduction = "image") -> None:
        super().__init__()
        if reduction not in ("image", "batch"):
            raise ConfigError(f"`reduction` must be 'image' or 'batch'; got {reduction!r}.")
        import os

        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        from segmentation_models_pytorch.losses import LovaszLoss

        self.reduction = reduction
        self._lovasz = LovaszLoss("binary", per_image=reduction == "image", from_logits=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            shapes = f"{tuple(logits.shape)} and {tuple(target.shape)}"
            raise ConfigError(f"`logits` and `target` must have the same shape; got {shapes}.")
        return self._lovasz(logits.float(), target.float())


LOSSES = {"dice": DiceLoss, "iou": IoULoss, "dice_bce": DiceBCELoss, "lovasz": LovaszHingeLoss}


def create_loss(name: str, **kwargs: object) -> nn.Module:
    """Create a loss by name: ``"dice"``, ``"iou"``, ``"dice_bce"`` or ``"lovasz"``."""
    key = str(name).lower()
    if key not in LOSSES:
        valid = sorted(LOSSES)
        raise UnknownNameError(f"Unknown loss {name!r}. Available: {', '.join(valid)}.{did_you_mean(name, valid)}")
    return LOSSES[key](**kwargs)
