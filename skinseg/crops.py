"""Lesion crops for the downstream classifier.

A classifier sees a square patch cut around the lesion with its mask (expert or
predicted). Four modes, compared in ``benchmarks/classifier_crops.py``:

``"dilated_bbox"`` (default)
    The mask's bounding box, made square about its centre and enlarged by
    ``margin`` (a fraction of the box side on each side), so the surrounding skin
    stays in view. Parts of the square outside the image are filled with
    ``fill``.
``"masked"``
    The same square, with every pixel outside the (dilated by 0 px) mask set to
    ``fill``: only the lesion is visible.
``"mask_channel"``
    The same square as ``"dilated_bbox"`` plus the mask as a 4th channel
    (0 or 255), so the network sees both the context and where the lesion is.
``"full"``
    The whole image, resized to a square (no mask needed; the baseline).

Every mode returns a ``(size, size, C)`` uint8 array, C = 4 for ``mask_channel``
and 3 otherwise. Published ablations (e.g. Mahbod et al. 2020, "The effects of
skin lesion segmentation on the performance of dermatoscopic image
classification") found that dilated crops help and black backgrounds hurt; the
benchmark measures it here.
"""

from __future__ import annotations

import cv2
import numpy as np

from ._checks import as_bool_mask, check_rgb_image
from ._types import CROP_MODES
from .errors import ConfigError, MaskShapeError, MaskValueError

__all__ = ["CROP_MODES", "crop_box", "crop_lesion"]


def crop_box(mask: np.ndarray, *, margin: float = 0.25) -> tuple[int, int, int, int]:
    """Square box ``(y0, x0, y1, x1)`` about the mask's bounding box, enlarged by ``margin``.

    The side is ``max(box height, box width) * (1 + 2 * margin)`` (at least 8 px).
    The box may extend past the image border; :func:`crop_lesion` fills that part.

    Raises
    ------
    MaskValueError
        If the mask is empty (no lesion pixel).
    """
    m = as_bool_mask(mask, name="mask")
    if margin < 0:
        raise ConfigError(f"`margin` must be >= 0; got {margin!r}.")
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        raise MaskValueError(
            "The mask is empty (no lesion pixel), so there is no lesion to crop. "
            "Use mode='full' or check the segmentation."
        )
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(8, int(round(max(y1 - y0, x1 - x0) * (1 + 2 * margin))))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    return top, left, top + side, left + side


def _cut(array: np.ndarray, box: tuple[int, int, int, int], fill: int) -> np.ndarray:
    """``array[y0:y1, x0:x1]`` with the part outside the array filled with ``fill``."""
    y0, x0, y1, x1 = box
    h, w = array.shape[:2]
    out = np.full((y1 - y0, x1 - x0) + array.shape[2:], fill, dtype=array.dtype)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = array[sy0:sy1, sx0:sx1]
    return out


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    h, w = array.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(array, (size, size), interpolation=interp)


def crop_lesion(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    mode: str = "dilated_bbox",
    size: int = 224,
    margin: float = 0.25,
    fill: int = 0,
) -> np.ndarray:
    """Cut a square classifier input around the lesion.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
    mask : (H, W) bool or {0, 255} uint8, optional
        Lesion mask of the same height and width. Not needed for ``mode="full"``.
    mode : {"dilated_bbox", "masked", "mask_channel", "full"}
        See the module docstring.
    size : int
        Side of the returned square in px.
    margin : float
        Enlargement of the square box on each side, as a fraction of its side.
    fill : int
        Grey level of the pixels outside the image (and outside the mask for
        ``"masked"``).

    Returns
    -------
    (size, size, 3) uint8, or (size, size, 4) uint8 for ``"mask_channel"``.
    The inputs are not modified.
    """
    check_rgb_image(image, name="image")
    if mode not in CROP_MODES:
        from ._checks import did_you_mean

        raise ConfigError(
            f"Unknown crop mode {mode!r}{did_you_mean(mode, CROP_MODES)}. "
            f"Valid modes: {', '.join(CROP_MODES)}."
        )
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ConfigError(f"`size` must be an int >= 8; got {size!r}.")
    if mode == "full":
        return _resize(np.ascontiguousarray(image), int(size))
    if mask is None:
        raise ConfigError(f"crop mode {mode!r} needs a lesion mask; pass `mask` or use mode='full'.")
    m = as_bool_mask(mask, name="mask")
    if m.shape != image.shape[:2]:
        raise MaskShapeError(
            f"The mask is {m.shape[0]}x{m.shape[1]} (HxW) but the image is "
            f"{image.shape[0]}x{image.shape[1]}; they must match."
        )
    box = crop_box(m, margin=margin)
    patch = _cut(image, box, fill)
    if mode == "dilated_bbox":
        return _resize(patch, int(size))
    mpatch = _cut(m.astype(np.uint8) * 255, box, 0)
    if mode == "masked":
        patch = patch.copy()
        patch[mpatch == 0] = fill
        return _resize(patch, int(size))
    # mask_channel: resize the mask with nearest neighbour so it stays binary
    mres = cv2.resize(mpatch, (int(size), int(size)), interpolation=cv2.INTER_NEAREST)
    return np.dstack([_resize(patch, int(size)), mres])
