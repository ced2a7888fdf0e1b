"""The models of a folder job as :class:`~skinseg.runs.jobs.ModelSource` s: what the job's runner loads in
each process, and how a Ray worker gets the same model.

- :func:`predictor_source`: a segmenter :class:`~skinseg.inference.Predictor` from a checkpoint
  folder or bundled name, a Predictor, backend or torch segmenter, or a function returning a
  Predictor (all through :meth:`Predictor.of <skinseg.inference.Predictor.of>`, the one way).
- :func:`classifier_source`: a :class:`~skinseg.classify.ClassifierPredictor` from a name or
  folder, a ClassifierPredictor, a torch classifier, or a function returning one.

Sending to Ray workers (:meth:`ModelSource.portable`): an ONNX model loaded from a file
travels as its bytes (the nodes need no model file; a deferred export is made first, once,
here), a torch model pickled; a model given by name is loaded by each worker when the driver
did not load it (GPU workers). Nothing here imports Ray or torch.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

from ..classify.predictor import ClassifierPredictor
from ..errors import ConfigError
from ..inference import DeferredOnnxBackend, OnnxBackend, Predictor
from .jobs import ModelSource

__all__ = ["predictor_source", "classifier_source", "as_json"]


def as_json(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from run.json (what a run compares)."""
    return json.loads(json.dumps(settings))


def _same(model: Any) -> Any:
    return model


def _checked(loader: Callable[[], Any], kind: type, adjust: Callable[[Any], Any]) -> Any:
    model = loader()
    if not isinstance(model, kind):
        raise ConfigError(f"The model loader must return a skinseg {kind.__name__}; got {type(model).__name__}.")
    return adjust(model)


def _onnx_bytes(backend: Any, in_memory: bool) -> bytes | None:
    """The bytes an ONNX backend runs (a deferred export is made now, once, here); for a model held in memory
    (not loaded from a file) only with ``in_memory``, else None."""
    if isinstance(backend, DeferredOnnxBackend):
        backend = backend.backend()  # export once here (into the cache folder, if the loader has one)
    if not isinstance(backend, OnnxBackend):
        return None
    return backend.model_bytes() if in_memory or backend.path is not None else None


def _onnx_member(data: bytes, threads: int | None, device: str) -> OnnxBackend:
    return OnnxBackend(data, threads=threads, device=device)


# ----------------------------------------------------------------------------- segmenter


def _onnx_predictor(data: bytes, threads: int | None, device: str, kwargs: dict[str, Any]) -> Predictor:
    return Predictor(_onnx_member(data, threads, device), **kwargs)


def _ship_predictor(threads: int | None, reloadable: bool) -> Callable[[Predictor], Callable[[], Predictor] | None]:
    def ship(predictor: Predictor) -> Callable[[], Predictor] | None:
        backend = predictor.backend
        if backend.name != "onnx":
            return None if reloadable else functools.partial(_same, predictor)  # a torch model: pickled
        data = _onnx_bytes(backend, in_memory=not reloadable or isinstance(backend, DeferredOnnxBackend))
        if data is None:  # a loader's model held in memory: each worker calls the loader
            return None
        kwargs = {"tta": predictor.tta, "batch_size": predictor.batch_size, "preprocess": predictor.preprocess,
                  "threshold": predictor.threshold, "quality": predictor.quality}
        return functools.partial(_onnx_predictor, data, backend.threads or threads, backend.device, kwargs)

    return ship


def _with_threshold(threshold: float | None) -> Callable[[Predictor], Predictor]:
    return functools.partial(Predictor.of, threshold=threshold)


def predictor_source(model: Any, *, tta: bool | None = None, preprocess: Any = "model", batch_size: int | None = None,
                     threshold: float | None = None, threads: int | None = None, device: str = "cpu") -> ModelSource:
    """The segmenter of a job: ``model`` as a :class:`~skinseg.inference.Predictor` (:meth:`Predictor.of`).

    ``model``: a checkpoint folder or bundled name (loaded with the loaders' defaults on
    ``device``, ONNX Runtime with ``threads``), a Predictor, backend or torch segmenter, or a
    zero-argument function returning a Predictor (called where the model is needed).
    """
    own = {"tta": tta, "preprocess": preprocess, "batch_size": batch_size, "threshold": threshold}
    if isinstance(model, str | os.PathLike):
        load = functools.partial(Predictor.of, os.fspath(model), device=device, threads=threads, **own)
        return ModelSource(load, ship=_ship_predictor(threads, reloadable=True))
    if not isinstance(model, Predictor) and callable(model) and getattr(model, "config", None) is None:
        if tta is not None or preprocess != "model":  # (batch_size: the loader's Predictor has its own)
            raise ConfigError("A model loader sets the Predictor's tta, preprocess and batch_size itself.")
        load = functools.partial(_checked, model, Predictor, _with_threshold(threshold))
        return ModelSource(load, ship=_ship_predictor(threads, reloadable=True))
    predictor = Predictor.of(model, **own)
    return ModelSource(functools.partial(_same, predictor), loaded=predictor,
                       ship=_ship_predictor(threads, reloadable=False))


# ----------------------------------------------------------------------------- classifier


def _onnx_classifier(members: list[bytes], threads: int | None, device: str, kwargs: dict[str, Any],
                     ) -> ClassifierPredictor:
    return ClassifierPredictor([_onnx_member(m, threads, device) for m in members], **kwargs)


def _ship_classifier(threads: int | None) -> Callable[[ClassifierPredictor], Callable[[], Any] | None]:
    def ship(classifier: ClassifierPredictor) -> Callable[[], ClassifierPredictor] | None:
        kwargs = {"temperature": classifier.temperature, "tta": classifier.tta, "fingerprint": classifier.fingerprint,
                  "source": classifier.source, "batch_size": classifier.batch_size,
                  "decision_weights": classifier.decision_weights, "metadata_model": classifier.metadata_model}
        if any(m.name != "onnx" for m in classifier.members):
            return functools.partial(_same, classifier)  # torch members: pickled
        members = [_onnx_bytes(m, in_memory=True) for m in classifier.members]
        member_threads = classifier.members[0].threads or threads
        return functools.partial(_onnx_classifier, members, member_threads, classifier.members[0].device,
                                 kwargs)  # type: ignore[arg-type]

    return ship


def classifier_source(classifier: Any, *, tta: bool | None = None, threads: int | None = None,
                      device: str = "cpu", cache_dir: Any = None) -> ModelSource:
    """The classifier of a job: ``classifier`` as a :class:`~skinseg.classify.ClassifierPredictor`.

    ``classifier``: a checkpoint folder or bundled name (:meth:`ClassifierPredictor.load` with
    the loaders' defaults, exports in ``cache_dir``), a ClassifierPredictor, a torch classifier
    or ensemble, or a zero-argument function returning a ClassifierPredictor.
    """
    if isinstance(classifier, str | os.PathLike):
        load = functools.partial(ClassifierPredictor.of, os.fspath(classifier), tta=tta, device=device,
                                 threads=threads, cache_dir=cache_dir)
        return ModelSource(load, ship=_ship_classifier(threads))
    if not isinstance(classifier, ClassifierPredictor) and callable(classifier) and getattr(
            classifier, "members", None) is None:
        load = functools.partial(_checked, classifier, ClassifierPredictor,
                                 functools.partial(ClassifierPredictor.of, tta=tta))
        return ModelSource(load, ship=_ship_classifier(threads))
    made = ClassifierPredictor.of(classifier, tta=tta)
    return ModelSource(functools.partial(_same, made), loaded=made, ship=_ship_classifier(threads))
