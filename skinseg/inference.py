"""Inference: numpy image in, numpy probability map or mask out.

The only module that converts between numpy and torch, normalises, pads for the
encoder stride and applies the sigmoid. Images of any size and aspect ratio are
scaled into the model's box (:func:`skinseg._geometry.fit_size`), padded at the
bottom/right to a multiple of 32, and the probabilities are cropped back and
resized (bilinear) to exactly the input's (H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._checks import check_rgb_image
from ._geometry import fit_size, pad_to_multiple, resize_image
from ._types import IMAGE_MULTIPLE, ProbMap, RGBImage
from .errors import ConfigError

__all__ = ["predict_proba", "predict_proba_batch", "prepare_input", "probabilities_to_image_size", "resolve_tta"]

_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def _model_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "input_size"):
        raise ConfigError("`model` must be a skinseg Segmenter (create_segmenter / load_segmenter).")
    return config


def _preprocessor(config: Any) -> Any:
    if not config.preprocess:
        return None
    from .preprocess import Preprocess

    return Preprocess.from_dict(config.preprocess)


def prepare_input(image: RGBImage, config: Any, *, preprocess: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """Scale, normalise and pad one image: returns ((3, H', W') float32, (h, w) before padding)."""
    if preprocess:
        pre = _preprocessor(config)
        if pre is not None:
            image = pre(image)
    hw = fit_size(image.shape[0], image.shape[1], config.input_size)
    small = resize_image(image, hw).astype(np.float32)
    mean = np.asarray(config.mean, np.float32) * 255
    std = np.asarray(config.std, np.float32) * 255
    x = pad_to_multiple((small - mean) / std, IMAGE_MULTIPLE, 0.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), hw


def probabilities_to_image_size(prob_small: np.ndarray, hw: tuple[int, int], out_hw: tuple[int, int]) -> ProbMap:
    """Crop the padding (to ``hw``) and resize bilinearly to ``out_hw``; float32 in [0, 1]."""
    import cv2

    p = np.ascontiguousarray(prob_small[: hw[0], : hw[1]], dtype=np.float32)
    if p.shape != tuple(out_hw):
        p = cv2.resize(p, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(p, 0.0, 1.0).astype(np.float32, copy=False)


@torch.no_grad()
def _flip_probas(model: torch.nn.Module, x: torch.Tensor, flips: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    """Sigmoid output for each flip of ``x``, each flipped back to ``x``'s orientation."""
    out = []
    for dims in flips:
        xi = torch.flip(x, dims) if dims else x
        p = torch.sigmoid(model(xi.contiguous(memory_format=torch.channels_last)).float())
        out.append(torch.flip(p, dims) if dims else p)
    return out


def _forward_proba(model: torch.nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    probs = _flip_probas(model, x, _FLIPS if tta else ((),))
    return sum(probs[1:], probs[0]) / len(probs)


def _device_of(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def resolve_tta(model: Any, tta: bool | None) -> bool:
    """``tta`` if given, else the model's stored default (``config.tta``, False if absent)."""
    if tta is None:
        return bool(getattr(getattr(model, "config", None), "tta", False))
    if not isinstance(tta, (bool, np.bool_)):
        raise ConfigError(f"`tta` must be True, False or None (the model's default); got {tta!r}.")
    return bool(tta)


def predict_proba(model: Any, image: RGBImage, *, tta: bool | None = None, preprocess: bool = True) -> ProbMap:
    """Lesion probability for every pixel of ``image``.

    Parameters
    ----------
    model : Segmenter
        From :func:`skinseg.load_segmenter` or :func:`skinseg.create_segmenter`; it
        runs on whatever device it is on (``model.to("cuda")``).
    image : (H, W, 3) uint8 RGB
    tta : bool or None
        Average over the identity and horizontal, vertical and both flips (each
        flip's inverse is exact). None (default): the model's ``config.tta``.
    preprocess : bool
        Apply the preprocessing stored in the model's config (hair removal,
        denoising); set False if the image is already preprocessed.

    Returns
    -------
    (H, W) float32 in [0, 1], the same size as ``image``.
    """
    return predict_proba_batch(model, [image], tta=tta, preprocess=preprocess)[0]


def predict_proba_batch(model: Any, images: Sequence[RGBImage], *, batch_size: int = 8, tta: bool | None = None,
                        preprocess: bool = True) -> list[ProbMap]:
    """:func:`predict_proba` for a list of images of any sizes.

    Images whose padded model input has the same shape are batched together, so
    every result equals the single-image result.
    """
    config = _model_config(model)
    tta = resolve_tta(model, tta)
    if isinstance(images, np.ndarray):
        raise ConfigError("`images` must be a list of (H, W, 3) arrays; for one image use predict_proba().")
    if int(batch_size) < 1:
        raise ConfigError(f"`batch_size` must be an integer >= 1; got {batch_size!r}.")
    images = [check_rgb_image(im, f"images[{i}]") for i, im in enumerate(images)]
    model.eval()
    device = _device_of(model)
    prepared = [prepare_input(im, config, preprocess=preprocess) for im in images]
    order = sorted(range(len(images)), key=lambda i: prepared[i][0].shape)
    results: list[ProbMap | None] = [None] * len(images)
    start = 0
    while start < len(order):
        shape = prepared[order[start]][0].shape
        group = [order[start]]
        while (start + len(group) < len(order) and len(group) < batch_size
               and prepared[order[start + len(group)]][0].shape == shape):
            group.append(order[start + len(group)])
        x = torch.from_numpy(np.stack([prepared[i][0] for i in group])).to(device)
        probs = _forward_proba(model, x, tta)[:, 0].cpu().numpy()
        for j, i in enumerate(group):
            results[i] = probabilities_to_image_size(probs[j], prepared[i][1], images[i].shape[:2])
        start += len(group)
    return results  # type: ignore[return-value]
