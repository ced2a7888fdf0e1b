"""Building a backend from a checkpoint: :func:`load_backend`, with the defaults of every loader.

Beside :mod:`~skinseg.inference.backends` (the protocol and the torch backend) and
:mod:`~skinseg.inference.onnx` (ONNX Runtime and the exports), which it chooses between.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_PRECISION,
    MODEL_KINDS,
    TorchBackend,
    onnxruntime_installed,
)

__all__ = ["load_backend"]


def load_backend(
    path_or_name: str | os.PathLike = "default",
    *,
    kind: str = "segmenter",
    backend: str = DEFAULT_BACKEND,
    device: str = "cpu",
    precision: str = DEFAULT_PRECISION,
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Build an inference backend for a checkpoint directory or bundled name.

    Parameters
    ----------
    kind : {"segmenter", "classifier"}
        What the checkpoint holds (a classifier: one member of an ensemble, see
        :meth:`skinseg.classify.ClassifierPredictor.load`).
    backend : {"auto", "torch", "onnx"}, default "auto"
        ``"onnx"``: ONNX Runtime, from the checkpoint's own export when it was made from
        these weights, else from ``cache_dir``, else exported when first run (needs torch;
        the export is written to ``cache_dir`` when given). ``"auto"``: ONNX Runtime when it
        is installed and ``device`` is the CPU, else torch.
    device : str
        ``"cpu"`` or ``"cuda"`` (torch; ONNX Runtime with ``onnxruntime-gpu``).
    precision : {"auto", "fp32", "int8"}, default "auto"
        ``"int8"``: the checkpoint's gated int8 export (ONNX backend only). ``"auto"``:
        int8 when the backend is ONNX on the CPU and the checkpoint ships one, else fp32.
    threads : int, optional
        ONNX Runtime intra-op threads (default: see :class:`~skinseg.inference.onnx.OnnxBackend`).
    cache_dir : path, optional
        Folder for ONNX exports, keyed by the model's fingerprint.
    """
    if kind not in MODEL_KINDS:
        raise ConfigError(f"`kind` must be 'segmenter' or 'classifier'; got {kind!r}.")
    if backend not in (*BACKENDS, "auto"):
        raise ConfigError(f"`backend` must be 'torch', 'onnx' or 'auto'; got {backend!r}.")
    if precision not in ("fp32", "int8", "auto"):
        raise ConfigError(f"`precision` must be 'fp32', 'int8' or 'auto'; got {precision!r}.")
    if backend == "auto":
        backend = "onnx" if str(device) == "cpu" and onnxruntime_installed() else "torch"
    if backend == "onnx":
        from .onnx import int8_available, load_onnx_for_checkpoint

        if precision == "auto":
            precision = "int8" if str(device) == "cpu" and int8_available(path_or_name, kind=kind) else "fp32"
        return load_onnx_for_checkpoint(path_or_name, kind=kind, threads=threads, cache_dir=cache_dir,
                                        precision=precision, device=str(device))
    if precision == "int8":
        raise ConfigError("precision='int8' runs on the ONNX backend; use backend='onnx' (or 'auto').")
    from ..models.checkpoint import load_classifier, load_segmenter

    load = load_segmenter if kind == "segmenter" else load_classifier
    return TorchBackend(load(path_or_name, device=device))
