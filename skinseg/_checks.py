"""Validation helpers used in the first lines of public functions."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable

import numpy as np

from .errors import (
    ArgumentTypeError,
    ConfigError,
    InvalidImageError,
    InvalidMaskError,
    MaskShapeError,
    MaskValueError,
)

__all__ = [
    "check_rgb_image",
    "as_bool_mask",
    "check_prob_map",
    "check_same_hw",
    "check_odd_int",
    "check_positive_int",
    "check_fraction",
    "did_you_mean",
]


def _describe(arr: object) -> str:
    if isinstance(arr, np.ndarray):
        return f"shape {arr.shape}, dtype {arr.dtype}"
    return f"an object of type {type(arr).__name__}"


def check_rgb_image(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise with a fix."""
    if not isinstance(image, np.ndarray):
        raise ArgumentTypeError(
            f"`{name}` must be a numpy array of shape (H, W, 3) and dtype uint8; got "
            f"{_describe(image)}. Read files with skinseg.read_image()."
        )
    if image.ndim == 3 and image.shape[2] == 4:
        raise InvalidImageError(
            f"`{name}` must be an (H, W, 3) uint8 RGB array; got {_describe(image)}. "
            f"Drop alpha with {name}[..., :3] if it is fully opaque."
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise InvalidImageError(
            f"`{name}` must be an (H, W, 3) uint8 RGB array; got {_describe(image)} (grayscale). "
            "Replicate the channel with np.dstack([g, g, g]) if that is what you want."
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"`{name}` must be an (H, W, 3) uint8 RGB array; got {_describe(image)}.")
    if image.dtype != np.uint8:
        raise InvalidImageError(
            f"`{name}` must be an (H, W, 3) uint8 RGB array; got {_describe(image)}. "
            "Convert explicitly, e.g. np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for [0, 1] floats."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"`{name}` must have at least one pixel; got {_describe(image)}.")
    return image


def as_bool_mask(mask: object, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as an (H, W) bool array.

    Accepts bool arrays, or integer arrays whose values are only {0, 1} or only
    {0, 255}. Anything else (other values, floats, extra dimensions) raises; no
    threshold is ever applied silently.
    """
    if not isinstance(mask, np.ndarray):
        raise ArgumentTypeError(f"`{name}` must be a numpy array of shape (H, W); got {_describe(mask)}.")
    if mask.ndim != 2:
        raise InvalidMaskError(
            f"`{name}` must be a 2-D (H, W) array; got {_describe(mask)}. "
            f"For an (H, W, 1) or identical-channel mask use {name}[..., 0]."
        )
    if mask.dtype == np.bool_:
        return mask
    if not np.issubdtype(mask.dtype, np.integer):
        raise MaskValueError(
            f"`{name}` must be bool or an integer array with values {{0, 1}} or {{0, 255}}; got dtype "
            f"{mask.dtype}. Threshold probabilities explicitly, e.g. skinseg.threshold(prob, 0.5)."
        )
    values = np.unique(mask)
    if set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}:
        return mask != 0
    shown = ", ".join(str(v) for v in values[:8].tolist()) + (", ..." if values.size > 8 else "")
    raise MaskValueError(
        f"`{name}` must contain only {{0, 1}} or only {{0, 255}}; got values {{{shown}}}. "
        f"Binarise it explicitly, e.g. {name} > 127, if that is what it means."
    )


def check_prob_map(prob: object, name: str = "prob") -> np.ndarray:
    """Return ``prob`` if it is an (H, W) float array with values in [0, 1]."""
    if not isinstance(prob, np.ndarray):
        raise ArgumentTypeError(f"`{name}` must be a numpy array of shape (H, W); got {_describe(prob)}.")
    if prob.ndim != 2 or not np.issubdtype(prob.dtype, np.floating):
        raise ConfigError(f"`{name}` must be an (H, W) float array of probabilities; got {_describe(prob)}.")
    if prob.size and (not np.all(np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1):
        raise ConfigError(
            f"`{name}` must hold probabilities in [0, 1]; got range [{np.nanmin(prob):.3g}, {np.nanmax(prob):.3g}]. "
            "Apply a sigmoid to logits first."
        )
    return prob


def check_same_hw(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("pred", "target")) -> None:
    """Raise :class:`MaskShapeError` unless ``a`` and ``b`` have the same (H, W)."""
    if a.shape[:2] != b.shape[:2]:
        raise MaskShapeError(
            f"`{names[0]}` and `{names[1]}` must have the same (H, W); got {tuple(a.shape[:2])} and "
            f"{tuple(b.shape[:2])}. Resize one with nearest-neighbour interpolation first."
        )


def check_odd_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an odd integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum or value % 2 == 0:
        raise ConfigError(f"`{name}` must be an odd integer >= {minimum}; got {value!r}.")
    return int(value)


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_fraction(value: object, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """Return ``value`` as float if it is a real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (low <= float(value) <= high):
        raise ConfigError(f"`{name}` must be a number in [{low}, {high}]; got {value!r}.")
    return float(value)


def did_you_mean(value: object, valid: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the valid name closest to ``value``, or ``""`` if none is close."""
    hint = difflib.get_close_matches(str(value).lower(), [str(v) for v in valid], n=1, cutoff=0.4)
    return f" Did you mean {hint[0]!r}?" if hint else ""
