"""Resizing rules shared by training data and inference (numpy + OpenCV, no torch).

A model with ``input_size = S`` sees images scaled so that they fit in an
``S x 3S/4`` box in either orientation (the 4:3 shape of most dermoscopy
images): scale = min(S / long side, 0.75 S / short side). Training pads to
that box; inference pads only to a multiple of 32 and maps back exactly.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["fit_scale", "fit_size", "resize_image", "resize_mask", "pad_to_multiple", "box_hw"]


def box_hw(input_size: int) -> tuple[int, int]:
    """(height, width) of the landscape training box for ``input_size``: (3S/4 rounded to 32, S)."""
    short = max(32, int(round(input_size * 0.75 / 32)) * 32)
    return short, input_size


def fit_scale(h: int, w: int, input_size: int) -> float:
    """Scale factor that fits an (h, w) image into the box of ``input_size`` (any orientation)."""
    short_box, long_box = box_hw(input_size)
    return min(long_box / max(h, w), short_box / min(h, w))


def fit_size(h: int, w: int, input_size: int) -> tuple[int, int]:
    """(height, width) after scaling with :func:`fit_scale` (at least 1 px each)."""
    s = fit_scale(h, w, input_size)
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an image to (h, w): area interpolation when shrinking, linear when enlarging."""
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    shrink = h * w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool/uint8 mask to (h, w), keeping its dtype."""
    h, w = hw
    if mask.shape[:2] == (h, w):
        return mask
    out = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return out.astype(mask.dtype)


def pad_to_multiple(array: np.ndarray, multiple: int = 32, value: float = 0.0) -> np.ndarray:
    """Pad at the bottom and right so height and width are multiples of ``multiple``."""
    h, w = array.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return array
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="constant", constant_values=value)
