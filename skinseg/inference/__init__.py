"""Inference: numpy image in, numpy probability map or mask out -- the one public inference core.

- :class:`Predictor` (:mod:`~skinseg.inference.predictor`): preprocessing, input
  preparation, shape-bucketed batching, flip TTA, device and mapping back, for any
  backend; :meth:`Predictor.predict_stream` (:mod:`~skinseg.inference.stream`) runs it
  as a pipeline over many images.
- :func:`predict_proba`, :func:`predict_proba_batch`, :func:`segment`: the simple
  functions on top.
- Backends (:mod:`~skinseg.inference.backends`, :mod:`~skinseg.inference.onnx`):
  :class:`TorchBackend` and :class:`OnnxBackend` implement one protocol,
  :class:`Backend` (``run(batch) -> probabilities``), for segmenters and classifiers alike;
  :func:`load_backend` builds one from a checkpoint (defaults :data:`DEFAULT_BACKEND`,
  :data:`DEFAULT_PRECISION`); :func:`export_onnx` writes an ONNX file.

This is the only package that converts between numpy and torch, normalises, pads for the
encoder stride and applies the sigmoid. Runners (the folder runner, a Ray Data actor,
your own loop) use only these public names.
"""

from __future__ import annotations

from .._lazy import lazy_attributes
from .backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_PRECISION,
    Backend,
    TorchBackend,
    as_backend,
    model_kind,
    onnxruntime_installed,
)
from .loaders import load_backend
from .predictor import (
    FLIPS,
    MODEL_PREPROCESS,
    Predictor,
    PreparedImage,
    group_by_shape,
    predict_proba,
    predict_proba_batch,
    prepare_input,
    probabilities_to_image_size,
    resolve_preprocess,
    resolve_tta,
    segment,
)
from .stream import DEFAULT_INFLIGHT_PIXELS, StreamResult, predict_stream

_ONNX = {"OnnxBackend", "DeferredOnnxBackend", "export_onnx", "export_onnx_bytes", "onnx_parity",
         "load_onnx_for_checkpoint", "onnx_cache_path", "int8_available", "session_options", "ONNX_OPSET",
         "MODEL_ONNX_FILE", "MODEL_ONNX_INT8_FILE", "PRECISIONS"}

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DEFAULT_PRECISION", "Backend", "TorchBackend", "as_backend", "load_backend",
    "model_kind", "onnxruntime_installed", "FLIPS", "MODEL_PREPROCESS", "PreparedImage", "Predictor", "group_by_shape", "predict_proba", "predict_proba_batch",
    "prepare_input", "probabilities_to_image_size", "resolve_preprocess", "resolve_tta", "segment",
    "DEFAULT_INFLIGHT_PIXELS", "StreamResult", "predict_stream",
    "OnnxBackend", "DeferredOnnxBackend", "export_onnx", "export_onnx_bytes", "onnx_parity", "load_onnx_for_checkpoint",
    "onnx_cache_path", "int8_available", "session_options", "ONNX_OPSET", "MODEL_ONNX_FILE", "MODEL_ONNX_INT8_FILE",
    "PRECISIONS",
]


# onnx.py is light, but keep its names lazy like the rest of the package
__getattr__, _ = lazy_attributes(__name__, dict.fromkeys(_ONNX, "onnx"))
