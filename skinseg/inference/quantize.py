"""Static int8 quantization of an exported segmenter (ONNX Runtime QDQ), calibrated on real images.

:func:`quantize_onnx` turns an fp32 export (:func:`~skinseg.inference.export_onnx_bytes`)
into an int8 one: weights int8 per output channel, activations uint8 with ranges
calibrated (min/max) on prepared inputs of real dermoscopy images and their flips
(:func:`calibration_batches`). The first convolution (the stem, which sees the raw
normalised colours) and the last ones (the decoder's last block and the segmentation
head, which produce the boundary logits) stay in float: quantizing them moved the
boundaries most. Whether an int8 model may be used is decided by an accuracy gate on
validation data (see ``benchmarks/backend_accuracy.py``), never assumed.

Needs ``onnx`` and ``onnxruntime`` (both core dependencies of skinseg).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["quantize_onnx", "calibration_batches", "FLOAT_CONVS_FIRST", "FLOAT_CONVS_LAST"]

FLOAT_CONVS_FIRST = 1
"""Convolutions kept in float at the start of the graph (the encoder's stem)."""
FLOAT_CONVS_LAST = 3
"""Convolutions kept in float at the end (the decoder's last block and the segmentation head)."""


def calibration_batches(predictor: Any, images: Sequence[np.ndarray], *, batch_size: int = 8) -> list[np.ndarray]:
    """Model inputs for calibration: every image prepared by ``predictor`` and its three flips.

    Only inputs of the most common padded shape are kept (one shape per batch); they are
    the inputs the model sees, preprocessing included.
    """
    from .predictor import FLIPS

    prepared = [predictor.prepare(im) for im in images]
    if not prepared:
        raise ConfigError("Calibration needs at least one image.")
    shapes = [p.shape for p in prepared]
    shape = max(set(shapes), key=shapes.count)
    xs = []
    for p in prepared:
        if p.shape == shape:
            xs += [np.flip(p.input, dims) if dims else p.input for dims in FLIPS]
    return [np.ascontiguousarray(np.stack(xs[i : i + batch_size])) for i in range(0, len(xs), batch_size)]


def quantize_onnx(
    fp32: bytes,
    calibration: Iterable[np.ndarray],
    *,
    float_first: int = FLOAT_CONVS_FIRST,
    float_last: int = FLOAT_CONVS_LAST,
) -> bytes:
    """Static int8 QDQ quantization of an fp32 ONNX segmenter; returns the int8 model's bytes.

    Parameters
    ----------
    fp32 : bytes
        An export of :func:`~skinseg.inference.export_onnx_bytes` (it carries the config).
    calibration : iterable of (N, 3, H, W) float32 arrays
        Prepared model inputs of real images (:func:`calibration_batches`).
    float_first, float_last : int
        Convolutions kept in float at the start and the end of the graph.

    The skinseg metadata (config, source fingerprint) is kept and ``skinseg_precision``
    is set to ``"int8"``, so :class:`~skinseg.inference.OnnxBackend` reports it and a run
    journal records it.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in calibration]
    if not batches:
        raise ConfigError("Calibration needs at least one batch of prepared inputs.")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"image": b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    source = onnx.load_from_string(fp32)
    meta = {p.key: p.value for p in source.metadata_props}
    with tempfile.TemporaryDirectory(prefix="skinseg-quantize-") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        keep = convs[:float_first] + (convs[-float_last:] if float_last else [])
        quantize_static(str(pre), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(out))
    meta["skinseg_precision"] = "int8"
    meta["skinseg_float_convs"] = json.dumps(keep)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()
