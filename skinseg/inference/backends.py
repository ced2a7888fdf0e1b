"""Inference backends: one small protocol, implemented by torch and by ONNX Runtime.

A backend turns a batch of prepared model inputs into probabilities; everything around
it (preprocessing, scaling, padding, flip TTA, batching, mapping back; for a classifier
the crops, ensembles and temperature) belongs to the predictors
(:class:`~skinseg.inference.Predictor`, :class:`skinseg.classify.ClassifierPredictor`), so
every backend gets exactly the same input.

:class:`Backend` (the protocol)
    ``name`` ("torch" / "onnx"), ``config`` (the model's
    :class:`~skinseg.models.SegmenterConfig` or :class:`~skinseg.models.ClassifierConfig`),
    ``device``, ``precision`` ("fp32" / "int8"), ``fingerprint`` (the model's
    :func:`~skinseg.models.model_fingerprint`, for run journals), ``concurrency`` (backend
    calls a streaming predictor runs side by side), ``threads`` (the runtime's intra-op
    threads as asked; None: its default), ``path`` (the model file it runs; None: a model
    held in memory) and ``run(batch)``: (N, C, H, W) float32 normalised input -> float32
    probabilities, (N, H, W) lesion probabilities for a segmenter, (N, K) class
    probabilities for a classifier. ``run`` is thread-safe.
:class:`TorchBackend`
    A :class:`~skinseg.models.Segmenter` (or ensemble) or a single
    :class:`~skinseg.models.Classifier` on a torch device.
:class:`~skinseg.inference.onnx.OnnxBackend`
    An exported ``.onnx`` file run with ONNX Runtime (see :mod:`skinseg.inference.onnx`).

:func:`load_backend` picks and builds one from a checkpoint path or bundled name; its
defaults (:data:`DEFAULT_BACKEND`, :data:`DEFAULT_PRECISION`) are the ones of every loader
(:meth:`Predictor.load <skinseg.inference.Predictor.load>`, ``ClassifierPredictor.load``, the CLI).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["Backend", "TorchBackend", "load_backend", "as_backend", "onnxruntime_installed", "model_kind", "BACKENDS",
           "DEFAULT_BACKEND", "DEFAULT_PRECISION", "MODEL_KINDS"]

BACKENDS = ("torch", "onnx")
DEFAULT_BACKEND = "auto"
"""The backend every loader picks by default: ONNX Runtime on the CPU where it is installed, else torch."""
DEFAULT_PRECISION = "auto"
"""The precision every loader picks by default: int8 where the checkpoint ships a gated int8 export (ONNX on the
CPU), else fp32."""
MODEL_KINDS = ("segmenter", "classifier")


@runtime_checkable
class Backend(Protocol):
    """What the inference core needs from a runtime (see the module docstring)."""

    name: str
    device: str
    precision: str
    concurrency: int
    threads: int | None
    path: Path | None

    @property
    def config(self) -> Any:  # SegmenterConfig or ClassifierConfig
        ...

    @property
    def fingerprint(self) -> str:
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised input -> probabilities: (N, H, W) of a segmenter, (N, K) of a classifier."""
        ...


def model_kind(config: Any) -> str | None:
    """``"segmenter"`` or ``"classifier"`` for a model's config, None for anything else."""
    from ..models.config import ClassifierConfig, SegmenterConfig

    if isinstance(config, SegmenterConfig):
        return "segmenter"
    if isinstance(config, ClassifierConfig):
        return "classifier"
    return None


def _check_model(model: Any) -> str:
    kind = model_kind(getattr(model, "config", None))
    if kind is None or not callable(model):
        raise ConfigError(
            "`model` must be a skinseg Segmenter (create_segmenter / load_segmenter) or Classifier, an inference "
            f"backend (TorchBackend, OnnxBackend) or a Predictor; got {type(model).__name__}."
        )
    return kind


class TorchBackend:
    """Run a torch :class:`~skinseg.models.Segmenter` (or :class:`~skinseg.models.SegmenterEnsemble`) or a
    single :class:`~skinseg.models.Classifier`.

    Parameters
    ----------
    model : Segmenter, SegmenterEnsemble or Classifier
        Put in eval mode. It is used where it is, unless ``device`` is given.
    device : str, optional
        Move the model there first (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None: the
        device the model's parameters are on.

    Notes
    -----
    ``run`` applies the sigmoid to a segmenter's logits (channels-last input) and the softmax
    to a classifier's. Torch runs one call at a time with its own thread pool
    (``concurrency`` 1, ``threads`` None: ``torch.set_num_threads`` decides).
    """

    name = "torch"
    precision = "fp32"
    concurrency = 1
    threads = None
    path = None

    def __init__(self, model: Any, *, device: str | None = None) -> None:
        import torch

        self.kind = _check_model(model)
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
            if self.kind == "classifier":
                return torch.softmax(self.model(x).float(), dim=1).cpu().numpy()
            p = torch.sigmoid(self.model(x.contiguous(memory_format=torch.channels_last)).float())
            return p[:, 0].cpu().numpy()

    def __repr__(self) -> str:
        c = self.config
        net = f"encoder={c.encoder_name!r}" if self.kind == "segmenter" else f"backbone={c.backbone!r}"
        return f"TorchBackend({self.kind}, {net}, device={self.device!r})"


def as_backend(model: Any, *, device: str | None = None) -> Any:
    """``model`` as a :class:`Backend`: a backend is returned as it is, a torch model is wrapped."""
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
