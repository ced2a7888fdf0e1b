"""Array aliases and constants shared by every module (documentation of intent;
runtime checks in :mod:`skinseg._checks` enforce it)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["RGBImage", "BinaryMask", "ProbMap", "IMAGE_EXTENSIONS", "IMAGE_MULTIPLE", "CROP_MODES", "Device"]

RGBImage = npt.NDArray[np.uint8]
"""(H, W, 3) uint8 RGB image."""
BinaryMask = npt.NDArray[np.bool_]
"""(H, W) bool lesion mask."""
ProbMap = npt.NDArray[np.float32]
"""(H, W) float32 lesion probability in [0, 1]."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""File endings (compared case-insensitively) that :func:`skinseg.io.list_images` picks up."""

IMAGE_MULTIPLE = 32
"""Model inputs are padded so height and width are multiples of this (encoder stride)."""

CROP_MODES: tuple[str, ...] = ("dilated_bbox", "masked", "mask_channel", "full")
"""Lesion crop modes of :func:`skinseg.crops.crop_lesion` (and of a classifier's config)."""

Device = Literal["cpu", "cuda"] | str
