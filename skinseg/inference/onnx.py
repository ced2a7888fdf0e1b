"""ONNX export of a segmenter or a classifier, and :class:`OnnxBackend`, which runs the export with ONNX Runtime.

:func:`export_onnx` writes the network (image in, logits out; a segmenter with dynamic
batch, height and width, a classifier with a dynamic batch) with its config
(:class:`~skinseg.models.SegmenterConfig` or :class:`~skinseg.models.ClassifierConfig`),
its kind and the fingerprint of the weights it came from in the ONNX metadata, after
checking it against torch (the fp32 parity check). :class:`OnnxBackend` implements the
:class:`~skinseg.inference.Backend` protocol; it needs ``onnxruntime`` but not torch
(exporting needs torch and ``onnx``). :func:`load_onnx_for_checkpoint` finds or makes the
export of a checkpoint: its own file, one cached by fingerprint, or an export made on demand.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, SkinsegWarning

__all__ = [
    "OnnxBackend",
    "DeferredOnnxBackend",
    "PRECISIONS",
    "MODEL_ONNX_INT8_FILE",
    "export_onnx",
    "export_onnx_bytes",
    "onnx_parity",
    "load_onnx_for_checkpoint",
    "int8_available",
    "onnx_cache_path",
    "ONNX_OPSET",
    "MODEL_ONNX_FILE",
]

ONNX_OPSET = 17
MODEL_ONNX_FILE = "model.onnx"
"""A checkpoint folder may hold its own export under this name (used when its fingerprint matches)."""
MODEL_ONNX_INT8_FILE = "model-int8.onnx"
"""... and its int8 export (:mod:`skinseg.inference.quantize`), shipped only when it passed the accuracy gate."""
PRECISIONS = ("fp32", "int8")
_EXPORT_LOCK = threading.Lock()  # torch.onnx.export keeps global state: one export at a time per process
_META_CONFIG = "skinseg_config"
_META_KIND = "skinseg_kind"  # "segmenter" (also when absent: exports made before classifiers) or "classifier"
_META_SOURCE = "skinseg_source_fingerprint"
_META_VERSION = "skinseg_version"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"The ONNX backend needs the '{module}' package, a dependency of skinseg-dermoscopy that is not "
            "installed here. Reinstall skinseg (pip install skinseg-dermoscopy, or pip install . in a "
            "clone), or use --backend torch."
        ) from exc


def _config_of(kind: str, data: dict[str, Any]) -> Any:
    from ..models.config import ClassifierConfig, SegmenterConfig

    return (SegmenterConfig if kind == "segmenter" else ClassifierConfig).from_dict(data)


def session_options(ort: Any, threads: int | None) -> Any:
    """ONNX Runtime session options of every skinseg session (segmenters and classifiers alike).

    ``threads`` intra-op threads (default: half the CPUs, at least 1), one inter-op thread,
    and idle threads that sleep instead of spinning, so that reader and writer threads, a
    second call side by side, or another process on the machine get the cores. No memory
    pattern: ONNX Runtime would otherwise keep one whole-graph buffer plan per input shape and
    per concurrent call (about 30 MiB more peak for ``skinseg classify`` on 512x384 images, at
    no measured speed gain); the results are the same.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads is not None else max(1, (os.cpu_count() or 2) // 2)
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxBackend:
    """A segmenter or classifier exported to ONNX, run with ONNX Runtime (a :class:`~skinseg.inference.Backend`).

    Parameters
    ----------
    source : path or bytes
        An ``.onnx`` file written by :func:`export_onnx` (it carries the config and the kind), or its bytes.
    threads : int, optional
        ONNX Runtime intra-op threads. Default on the CPU: half the CPUs (at least 1), with
        two calls run side by side by the streaming predictor (:attr:`concurrency` = 2):
        on small inputs two narrow calls keep the cores busier than one wide call.
    device : {"cpu", "cuda"}
        ``"cuda"`` uses ONNX Runtime's CUDA execution provider (``onnxruntime-gpu``).

    Attributes
    ----------
    kind : {"segmenter", "classifier"}
        ``run`` returns (N, H, W) lesion probabilities (sigmoid) of a segmenter, (N, K) class
        probabilities (softmax) of a classifier.
    config : SegmenterConfig or ClassifierConfig
    fingerprint : str
        The fingerprint of the checkpoint it was exported from (stored at export), so a
        folder run records the same model whichever backend runs it.
    precision : {"fp32", "int8"}
        From the file's metadata (int8: :func:`skinseg.inference.quantize.quantize_onnx`).
    path : Path or None
    """

    name = "onnx"

    def __init__(self, source: str | os.PathLike | bytes, *, threads: int | None = None,
                 device: str = "cpu") -> None:
        ort = _require("onnxruntime")

        self._data: bytes | None = None  # kept when the model comes as bytes (model_bytes)
        if isinstance(source, bytes | bytearray):
            self.path, data, label = None, bytes(source), "the exported model"
            self._data = data
        else:
            self.path = Path(source)
            label = f"'{self.path}'"
            if not self.path.is_file():
                raise CheckpointError(f"ONNX model '{self.path}' does not exist. Export one with skinseg export-onnx.")
            data = self.path.read_bytes()
        if threads is not None and int(threads) < 1:
            raise ConfigError(f"`threads` must be an integer >= 1; got {threads!r}.")
        self.concurrency = 2 if threads is None and str(device) == "cpu" else 1
        options = session_options(ort, threads)
        if str(device) not in ("cpu", "cuda"):
            raise ConfigError(f"The ONNX backend runs on 'cpu' or 'cuda'; got device {device!r}.")
        providers = ["CPUExecutionProvider"]
        if str(device) == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ConfigError(
                    "device='cuda' with the ONNX backend needs onnxruntime-gpu (CUDAExecutionProvider), which is not "
                    "installed; use the torch backend on the GPU, or pip install onnxruntime-gpu."
                )
            providers.insert(0, "CUDAExecutionProvider")
        self.device = str(device)
        try:
            self._session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"ONNX Runtime cannot load {label}: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if _META_CONFIG not in meta:
            raise CheckpointError(f"{label} has no skinseg config in its metadata; export it with skinseg export-onnx.")
        self.kind = meta.get(_META_KIND, "segmenter")
        self.config = _config_of(self.kind, json.loads(meta[_META_CONFIG]))
        self.source_fingerprint = meta.get(_META_SOURCE)
        self.precision = meta.get("skinseg_precision", "fp32")
        self.fingerprint = self.source_fingerprint or hashlib.sha256(data).hexdigest()
        self.metadata: dict[str, Any] = {}
        self._input = self._session.get_inputs()[0].name
        self.threads = threads

    def model_bytes(self) -> bytes:
        """The ``.onnx`` bytes it runs (its file's, or those it was given): what another process needs to run it."""
        return self._data if self._data is not None else self.path.read_bytes()  # type: ignore[union-attr]

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 normalised input -> float32 logits: (N, 1, H, W) of a segmenter, (N, K) of a
        classifier."""
        return self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        logits = self.predict_logits(batch)
        if self.kind == "classifier":
            from scipy.special import softmax

            return softmax(logits.astype(np.float32, copy=False), axis=1).astype(np.float32, copy=False)
        from scipy.special import expit

        return expit(logits[:, 0]).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        where = f"'{self.path}'" if self.path is not None else "<in memory>"
        net = (f"arch={self.config.arch!r}, encoder={self.config.encoder_name!r}" if self.kind == "segmenter"
               else f"classifier, backbone={self.config.backbone!r}")
        return f"OnnxBackend({where}, {net}, precision={self.precision!r})"


class DeferredOnnxBackend:
    """An :class:`OnnxBackend` whose model is exported when it first runs (a :class:`~skinseg.inference.Backend`).

    Its ``config``, ``fingerprint`` and ``precision`` are known at once, from the
    checkpoint, so a folder run can check its settings (and refuse a conflicting rerun)
    before anything is exported. :meth:`backend` makes the export now (a runner that sends
    the model to other processes calls it first); :attr:`path` is the exported file once
    there is one (None before, and for an export kept in memory).
    """

    name = "onnx"
    precision = "fp32"

    def __init__(self, config: Any, fingerprint: str, make: Any, *, threads: int | None = None,
                 device: str = "cpu") -> None:
        import threading

        from .backends import model_kind

        self.config, self.fingerprint, self._make = config, fingerprint, make
        self.kind = model_kind(config)
        self.threads, self.device = threads, str(device)
        self.concurrency = 2 if threads is None and self.device == "cpu" else 1
        self._backend: OnnxBackend | None = None
        self._lock = threading.Lock()

    def backend(self) -> OnnxBackend:
        """The real backend (exported on the first call)."""
        with self._lock:
            if self._backend is None:
                self._backend = OnnxBackend(self._make(), threads=self.threads, device=self.device)
            return self._backend

    @property
    def path(self) -> Path | None:
        return self._backend.path if self._backend is not None else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.backend().run(batch)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self.backend().predict_logits(x)

    def __repr__(self) -> str:
        return f"DeferredOnnxBackend({self.kind}, fingerprint={self.fingerprint[:12]!r})"


def onnx_parity(
    model: Any,
    onnx_model: OnnxBackend,
    *,
    sizes: tuple[tuple[int, int], ...] | None = None,
    batch: int = 2,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """Largest absolute difference of the probabilities, torch vs ONNX: a segmenter's lesion probabilities
    (after the sigmoid), a classifier's class probabilities (after the softmax).

    Random normalised inputs of ``batch`` images are run at each (H, W) of ``sizes``
    (default: a segmenter's landscape box and its transpose, so the dynamic height and
    width are exercised; a classifier's square input).
    """
    from .backends import TorchBackend

    sizes = sizes or _export_sizes(model.config)
    gen = np.random.default_rng(rng)
    worst = 0.0
    reference = TorchBackend(model)
    channels = getattr(model.config, "in_chans", 3)
    for h, w in sizes:
        x = gen.standard_normal((batch, channels, h, w)).astype(np.float32)
        worst = max(worst, float(np.abs(onnx_model.run(x) - reference.run(x)).max()))
    return worst


def _export_sizes(config: Any) -> tuple[tuple[int, int], ...]:
    """Input sizes an export is checked at: a segmenter's box and its transpose, a classifier's square."""
    from .._geometry import box_hw
    from .backends import model_kind

    if model_kind(config) == "classifier":
        return ((config.input_size, config.input_size),)
    h, w = box_hw(config.input_size)
    return ((h, w), (w, h))


def export_onnx_bytes(
    model: Any,
    *,
    opset: int = ONNX_OPSET,
    tolerance: float | None = 1e-3,
    source_fingerprint: str | None = None,
) -> tuple[bytes, float]:
    """Export a Segmenter or Classifier to ONNX in memory and check it against torch: (the .onnx bytes, max
    probability diff).

    See :func:`export_onnx` for the parameters; nothing is written.
    """
    import copy

    import torch

    from .. import __version__
    from ..models.checkpoint import model_fingerprint
    from .backends import model_kind

    onnx = _require("onnx")
    _require("onnxruntime")
    config = getattr(model, "config", None)
    kind = model_kind(config)
    if kind is None or not isinstance(model, torch.nn.Module):
        raise ConfigError("`model` must be a skinseg Segmenter (create_segmenter / load_segmenter) or a single "
                          "Classifier (an ensemble's members are exported one by one).")
    if source_fingerprint is None:
        source_fingerprint = model_fingerprint(model)
    cpu_model = copy.deepcopy(model).cpu().eval()
    h, w = _export_sizes(config)[0]
    axes = {0: "batch", 2: "height", 3: "width"} if kind == "segmenter" else {0: "batch"}
    channels = getattr(config, "in_chans", 3)
    buffer = io.BytesIO()
    with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter deprecation/tracer notices are not the user's concern
        # PRESERVE (the model is in eval mode) keeps batch norms as nodes instead of folding them into the
        # convolutions, so weights stored at half precision stay exact and pack losslessly (_pack_fp16)
        torch.onnx.export(cpu_model, (torch.zeros(1, channels, h, w),), buffer, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"], dynamic_axes={"image": axes, "logits": axes},
                          training=torch.onnx.TrainingMode.PRESERVE)
    proto = _pack_fp16(onnx.load_from_string(buffer.getvalue()))
    meta = [(_META_CONFIG, json.dumps(config.to_dict())), (_META_SOURCE, source_fingerprint),
            (_META_VERSION, __version__)]
    if kind != "segmenter":  # a segmenter's export stays as before (no kind entry: the default)
        meta.append((_META_KIND, kind))
    for key, value in meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    diff = float("nan")
    if tolerance is not None:
        diff = onnx_parity(cpu_model, OnnxBackend(data))
        if not diff <= tolerance:
            raise ConfigError(
                f"ONNX export failed the parity check: probabilities differ from torch by up to {diff:.3g} "
                f"(> {tolerance:g}). Nothing was written; try another opset or use the torch backend."
            )
    return data, diff


def _pack_fp16(proto: Any) -> Any:
    """Store every float32 weight that is exactly a float16 value as float16 plus a Cast node (lossless).

    Bundled checkpoints keep float16 weights, so their export halves in size with
    bit-identical numbers; ONNX Runtime folds the casts (and the batch norms) when it
    loads the model, so inference runs in float32 at full speed. Other weights are left as they are.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts, packed = [], []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        if a.size < 16 or not np.array_equal(a.astype(np.float16).astype(np.float32), a):
            continue
        half = numpy_helper.from_array(a.astype(np.float16), f"{init.name}__fp16")
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"))
        packed.append(half)
        graph.initializer.remove(init)
    graph.initializer.extend(packed)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return proto


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    opset: int = ONNX_OPSET,
    tolerance: float | None = 1e-3,
    source_fingerprint: str | None = None,
    overwrite: bool = False,
) -> float:
    """Export a Segmenter or a Classifier to ONNX and check it against torch.

    Parameters
    ----------
    model : Segmenter, SegmenterEnsemble or Classifier
        Exported from the CPU, in eval mode (the model itself is not changed). A
        :class:`~skinseg.models.ClassifierEnsemble` is exported member by member
        (:meth:`skinseg.classify.ClassifierPredictor.load` does it on demand).
    path : str or os.PathLike
        Destination ``.onnx`` file; written atomically, parent folders created.
    opset : int, default 17
    tolerance : float or None, default 1e-3
        Largest allowed difference of probabilities (see :func:`onnx_parity`); None
        skips the check. When it fails nothing is written.
    source_fingerprint : str, optional
        Stored in the metadata (default :func:`~skinseg.models.model_fingerprint`), so
        the file is matched to its checkpoint.
    overwrite : bool, default False
        Replace an existing file; without it an existing file raises before any work.

    Returns
    -------
    float
        The measured largest probability difference (NaN when not checked).

    Raises
    ------
    ConfigError
        onnx/onnxruntime missing, or the parity check failed.
    FileExistsError, IsADirectoryError
        ``path`` exists (without ``overwrite``) or is a folder; checked before exporting.

    Notes
    -----
    TorchScript-based exporter (``dynamo=False``), input ``image`` (N, C, H, W)
    float32 normalised. A segmenter's output ``logits`` is (N, 1, H, W); H and W must be
    multiples of 32, as :func:`skinseg.inference.prepare_input` produces. A classifier's is
    (N, K) at its square ``input_size`` (C = 4 for the ``mask_channel`` crop mode).
    """
    from .._files import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        data, diff = export_onnx_bytes(model, opset=opset, tolerance=tolerance, source_fingerprint=source_fingerprint)
        tmp.write_bytes(data)
    return diff


def onnx_cache_path(cache_dir: str | os.PathLike, fingerprint: str, kind: str = "segmenter") -> Path:
    """Where an ONNX export of the ``kind`` model with ``fingerprint`` is cached in ``cache_dir``."""
    return Path(cache_dir) / f"{kind}-{fingerprint[:32]}.onnx"


def load_onnx_for_checkpoint(
    path_or_name: str | os.PathLike,
    *,
    kind: str = "segmenter",
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    precision: str = "fp32",
    device: str = "cpu",
) -> OnnxBackend:
    """The :class:`OnnxBackend` of a checkpoint: its own export, a cached export, or a new export.

    ``precision="fp32"``: the checkpoint's ``model.onnx``, else the export in ``cache_dir``,
    used only when their stored fingerprint equals the checkpoint's (computed without
    torch); otherwise the model is exported (needs torch and onnx), into ``cache_dir`` when
    given (written atomically, so concurrent runs never see half a file; a cache that cannot
    be written gives a :class:`~skinseg.errors.SkinsegWarning` and the export runs from
    memory) or in memory.
    ``precision="int8"``: the checkpoint's ``model-int8.onnx`` (int8 needs calibration
    images, so it is never made on the fly: see ``skinseg export-onnx --int8``).
    ``kind="classifier"``: a single classifier's checkpoint (one member of an ensemble), the
    same files in its folder.
    """
    from .._files import atomic_write
    from ..models.checkpoint import (
        checkpoint_fingerprint,
        load_classifier,
        load_segmenter,
        resolve_checkpoint,
    )

    if precision not in PRECISIONS:
        raise ConfigError(f"`precision` must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    ckpt = resolve_checkpoint(path_or_name, kind)
    fingerprint = checkpoint_fingerprint(ckpt, kind)
    if precision == "int8":
        found = _matching(ckpt / MODEL_ONNX_INT8_FILE, fingerprint, threads, device)
        if found is None:
            raise ConfigError(
                f"'{ckpt}' has no int8 export made from its weights ({MODEL_ONNX_INT8_FILE}). Make one with "
                f"skinseg export-onnx {path_or_name} -o {ckpt / MODEL_ONNX_INT8_FILE} --int8 --calibration IMAGE_DIR "
                "(and check its accuracy on validation data), or use --precision fp32."
            )
        return found
    candidates = [ckpt / MODEL_ONNX_FILE]
    if cache_dir is not None:
        candidates.append(onnx_cache_path(cache_dir, fingerprint, kind))
    for candidate in candidates:
        found = _matching(candidate, fingerprint, threads, device)
        if found is not None:
            return found

    def make() -> bytes:
        model = load_segmenter(ckpt) if kind == "segmenter" else load_classifier(ckpt)
        data, _ = export_onnx_bytes(model, source_fingerprint=fingerprint)
        if cache_dir is not None:
            target = onnx_cache_path(cache_dir, fingerprint, kind)
            try:
                atomic_write(target, data)
            except OSError as exc:  # a read-only or full cache: run from memory, export again next time
                warnings.warn(f"Cannot keep the ONNX export in the cache ('{target}': "
                              f"{exc.strerror or exc}); it runs from memory and is exported again next time. "
                              "Pass a writable cache_dir.", SkinsegWarning, stacklevel=2)
        return data

    from ..models.checkpoint import read_model_config

    return DeferredOnnxBackend(read_model_config(ckpt, kind), fingerprint, make, threads=threads, device=device)


def int8_available(path_or_name: str | os.PathLike, *, kind: str = "segmenter") -> bool:
    """True if the checkpoint ships an int8 export made from its weights (``model-int8.onnx``).

    Such a file is shipped only when it passed its accuracy gate on validation data (the
    model's card says), so its presence is the gate.
    """
    from ..models.checkpoint import checkpoint_fingerprint, resolve_checkpoint

    ckpt = resolve_checkpoint(path_or_name, kind)
    if not (ckpt / MODEL_ONNX_INT8_FILE).is_file():
        return False
    return _matching(ckpt / MODEL_ONNX_INT8_FILE, checkpoint_fingerprint(ckpt, kind), 1, "cpu") is not None


def _matching(path: Path, fingerprint: str, threads: int | None, device: str) -> OnnxBackend | None:
    if not path.is_file():
        return None
    try:
        found = OnnxBackend(path, threads=threads, device=device)
    except CheckpointError:
        return None  # a damaged file: export afresh (fp32) or report it missing (int8)
    return found if found.source_fingerprint == fingerprint else None
