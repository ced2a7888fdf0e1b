"""The Ray engine's workers: the model they run, and the Ray Data callable class (see :mod:`.ray_engine`).

- :func:`predictor_loader`: what each actor calls once to get its
  :class:`~skinseg.inference.Predictor`: an ONNX model sent by value (its bytes, so the nodes
  need no model file), a pickled torch model, or a loader that each actor calls itself (a
  checkpoint name, a GPU model).
- :class:`SegmentWorker`: the callable class of ``map_batches``; per call it reads and decodes
  its images (the local engine's decoder), runs them through ``predict_stream``, writes the
  masks and overlays straight to the output (:func:`skinseg.runs.segment.write_outputs`) and
  returns one small row per image.

Nothing here imports Ray: the class runs inside Ray's worker processes.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SkinsegError
from ..inference import Backend, Predictor
from .inputs import Job
from .segment import FILE_ERRORS, OutputSpec, segment_outputs, write_outputs
from .storage import ArrowStore, LocalStore

__all__ = ["predictor_loader", "predictor_settings", "SegmentWorker"]


def _onnx_predictor(data: bytes, threads: int | None, device: str, kwargs: dict[str, Any]) -> Predictor:
    from ..inference.onnx import OnnxBackend

    return Predictor(OnnxBackend(data, threads=threads, device=device), **kwargs)


def _same(predictor: Predictor) -> Predictor:
    return predictor


def _with_threshold(loader: Callable[[], Predictor], threshold: float | None) -> Predictor:
    p = loader()
    if not isinstance(p, Predictor):
        raise ConfigError(f"The model loader must return a skinseg Predictor; got {type(p).__name__}.")
    if threshold is None:
        return p
    return Predictor(p.backend, tta=p.tta, batch_size=p.batch_size, preprocess=p.preprocess, threshold=threshold)


def predictor_loader(model: Any, *, tta: bool | None = None, preprocess: Any = "model", batch_size: int = 4,
                     threshold: float | None = None, threads: int = 1, gpus: bool = False,
                     ) -> tuple[Callable[[], Predictor], Predictor | None]:
    """A picklable ``loader() -> Predictor`` that each actor calls once, and the Predictor if built here.

    ``model`` is a checkpoint folder or bundled name (loaded by every actor with
    :meth:`Predictor.load`: ONNX Runtime where installed, on ``"cuda"`` when the actors have
    GPUs), a zero-argument callable returning a Predictor (e.g.
    ``functools.partial(Predictor.load, "ckpt", device="cuda")``), or a Predictor, backend or
    segmenter built here: an ONNX backend travels as its model bytes (the workers need no
    model file), anything else pickled. ``threads``: ONNX Runtime threads of a worker (unless
    the model sets them); ``gpus``: the workers have GPUs (a checkpoint is then loaded on
    ``"cuda"``).
    """
    own = {"tta": tta, "preprocess": preprocess, "batch_size": batch_size}
    if isinstance(model, str | os.PathLike):
        device = "cuda" if gpus else "cpu"
        return functools.partial(Predictor.load, os.fspath(model), device=device, threads=threads, threshold=threshold,
                                 **own), None
    if isinstance(model, Predictor) or isinstance(model, Backend) or hasattr(getattr(model, "config", None),
                                                                                 "input_size"):
        predictor = Predictor.of(model, threshold=threshold, **own)
        backend = predictor.backend
        kwargs = {"tta": predictor.tta, "batch_size": predictor.batch_size, "preprocess": predictor.preprocess,
                  "threshold": predictor.threshold}
        path = getattr(backend, "path", None)
        if backend.name == "onnx" and isinstance(path, Path) and path.is_file():
            own_threads = getattr(backend, "threads", None)
            return functools.partial(_onnx_predictor, path.read_bytes(), own_threads or threads, backend.device,
                                     kwargs), predictor
        if backend.name == "onnx":
            raise ConfigError(
                "This ONNX model was not loaded from a file, so it cannot be sent to Ray workers. Pass the "
                "checkpoint folder or bundled name instead (each worker loads it), or a loader function."
            )
        return functools.partial(_same, predictor), predictor
    if callable(model):
        return functools.partial(_with_threshold, model, threshold), None
    raise ConfigError(
        "`model` for engine='ray' must be a checkpoint folder or bundled name, a Predictor (or backend or "
        f"segmenter), or a function returning a Predictor; got {type(model).__name__}."
    )


def predictor_settings(predictor: Predictor) -> dict[str, Any]:
    """:meth:`Predictor.settings` as it reads back from JSON (what run.json records)."""
    return json.loads(json.dumps(predictor.settings()))


def _settings_diff(expected: dict[str, Any], got: dict[str, Any]) -> str:
    keys = list(dict.fromkeys([*expected, *got]))
    return ", ".join(f"{k}: {expected.get(k)!r} here, {got.get(k)!r} on the worker" for k in keys
                     if expected.get(k) != got.get(k))


# ----------------------------------------------------------------------------- the actor


class SegmentWorker:
    """The Ray Data callable class: loads the Predictor once, then segments batches of paths.

    Input batch columns: ``key`` (path relative to the input folder) and ``path`` (as messages
    name it). Output columns per image: ``key``, ``row`` and ``outputs`` (JSON), ``read_s``,
    ``infer_s``, ``write_s``, ``pid``, and ``fatal`` (empty, or a skinseg error that stops the
    run: the model could not be loaded, or loads with other settings than the driver's).
    """

    def __init__(self, loader: Callable[[], Predictor], settings: dict[str, Any], spec: OutputSpec,
                 src: LocalStore | ArrowStore, dst: LocalStore | ArrowStore, *, mask_suffix: str, convert: bool,
                 max_pixels: int, readers: int = 1) -> None:
        self.spec, self.src, self.dst = spec, src, dst
        self.outputs = segment_outputs(mask_suffix)
        self.convert, self.max_pixels, self.readers = convert, max_pixels, readers
        self.pid = os.getpid()
        self.fatal = ""
        self.predictor: Predictor | None = None
        try:
            predictor = loader()
            got = predictor_settings(predictor)
            if got != settings:
                raise ConfigError(
                    f"The model on a Ray worker differs from the driver's ({_settings_diff(settings, got)}). Install "
                    "the same skinseg, onnxruntime and model on every node (or pass --backend/--precision explicitly)."
                )
            self.predictor = predictor
        except (SkinsegError, ImportError, OSError) as exc:  # reported once per batch; the driver stops
            self.fatal = f"{type(exc).__name__}: {' '.join(str(exc).split())}"

    def _load(self, job: Job) -> Any:
        return self.src.read_image(job.key, convert=self.convert, max_pixels=self.max_pixels)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        keys, paths = [str(k) for k in batch["key"]], [str(p) for p in batch["path"]]
        cols: dict[str, list[Any]] = {c: [] for c in ("key", "row", "outputs", "read_s", "infer_s", "write_s", "pid",
                                                      "fatal")}

        def add(key: str, row: Any, outputs: Any, read_s: float, infer_s: float, write_s: float, fatal: str) -> None:
            for c, v in zip(cols, (key, json.dumps(row), json.dumps(outputs), read_s, infer_s, write_s, self.pid,
                                   fatal), strict=True):
                cols[c].append(v)

        if self.predictor is None:
            for key in keys:
                add(key, {}, [], 0.0, 0.0, 0.0, self.fatal)
            return cols
        jobs = [Job(i, p, k, self.outputs(Path(k))) for i, (k, p) in enumerate(zip(keys, paths, strict=True))]
        stream = self.predictor.predict_stream(jobs, load=self._load, errors=FILE_ERRORS, workers=self.readers,
                                               keep_images=self.spec.overlay or self.spec.measure)
        try:
            for res in stream:
                t0 = time.perf_counter()
                row, outputs = write_outputs(self.spec, res, self.dst.write_bytes)
                res.drop_arrays()
                add(res.item.key, row, outputs, res.read_s, res.infer_s, time.perf_counter() - t0, "")
        finally:
            stream.close()
        return cols
