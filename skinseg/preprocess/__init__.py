"""Preprocessing stage: colour constancy, hair removal and denoising (numpy/OpenCV; no torch).

Every function takes an (H, W, 3) uint8 RGB image and returns a new array of the same
shape and dtype. :class:`Preprocess` chains the steps in a fixed order (colour
normalisation, hair removal, then denoising) from a JSON-serialisable
:class:`PreprocessConfig`.
"""

from __future__ import annotations

from .color import normalize_color
from .denoise import denoise_median, denoise_wiener
from .hair import detect_hair, remove_hair
from .pipeline import Preprocess, PreprocessConfig

__all__ = [
    "detect_hair",
    "remove_hair",
    "denoise_median",
    "denoise_wiener",
    "normalize_color",
    "Preprocess",
    "PreprocessConfig",
]
