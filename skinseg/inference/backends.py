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

:func:`~skinseg.inference.loaders.load_backend` picks and builds one from a checkpoint path or bundled name;
its defaults (:data:`DEFAULT_BACKEND`, :data:`DEFAULT_PRECISION`) are the ones of every loader
(:meth:`Predictor.load <skinseg.inference.Predictor.load>`, ``ClassifierPredictor.load``, the CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["Backend", "TorchBackend", "as_backend", "onnxruntime_installed", "model_kind", "BACKENDS",
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
