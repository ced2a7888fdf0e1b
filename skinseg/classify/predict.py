"""Classifier inference on (image, mask) pairs: crops, probabilities, optional flip TTA, Grad-CAM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._checks import as_bool_mask, check_rgb_image
from ..crops import crop_lesion
from ..errors import MaskShapeError
from .model import Classifier, ClassifierConfig, ClassifierEnsemble

__all__ = [
    "prepare_crop",
    "crops_to_tensor",
    "predict_proba",
    "predict_proba_crops",
    "predict",
    "gradcam",
    "gradcam_overlay",
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
    if getattr(config, "color_norm", None):
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
        raise TypeError(
            "predict_proba_crops takes one Classifier (ensemble members cut different crops); "
            "use predict_proba(model, images, masks) for an ensemble."
        )
    return _member_proba(model, np.asarray(crops), tta, batch_size)


def predict_proba(
    model: Classifier | ClassifierEnsemble,
    images: np.ndarray | Sequence[np.ndarray],
    masks: np.ndarray | Sequence[np.ndarray | None] | None = None,
    *,
    tta: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Class probabilities for one image (-> (K,)) or a list of images (-> (N, K)).

    Each member of an ensemble cuts its own crop (its crop mode and size) and the
    members' softmax probabilities are averaged, then rescaled by the ensemble's
    ``temperature`` if it is not 1. ``tta`` also averages over horizontal/vertical flips.
    """
    single = isinstance(images, np.ndarray) and images.ndim == 3
    imgs = [images] if single else list(images)
    if masks is None:
        msks: list[Any] = [None] * len(imgs)
    else:
        msks = [masks] if single else list(masks)
    if len(msks) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(msks)} masks were given.")
    probs = []
    for member in model.members:
        crops = np.stack([prepare_crop(im, m, member.config)[0] for im, m in zip(imgs, msks)])
        probs.append(_member_proba(member, crops, tta, batch_size))
    p = np.mean(probs, axis=0)
    temperature = float(getattr(model, "temperature", 1.0))
    if temperature != 1.0:
        from ..metrics.calibration import apply_temperature

        p = apply_temperature(p, temperature).astype(np.float32)
    return p[0] if single else p


def predict(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tta: bool = False,
) -> dict[str, float]:
    """``{label: probability}`` for one image and its lesion mask (probabilities sum to 1)."""
    p = predict_proba(model, image, mask, tta=tta)
    return {name: float(v) for name, v in zip(model.class_names, p)}


def gradcam(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    target: int | str | None = None,
) -> np.ndarray:
    """Grad-CAM heatmap (Selvaraju et al. 2017) of ``target`` (default: the predicted class).

    Uses the last convolutional feature map of each member; the maps of an
    ensemble's members are averaged. Returns an (H, W) float32 map in [0, 1] on
    the input image's grid (the crop box is mapped back; outside it the map is 0).
    """
    from ..crops import crop_box

    check_rgb_image(image)
    h, w = image.shape[:2]
    names = list(model.class_names)
    if target is None:
        target_idx = int(np.argmax(predict_proba(model, image, mask)))
    elif isinstance(target, str):
        if target not in names:
            raise ValueError(f"Unknown class {target!r}; classes: {', '.join(names)}.")
        target_idx = names.index(target)
    else:
        target_idx = int(target)
    total = np.zeros((h, w), np.float32)
    for member in model.members:
        crop, empty = prepare_crop(image, mask, member.config)
        x = crops_to_tensor(crop[None], member.config).to(next(member.parameters()).device)
        member.eval()
        with torch.enable_grad():
            feats = member.forward_features(x).detach().requires_grad_(True)
            score = member.forward_head(feats)[0, target_idx]
            (grad,) = torch.autograd.grad(score, feats)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * feats).sum(1))[0].detach().cpu().numpy()
        cam = cam / cam.max() if cam.max() > 0 else cam
        total += _cam_to_image(cam, member.config, mask, empty, (h, w), crop_box)
    total /= len(model.members)
    return np.clip(total, 0, 1).astype(np.float32)


def _cam_to_image(
    cam: np.ndarray,
    config: ClassifierConfig,
    mask: np.ndarray | None,
    empty: bool,
    shape: tuple[int, int],
    crop_box: Any,
) -> np.ndarray:
    import cv2

    h, w = shape
    if config.crop_mode == "full":
        return cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    if empty:
        m = np.ones((h, w), bool)
        y0, x0, y1, x1 = crop_box(m, margin=0.0)
    else:
        y0, x0, y1, x1 = crop_box(as_bool_mask(mask), margin=config.margin)
    side = y1 - y0
    big = cv2.resize(cam, (side, side), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), np.float32)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    out[sy0:sy1, sx0:sx1] = big[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def gradcam_overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heatmap (jet colour map) over the RGB image; returns a new uint8 RGB image."""
    import cv2

    check_rgb_image(image)
    if heatmap.shape != image.shape[:2]:
        raise MaskShapeError(f"heatmap is {heatmap.shape} but the image is {image.shape[:2]}.")
    colour = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    weight = (alpha * np.clip(heatmap, 0, 1))[..., None]
    return np.uint8(np.clip(image * (1 - weight) + colour * weight, 0, 255))
