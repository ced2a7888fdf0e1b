"""Grad-CAM (Selvaraju et al. 2017) of a lesion classifier, mapped back onto the image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import as_bool_mask, check_rgb_image
from ..errors import MaskShapeError, UnknownNameError
from ..models.config import decide
from .predict import crops_to_tensor, predict_proba, prepare_crop

if TYPE_CHECKING:
    from ..models.classifiers import Classifier, ClassifierEnsemble
    from ..models.config import ClassifierConfig

__all__ = ["gradcam", "gradcam_overlay"]


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
    Needs torch (gradients): ``ClassifierPredictor.torch_model()`` gives the model of an ONNX run.
    """
    import torch

    from ..crops import crop_box

    check_rgb_image(image)
    h, w = image.shape[:2]
    names = list(model.class_names)
    if target is None:
        target_idx = int(decide(predict_proba(model, image, mask), getattr(model, "decision_weights", None)))
    elif isinstance(target, str):
        if target not in names:
            raise UnknownNameError(f"Unknown class {target!r}; classes: {', '.join(names)}.")
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
