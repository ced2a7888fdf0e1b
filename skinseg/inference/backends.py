"""Inference backends: one small protocol, implemented by torch and by ONNX Runtime.

A backend turns a batch of prepared model inputs into lesion probabilities; everything
around it (preprocessing, scaling, padding, flip TTA, batching, mapping back) is the
:class:`~skinseg.inference.Predictor`'s, so every backend gets exactly the same input.

:class:`Backend` (the protocol)
    ``name`` ("torch" / "onnx"), ``config`` (the model's
    :class:`~skinseg.models.SegmenterConfig`), ``device``, ``precision`` ("fp32" /
    "int8"), ``fingerprint`` (the model's :func:`~skinseg.models.model_fingerprint`, for
    run journals) and ``run(batch)``: (N, 3, H, W) float32 normalised input -> (N, H, W)
    float32 probabilities in [0, 1]. ``run`` is thread-safe.
:class:`TorchBackend`
    A :class:`~skinseg.models.Segmenter` (or ensemble) on a torch device.
:class:`~skinseg.inference.onnx.OnnxBackend`
    An exported ``.onnx`` file run with ONNX Runtime (see :mod:`skinseg.inference.onnx`).

:func:`load_backend` picks and builds one from a checkpoint path or bundled name.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["Backend", "TorchBackend", "load_backend", "as_backend", "onnxruntime_installed", "BACKENDS"]

BACKENDS = ("torch", "onnx")


@runtime_checkable
class Backend(Protocol):
    """What the inference core needs from a runtime (see the module docstring)."""

    name: str
    device: str
    precision: str

    @property
    def config(self) -> Any:  # SegmenterConfig
        ...

    @property
    def fingerprint(self) -> str:
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 normalised input -> (N, H, W) float32 lesion probabilities."""
        ...


def _check_segmenter(model: Any) -> Any:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "input_size") or not callable(model):
        raise ConfigError(
            "`model` must be a skinseg Segmenter (create_segmenter / load_segmenter), an inference backend "
            f"(TorchBackend, OnnxBackend) or a Predictor; got {type(model).__name__}."
        )
    return config


class TorchBackend:
    """Run a torch :class:`~skinseg.models.Segmenter` (or :class:`~skinseg.models.SegmenterEnsemble`).

    Parameters
    ----------
    model : Segmenter or SegmenterEnsemble
        Put in eval mode. It is used where it is, unless ``device`` is given.
    device : str, optional
        Move the model there first (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None: the
        device the model's parameters are on.
    """

    name = "torch"
    precision = "fp32"

    def __init__(self, model: Any, *, device: str | None = None) -> None:
        import torch

        _check_segmenter(model)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        try:
            self._device = next(model.parameters()).device
        except StopIteration:  # pragma: no cover - a parameter-free model
            self._device = torch.device("cpu")
        self.device = str(self._device)
        self._fingerprint: str | None = None

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from ..models.checkpoint import model_fingerprint

            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._device)
            p = torch.sigmoid(self.model(x.contiguous(memory_format=torch.channels_last)).float())
            return p[:, 0].cpu().numpy()

    def __repr__(self) -> str:
        c = self.config
        return f"TorchBackend(arch={c.arch!r}, encoder={c.encoder_name!r}, device={self.device!r})"


def as_backend(model: Any, *, device: str | None = None) -> Any:
    """``model`` as a :class:`Backend`: a backend is returned as it is, a torch segmenter is wrapped."""
    if isinstance(model, Backend):
        if device is not None and str(device) != str(model.device):
            raise ConfigError(
                f"This {model.name} backend runs on {model.device!r}; got device {device!r}. Build the backend "
                "on that device instead."
            )
        return model
    return TorchBackend(model, device=device)


def onnxruntime_installed() -> bool:
    """True if ONNX Runtime can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def load_backend(
    path_or_name: str | os.PathLike = "default",
    *,
    backend: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Build an inference backend for a checkpoint directory or bundled name.

    Parameters
    ----------
    backend : {"torch", "onnx", "auto"}
        ``"onnx"``: ONNX Runtime, from the checkpoint's own export when it was made from
        these weights, else from ``cache_dir``, else exported now (needs torch; the export is
        written to ``cache_dir`` when given). ``"auto"``: ONNX Runtime when it is installed
        and ``device`` is the CPU, else torch.
    device : str
        ``"cpu"`` or ``"cuda"`` (torch; ONNX Runtime with ``onnxruntime-gpu``).
    precision : {"fp32", "int8", "auto"}
        ``"int8"``: the checkpoint's gated int8 export (ONNX backend only). ``"auto"``:
        int8 when the backend is ONNX and the checkpoint ships one, else fp32.
    threads : int, optional
        ONNX Runtime intra-op threads (default: its own choice, the physical cores).
    cache_dir : path, optional
        Folder for ONNX exports, keyed by the model's fingerprint.
    """
    if backend not in (*BACKENDS, "auto"):
        raise ConfigError(f"`backend` must be 'torch', 'onnx' or 'auto'; got {backend!r}.")
    if precision not in ("fp32", "int8", "auto"):
        raise ConfigError(f"`precision` must be 'fp32', 'int8' or 'auto'; got {precision!r}.")
    if backend == "auto":
        backend = "onnx" if str(device) == "cpu" and onnxruntime_installed() else "torch"
    if backend == "onnx":
        from .onnx import int8_available, load_onnx_for_checkpoint

        if precision == "auto":
            precision = "int8" if str(device) == "cpu" and int8_available(path_or_name) else "fp32"
        return load_onnx_for_checkpoint(path_or_name, threads=threads, cache_dir=cache_dir, precision=precision,
                                        device=str(device))
    if precision == "int8":
        raise ConfigError("precision='int8' runs on the ONNX backend; use backend='onnx' (or 'auto').")
    from ..models.checkpoint import load_segmenter

    return TorchBackend(load_segmenter(path_or_name, device=device))
