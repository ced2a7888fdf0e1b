"""ONNX export of a segmenter and an ONNX Runtime model that the inference functions accept.

:func:`export_onnx` writes the network (image in, logits out; dynamic batch, height
and width) with the :class:`~skinseg.models.SegmenterConfig` stored in the ONNX
metadata, and checks it against torch. :class:`OnnxSegmenter` runs that file with
ONNX Runtime on the CPU and behaves like a Segmenter for inference: it has
``.config``, and ``predict_proba``, ``segment`` and
:func:`skinseg.folder.segment_folder` accept it.

Needs the ``onnx`` extra (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError

__all__ = [
    "export_onnx",
    "onnx_parity",
    "OnnxSegmenter",
    "load_onnx_segmenter",
    "model_fingerprint",
    "ONNX_OPSET",
]

ONNX_OPSET = 17
_META_CONFIG = "skinseg_config"
_META_SOURCE = "skinseg_source_fingerprint"
_META_VERSION = "skinseg_version"


def model_fingerprint(model: Any) -> str:
    """SHA-256 identifying a model's weights and config (``model.fingerprint`` if it has one).

    Used to match a cached ONNX export to its checkpoint and to check that a resumed
    folder run uses the same model.
    """
    own = getattr(model, "fingerprint", None)
    if isinstance(own, str):
        return own
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"The ONNX backend needs the '{module}' package, which is not installed. "
            "Install it with: pip install 'skinseg-dermoscopy[onnx]' (onnx and onnxruntime)."
        ) from exc


class OnnxSegmenter:
    """A segmenter exported to ONNX, run with ONNX Runtime on the CPU.

    Parameters
    ----------
    path : str or os.PathLike
        ``.onnx`` file written by :func:`export_onnx` (it carries the config).
    threads : int, optional
        ONNX Runtime intra-op threads; default ``torch.get_num_threads()`` so both
        backends use the same number of cores.

    Notes
    -----
    Calling the object with an (N, 3, H, W) float32 torch tensor or numpy array
    returns (N, 1, H, W) logits of the same kind, which is what
    :func:`skinseg.inference.predict_proba` needs. ``eval()`` and ``to("cpu")``
    return the object; it has no parameters and runs only on the CPU.
    """

    backend = "onnx"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        from .models import SegmenterConfig

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(
                f"ONNX model '{self.path}' does not exist. Export one with skinseg export-onnx."
            )
        data = self.path.read_bytes()
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"ONNX Runtime cannot load '{self.path}': {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if _META_CONFIG not in meta:
            raise CheckpointError(
                f"'{self.path}' has no skinseg config in its metadata; export it with skinseg export-onnx."
            )
        self.config = SegmenterConfig.from_dict(json.loads(meta[_META_CONFIG]))
        self.source_fingerprint = meta.get(_META_SOURCE)
        self.fingerprint = hashlib.sha256(data).hexdigest()
        self.metadata: dict[str, Any] = {}
        self._input = self._session.get_inputs()[0].name
        self.threads = int(threads)

    def eval(self) -> OnnxSegmenter:
        return self

    def to(self, device: Any) -> OnnxSegmenter:
        if str(device) != "cpu":
            raise ConfigError(
                f"OnnxSegmenter runs on the CPU only; got device {device!r}. Use the torch backend."
            )
        return self

    def parameters(self) -> Any:
        return iter(())

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 normalised input -> (N, 1, H, W) float32 logits."""
        return self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def __call__(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return self.predict_logits(x)
        import torch

        return torch.from_numpy(self.predict_logits(x.detach().cpu().contiguous().numpy()))

    def __repr__(self) -> str:
        return (
            f"OnnxSegmenter('{self.path}', arch={self.config.arch!r}, encoder={self.config.encoder_name!r})"
        )


def load_onnx_segmenter(path: str | os.PathLike, *, threads: int | None = None) -> OnnxSegmenter:
    """Load an ``.onnx`` file written by :func:`export_onnx` (see :class:`OnnxSegmenter`)."""
    return OnnxSegmenter(path, threads=threads)


def onnx_parity(
    model: Any,
    onnx_model: OnnxSegmenter,
    *,
    sizes: tuple[tuple[int, int], ...] | None = None,
    batch: int = 2,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """Largest absolute difference of the lesion probabilities (after the sigmoid), torch vs ONNX.

    Random normalised inputs of ``batch`` images are run at each (H, W) of ``sizes``
    (default: the model's landscape box and its transpose, so the dynamic height and
    width are exercised).
    """
    import torch

    from ._geometry import box_hw

    if sizes is None:
        h, w = box_hw(model.config.input_size)
        sizes = ((h, w), (w, h))
    gen = np.random.default_rng(rng)
    worst = 0.0
    model.eval()
    for h, w in sizes:
        x = gen.standard_normal((batch, 3, h, w)).astype(np.float32)
        with torch.no_grad():
            ref = torch.sigmoid(model(torch.from_numpy(x)).float()).numpy()
        got = 1.0 / (1.0 + np.exp(-onnx_model.predict_logits(x).astype(np.float64)))
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    opset: int = ONNX_OPSET,
    tolerance: float | None = 1e-3,
    source_fingerprint: str | None = None,
) -> float:
    """Export a Segmenter to ONNX and check it against torch.

    Parameters
    ----------
    model : Segmenter
        Exported from the CPU, in eval mode (the model itself is not changed).
    path : str or os.PathLike
        Destination ``.onnx`` file; written atomically, parent folders created.
    opset : int, default 17
    tolerance : float or None, default 1e-3
        Largest allowed difference of probabilities (see :func:`onnx_parity`); None
        skips the check. When it fails nothing is written.
    source_fingerprint : str, optional
        Stored in the metadata (default :func:`model_fingerprint`), so a
        cached file can be matched to its checkpoint.

    Returns
    -------
    float
        The measured largest probability difference (NaN when not checked).

    Raises
    ------
    ConfigError
        onnx/onnxruntime missing, or the parity check failed.

    Notes
    -----
    TorchScript-based exporter (``dynamo=False``), input ``image`` (N, 3, H, W)
    float32 normalised, output ``logits`` (N, 1, H, W); H and W must be multiples
    of 32, as :func:`skinseg.inference.prepare_input` produces.
    """
    import copy

    import torch

    from ._geometry import box_hw

    onnx = _require("onnx")
    _require("onnxruntime")
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "input_size"):
        raise ConfigError("`model` must be a skinseg Segmenter (create_segmenter / load_segmenter).")
    if source_fingerprint is None:
        source_fingerprint = model_fingerprint(model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    cpu_model = copy.deepcopy(model).cpu().eval()
    h, w = box_hw(config.input_size)
    dummy = torch.zeros(1, 3, h, w)
    axes = {0: "batch", 2: "height", 3: "width"}
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation/tracer notices are not the user's concern
            torch.onnx.export(
                cpu_model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
            )
        proto = onnx.load(str(tmp))
        from . import __version__

        for key, value in (
            (_META_CONFIG, json.dumps(config.to_dict())),
            (_META_SOURCE, source_fingerprint),
            (_META_VERSION, __version__),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        diff = float("nan")
        if tolerance is not None:
            diff = onnx_parity(cpu_model, OnnxSegmenter(tmp))
            if not diff <= tolerance:
                raise ConfigError(
                    "ONNX export failed the parity check: probabilities differ from torch by up to "
                    f"{diff:.3g} "
                    f"(> {tolerance:g}). Nothing was written; try another opset or use the torch backend."
                )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return diff
    finally:
        tmp.unlink(missing_ok=True)
