"""Classifier inference on (image, mask) pairs: lesion crops, class probabilities, optional flip TTA.

Symmetric with the segmenter's API: :func:`predict_proba` takes one image (and its
mask) and returns (K,) probabilities, :func:`predict_proba_batch` takes lists and
returns (N, K), :func:`predict_label` returns the class name and :func:`predict` a
``{label: probability}`` dict. Each member of an ensemble cuts its own crop (its crop
mode and input size) and the members' softmax probabilities are averaged.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import as_bool_mask, check_rgb_image
from ..crops import crop_lesion
from ..errors import ConfigError, MaskShapeError
from ..models.classifiers import Classifier, ClassifierEnsemble
from ..models.config import ClassifierConfig

__all__ = [
    "prepare_crop",
    "crops_to_tensor",
    "predict_proba",
    "predict_proba_batch",
    "predict_proba_crops",
    "predict_label",
    "predict",
]


def prepare_crop(
    image: np.ndarray, mask: np.ndarray | None, config: ClassifierConfig
) -> tuple[np.ndarray, bool]:
    """The uint8 crop a classifier with ``config`` sees, and whether the mask was empty.

    An empty or missing mask (nothing segmented) falls back to the whole image as
    the lesion box, so a prediction is still made; the flag reports it. With
    ``config.color_norm`` the whole image is colour-normalised first.
    """
    check_rgb_image(image)
    if config.color_norm:
        from ..preprocess.color import normalize_color

        image = normalize_color(image, method=config.color_norm)
    empty = mask is None
    if mask is not None:
        m = as_bool_mask(mask)
        if m.shape != image.shape[:2]:
            raise MaskShapeError(
                f"The mask is {m.shape[0]}x{m.shape[1]} (HxW) but the image is "
                f"{image.shape[0]}x{image.shape[1]}; they must match."
            )
        empty = not m.any()
    if config.crop_mode == "full":
        return crop_lesion(image, mode="full", size=config.input_size), empty
    if empty:
        m = np.ones(image.shape[:2], bool)
        return crop_lesion(image, m, mode=config.crop_mode, size=config.input_size, margin=0.0), True
    return crop_lesion(image, m, mode=config.crop_mode, size=config.input_size, margin=config.margin), False


def crops_to_tensor(crops: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    """(N, S, S, C) uint8 crops -> normalised (N, C, S, S) float32 tensor (the mask channel maps to [-1, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(list(config.mean) + [0.5] * (x.shape[1] - 3)).view(1, -1, 1, 1)
    std = torch.tensor(list(config.std) + [0.5] * (x.shape[1] - 3)).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def _member_proba(model: Classifier, crops: np.ndarray, tta: bool, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(crops), batch_size):
        x = crops_to_tensor(crops[i : i + batch_size], model.config)
        x = x.to(next(model.parameters()).device)
        views = [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)] if tta else [x]
        p = torch.stack([torch.softmax(model(v), dim=1) for v in views]).mean(0)
        out.append(p.cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def predict_proba_crops(
    model: Classifier, crops: np.ndarray, *, tta: bool = False, batch_size: int = 32
) -> np.ndarray:
    """Probabilities (N, K) for crops already cut by :func:`prepare_crop` for this (single) model's config."""
    if not isinstance(model, Classifier):
        raise ConfigError(
            "predict_proba_crops takes one Classifier (ensemble members cut different crops); "
            "use predict_proba_batch(model, images, masks) for an ensemble."
        )
    return _member_proba(model, np.asarray(crops), tta, batch_size)


def _check_classifier(model: Any) -> None:
    if not isinstance(model, Classifier | ClassifierEnsemble):
        raise ConfigError(
            f"`model` must be a skinseg Classifier or ClassifierEnsemble (load_classifier / create_classifier); "
            f"got {type(model).__name__}."
        )


def predict_proba_batch(
    model: Classifier | ClassifierEnsemble,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    tta: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Class probabilities (N, K) for lists of images and their lesion masks (None: no mask).

    Parameters
    ----------
    model : Classifier or ClassifierEnsemble
    images : list of (H, W, 3) uint8 RGB
    masks : list of (H, W) bool masks or None, optional
        An empty or missing mask falls back to the whole image as the lesion box.
    tta : bool
        Also average over horizontal and vertical flips.
    batch_size : int
        Crops per forward pass.
    """
    _check_classifier(model)
    if isinstance(images, np.ndarray):
        raise ConfigError("`images` must be a list of (H, W, 3) arrays; for one image use predict_proba().")
    imgs = list(images)
    msks: list[Any] = [None] * len(imgs) if masks is None else list(masks)
    if len(msks) != len(imgs):
        raise ConfigError(f"{len(imgs)} images but {len(msks)} masks were given; pass one mask (or None) per image.")
    k = len(model.class_names)
    if not imgs:
        return np.zeros((0, k), np.float32)
    probs = []
    for member in model.members:
        crops = np.stack([prepare_crop(im, m, member.config)[0] for im, m in zip(imgs, msks, strict=True)])
        probs.append(_member_proba(member, crops, tta, batch_size))
    p = np.mean(probs, axis=0)
    temperature = float(getattr(model, "temperature", 1.0))
    if temperature != 1.0:
        from ..metrics.calibration import apply_temperature

        p = apply_temperature(p, temperature).astype(np.float32)
    return p


def predict_proba(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tta: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Class probabilities (K,) of one image and its lesion mask (None: no mask); they sum to 1.

    Passing a list of images still works but is deprecated: use :func:`predict_proba_batch`.
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3):
        if isinstance(image, list | tuple) or (isinstance(image, np.ndarray) and image.ndim == 4):
            warnings.warn("predict_proba() with a list of images is deprecated; use predict_proba_batch().",
                          FutureWarning, stacklevel=2)
            return predict_proba_batch(model, list(image), mask, tta=tta, batch_size=batch_size)
        check_rgb_image(image, "image")
    return predict_proba_batch(model, [image], [mask], tta=tta, batch_size=batch_size)[0]


def predict_label(
    model: Classifier | ClassifierEnsemble, image: np.ndarray, mask: np.ndarray | None = None, *, tta: bool = False
) -> str:
    """The most probable class name of one image and its lesion mask."""
    return str(model.class_names[int(np.argmax(predict_proba(model, image, mask, tta=tta)))])


def predict(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tta: bool = False,
) -> dict[str, float]:
    """``{label: probability}`` for one image and its lesion mask (probabilities sum to 1)."""
    p = predict_proba(model, image, mask, tta=tta)
    return {name: float(v) for name, v in zip(model.class_names, p, strict=True)}
