"""Deprecated: moved to :mod:`skinseg.inference.onnx` (``OnnxSegmenter`` is now ``OnnxBackend``).

Importing this module warns (FutureWarning); it will be removed in a later release.
"""

from __future__ import annotations

import warnings

from .inference.onnx import ONNX_OPSET, OnnxBackend, export_onnx, onnx_parity
from .models.checkpoint import model_fingerprint

warnings.warn(
    "skinseg.onnx_backend is deprecated: use skinseg.inference (OnnxBackend, export_onnx, onnx_parity) and "
    "skinseg.models.model_fingerprint.",
    FutureWarning,
    stacklevel=2,
)

OnnxSegmenter = OnnxBackend


def load_onnx_segmenter(path, *, threads=None):  # noqa: ANN001, ANN201 - deprecated alias
    """Deprecated alias of ``OnnxBackend(path, threads=threads)``."""
    return OnnxBackend(path, threads=threads)


__all__ = ["ONNX_OPSET", "OnnxSegmenter", "export_onnx", "load_onnx_segmenter", "model_fingerprint", "onnx_parity"]
