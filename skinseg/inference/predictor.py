"""The inference core: :class:`Predictor`, from a numpy image to a probability map.

One object owns every step between an (H, W, 3) uint8 RGB image and its (H, W) float32
lesion probability map, for any backend:

1. preprocessing (hair removal, denoising), resolved once (:func:`resolve_preprocess`);
2. input preparation (:meth:`Predictor.prepare`): scale into the model's box
   (:func:`skinseg._geometry.fit_size`), normalise, pad bottom/right to a multiple of 32;
3. batching: inputs of equal padded shape run together (:func:`group_by_shape`), so a
   batch result equals the single-image result;
4. flip TTA: the image and its horizontal, vertical and double flips run as one batch of
   the backend, each result is flipped back exactly and the four are averaged;
5. the backend (:mod:`skinseg.inference.backends`): torch or ONNX Runtime;
6. mapping back (:meth:`Predictor.to_image`): crop the padding, resize bilinearly to the
   image's (H, W).

A Predictor holds no mutable state, so one object can serve several threads.
:meth:`Predictor.predict_stream` (in :mod:`skinseg.inference.stream`) runs the steps as
a pipeline over many images with reader threads, which is what the folder runners use.
The functions :func:`predict_proba`, :func:`predict_proba_batch` and :func:`segment` are
the simple front door: they build a Predictor for the call.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._checks import check_fraction, check_positive_int, check_rgb_image
from .._geometry import fit_size, pad_to_multiple, resize_image
from .._types import IMAGE_MULTIPLE, BinaryMask, ProbMap, RGBImage
from ..errors import ConfigError, SkinsegWarning
from ..postprocess import postprocess_mask
from ..quality import QualityModel, quality_features
from .backends import DEFAULT_BACKEND, DEFAULT_PRECISION, Backend, as_backend, model_kind

__all__ = [
    "Predictor",
    "PreparedImage",
    "predict_proba",
    "predict_proba_batch",
    "segment",
    "prepare_input",
    "probabilities_to_image_size",
    "resolve_tta",
    "resolve_preprocess",
    "group_by_shape",
    "FLIPS",
    "MODEL_PREPROCESS",
    "Segmentation",
]

FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (1,), (1, 2))
"""Axes of a (3, H, W) input flipped for TTA: identity, horizontal, vertical, both (each its own inverse)."""


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the model.

    Attributes
    ----------
    input : (3, H', W') float32
        Normalised and padded (H', W' multiples of 32).
    hw : (h, w)
        Size of the scaled image inside ``input`` (before padding).
    size : (H, W)
        Size of the original image (probabilities are mapped back to it).
    """

    input: np.ndarray
    hw: tuple[int, int]
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the model input (the key images are batched by)."""
        return tuple(self.input.shape)


def resolve_tta(model: Any, tta: bool | None) -> bool:
    """``tta`` if given, else the model's stored default (``config.tta``, False if absent)."""
    if tta is None:
        return bool(getattr(getattr(model, "config", None), "tta", False))
    if not isinstance(tta, bool | np.bool_):
        raise ConfigError(f"`tta` must be True, False or None (the model's default); got {tta!r}.")
    return bool(tta)


MODEL_PREPROCESS = "model"
"""The one spelling of "the preprocessing stored in the model's config" (``preprocess=`` everywhere)."""


def resolve_preprocess(preprocess: Any, config: Any) -> Any:
    """The :class:`~skinseg.preprocess.Preprocess` to run before the model, or None.

    ``preprocess``: ``"model"`` (:data:`MODEL_PREPROCESS`: the steps stored in the model's
    config), None (none), a :class:`~skinseg.preprocess.PreprocessConfig`, its dict, or a
    :class:`~skinseg.preprocess.Preprocess`. Steps that do nothing give None. True and False
    (the former spellings of "model" and None) still work and warn (FutureWarning).
    """
    from ..preprocess import Preprocess, PreprocessConfig

    if isinstance(preprocess, bool):
        import warnings

        spelling = "'model'" if preprocess else "None"
        warnings.warn(f"preprocess={preprocess} is deprecated and will be removed in skinseg 0.3; pass "
                      f"preprocess={spelling}.", FutureWarning, stacklevel=3)
        preprocess = MODEL_PREPROCESS if preprocess else None
    if preprocess is None:
        return None
    if isinstance(preprocess, str) and preprocess == MODEL_PREPROCESS:
        cfg = PreprocessConfig.from_dict(config.preprocess) if config.preprocess else PreprocessConfig()
    elif isinstance(preprocess, Preprocess):
        cfg = preprocess.config
    elif isinstance(preprocess, PreprocessConfig):
        cfg = preprocess
    elif isinstance(preprocess, dict):
        cfg = PreprocessConfig.from_dict(preprocess)
    else:
        raise ConfigError(
            f"`preprocess` must be 'model', None, a PreprocessConfig, its dict or a Preprocess; got {preprocess!r}."
        )
    return None if cfg == PreprocessConfig() else Preprocess(cfg)


def prepare_input(image: RGBImage, config: Any, *, preprocess: Any = MODEL_PREPROCESS,
                  ) -> tuple[np.ndarray, tuple[int, int]]:
    """Scale, normalise and pad one image: returns ((3, H', W') float32, (h, w) before padding).

    ``preprocess`` as in :func:`resolve_preprocess` ("model": the model's stored steps).
    """
    pre = resolve_preprocess(preprocess, config)
    if pre is not None:
        image = pre(image)
    return _prepare(image, config)


def _prepare(image: np.ndarray, config: Any) -> tuple[np.ndarray, tuple[int, int]]:
    hw = fit_size(image.shape[0], image.shape[1], config.input_size)
    small = resize_image(image, hw).astype(np.float32)
    mean = np.asarray(config.mean, np.float32) * 255
    std = np.asarray(config.std, np.float32) * 255
    x = pad_to_multiple((small - mean) / std, IMAGE_MULTIPLE, 0.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)), hw


def probabilities_to_image_size(prob_small: np.ndarray, hw: tuple[int, int], out_hw: tuple[int, int]) -> ProbMap:
    """Crop the padding (to ``hw``) and resize bilinearly to ``out_hw``; float32 in [0, 1]."""
    import cv2

    p = np.ascontiguousarray(prob_small[: hw[0], : hw[1]], dtype=np.float32)
    if p.shape != tuple(out_hw):
        p = cv2.resize(p, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(p, 0.0, 1.0).astype(np.float32, copy=False)


def group_by_shape(keys: Sequence[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` with equal ``keys[i]``.

    Sorted by key (a stable sort keeps the input order within a key), so images of the
    same padded shape run together whatever order they come in.
    """
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and keys[groups[-1][0]] == keys[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class Segmentation(NamedTuple):
    """A mask with its quality estimate (:meth:`Predictor.segment` with ``return_quality=True``).

    ``quality``: the estimated IoU an expert's mask would have with ``mask``, in [0, 1] (0 for
    an empty mask), None when the model has no fitted estimate; ``needs_review``: ``quality``
    is below the review threshold (None without an estimate).
    """

    mask: BinaryMask
    quality: float | None
    needs_review: bool | None


def _resolve_quality(quality: Any, model: Any, backend: Backend) -> QualityModel | None:
    """``quality``: "model" (the one the model or checkpoint carries), None, or a QualityModel; a model fitted
    for other weights is dropped with a warning."""
    if isinstance(quality, str) and quality == MODEL_PREPROCESS:
        quality = getattr(model, "quality", None)
        if quality is None:
            quality = getattr(getattr(backend, "model", None), "quality", None)
    if quality is None:
        return None
    if not isinstance(quality, QualityModel):
        raise ConfigError(f"`quality` must be 'model', None or a skinseg.quality.QualityModel; got {quality!r}.")
    fitted_for = quality.record.get("segmenter_fingerprint")
    if fitted_for is not None and fitted_for != backend.fingerprint:
        warnings.warn("The quality estimate was fitted for other segmenter weights; it is not used (refit it with "
                      "benchmarks/quality_signals.py --fit-out).", SkinsegWarning, stacklevel=3)
        return None
    return quality


class Predictor:
    """Lesion probabilities from images, with any backend: the public inference core.

    Parameters
    ----------
    model : Segmenter, SegmenterEnsemble or Backend
        A torch segmenter (:func:`skinseg.load_segmenter`), or a backend such as
        :class:`~skinseg.inference.onnx.OnnxBackend`. Use :meth:`Predictor.load` to
        build one from a checkpoint path or bundled name (with the loaders' default
        backend and precision), and :meth:`Predictor.of` to accept any of these.
    backend : {"torch", "onnx"}, optional
        For a torch ``model``: ``"onnx"`` exports it (in memory) and runs ONNX Runtime.
        Default: the model as it is (a model object is never converted unasked).
    tta : bool, optional
        Flip test-time augmentation; None: the model's stored default (``config.tta``).
    batch_size : int, default 4
        Model inputs per backend call; with TTA an image's four flips count four, so a call
        holds ``batch_size // 4`` images (at least one). Measured on a 2-core CPU
        (``benchmarks/segment_folder.py``): calls of 4 inputs run as fast as calls of 8 or 16
        and halve ONNX Runtime's activation memory; one call of every flip of 8 images was
        slower. On a GPU, larger calls pay: raise it.
    device : str, optional
        Torch device to run on (the model is moved there); None: where it is.
    preprocess : default "model"
        Steps before the model, see :func:`resolve_preprocess`.
    threshold : float, optional
        Decision threshold of :meth:`segment`; None: the model's stored threshold.
    quality : "model", None or QualityModel
        The per-image quality estimate (:mod:`skinseg.quality`): "model" (default) takes the
        one fitted for this model (a bundled model's ``quality.json``; used only with the
        weights it was fitted for), None turns it off.

    Examples
    --------
    >>> import skinseg as ss
    >>> from skinseg.testing import synthetic_lesion
    >>> image, _ = synthetic_lesion((65, 47), rng=0)
    >>> predictor = ss.Predictor(ss.load_segmenter("default"), tta=True)
    >>> predictor.predict_proba(image).shape
    (65, 47)
    """

    def __init__(
        self,
        model: Any,
        *,
        backend: str | None = None,
        tta: bool | None = None,
        batch_size: int = 4,
        device: str | None = None,
        preprocess: Any = "model",
        threshold: float | None = None,
        quality: Any = "model",
    ) -> None:
        if backend not in (None, "torch", "onnx"):
            raise ConfigError(f"`backend` must be 'torch' or 'onnx'; got {backend!r}.")
        runner = as_backend(model, device=device)
        if model_kind(runner.config) != "segmenter":
            raise ConfigError(f"A Predictor runs a segmenter; got a {model_kind(runner.config)} (classifiers run in "
                              "skinseg.classify.ClassifierPredictor).")
        if backend is not None and backend != runner.name:
            if backend == "torch":
                raise ConfigError("This model is an ONNX backend; load the torch checkpoint for backend='torch'.")
            from .onnx import OnnxBackend, export_onnx_bytes

            if device not in (None, "cpu"):
                raise ConfigError(f"The ONNX backend runs on the CPU; got device {device!r}.")
            runner = OnnxBackend(export_onnx_bytes(runner.model, source_fingerprint=runner.fingerprint)[0])
        self.backend: Backend = runner
        self.config = runner.config
        self.tta = resolve_tta(runner, tta)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.preprocess = resolve_preprocess(preprocess, self.config)
        self.threshold = self.config.threshold if threshold is None else check_fraction(threshold, "threshold")
        self.quality: QualityModel | None = _resolve_quality(quality, model, runner)

    @classmethod
    def of(cls, model: Any, *, tta: bool | None = None, preprocess: Any = MODEL_PREPROCESS,
           batch_size: int | None = None, threshold: float | None = None, **load: Any) -> Predictor:
        """``model`` as a Predictor: the one way every function and runner turns a model into one.

        - a Predictor: used as it is; ``tta``, ``batch_size``, ``threshold`` and a
          ``preprocess`` other than ``"model"`` replace its own (``"model"`` and None keep them);
        - a checkpoint folder or bundled name: :meth:`load` (``load``: its ``backend``,
          ``device``, ``precision``, ``threads`` and ``cache_dir``, with the loaders' defaults);
        - a segmenter or backend: ``Predictor(model, ...)``.
        """
        if isinstance(model, Predictor):
            if load:
                raise ConfigError(f"{', '.join(sorted(load))} cannot change a ready Predictor; load it again instead.")
            same = (tta is None or resolve_tta(model.backend, tta) == model.tta) and (
                isinstance(preprocess, str) and preprocess == MODEL_PREPROCESS) and (
                batch_size is None or batch_size == model.batch_size) and threshold is None
            if same:
                return model
            pre = model.preprocess if isinstance(preprocess, str) and preprocess == MODEL_PREPROCESS else preprocess
            return cls(model.backend, tta=model.tta if tta is None else tta,
                       batch_size=model.batch_size if batch_size is None else batch_size, preprocess=pre,
                       threshold=model.threshold if threshold is None else threshold, quality=model.quality)
        own = {"tta": tta, "preprocess": preprocess, "batch_size": 4 if batch_size is None else batch_size,
               "threshold": threshold}
        if isinstance(model, str | os.PathLike):
            return cls.load(model, **load, **own)
        if load:
            raise ConfigError(f"{', '.join(sorted(load))} apply to a checkpoint path or name; got a "
                              f"{type(model).__name__}.")
        return cls(model, **own)

    @classmethod
    def load(cls, path_or_name: Any = "default", *, backend: str = DEFAULT_BACKEND, device: str = "cpu",
             precision: str = DEFAULT_PRECISION, threads: int | None = None, cache_dir: Any = None,
             **kwargs: Any) -> Predictor:
        """A Predictor for a checkpoint directory or bundled name (see :func:`~skinseg.inference.load_backend`).

        The defaults are the fast path, the same as every loader's: ONNX Runtime where it is
        installed, int8 where the checkpoint ships an int8 export that passed its accuracy gate.
        With a checkpoint that ships its exports (or a cached one) torch is not imported.
        ``kwargs``: the Predictor's ``tta``, ``batch_size``, ``preprocess``, ``threshold``.
        """
        from ..models.checkpoint import load_quality_model
        from .loaders import load_backend

        runner = load_backend(path_or_name, backend=backend, device=device, precision=precision, threads=threads,
                              cache_dir=cache_dir)
        kwargs.setdefault("quality", load_quality_model(path_or_name))
        return cls(runner, **kwargs)

    # ------------------------------------------------------------------ steps

    def prepare(self, image: RGBImage, *, name: str = "image") -> PreparedImage:
        """Preprocess, scale, normalise and pad one image (thread-safe)."""
        image = check_rgb_image(image, name)
        seen = self.preprocess(image) if self.preprocess is not None else image
        return self.prepare_preprocessed(seen, size=image.shape[:2])

    def prepare_preprocessed(self, image: RGBImage, *, size: tuple[int, int] | None = None) -> PreparedImage:
        """:meth:`prepare` for an image that has already been through :attr:`preprocess`."""
        x, hw = _prepare(image, self.config)
        return PreparedImage(x, hw, tuple(size or image.shape[:2]))  # type: ignore[arg-type]

    def predict_prepared(self, batch: Sequence[PreparedImage]) -> list[np.ndarray]:
        """Model-scale probability maps (H', W') of prepared images that share one input shape.

        One backend call per ``batch_size`` model inputs: with TTA the four flips of an
        image go into the same call, so a call holds ``batch_size // 4`` images (at least one).
        """
        if not batch:
            return []
        shape = batch[0].shape
        if any(p.shape != shape for p in batch):
            raise ConfigError("predict_prepared() needs inputs of one shape; group them with group_by_shape().")
        out: list[np.ndarray] = []
        flips = FLIPS if self.tta else FLIPS[:1]
        per_call = self.images_per_call
        for start in range(0, len(batch), per_call):
            x = np.stack([p.input for p in batch[start : start + per_call]])
            n = len(x)
            if len(flips) > 1:
                x = np.concatenate([x] + [np.flip(x, tuple(a + 1 for a in dims)) for dims in flips[1:]])
            probs = self.backend.run(np.ascontiguousarray(x))
            total = probs[:n]
            for k, dims in enumerate(flips[1:], start=1):
                total = total + np.flip(probs[k * n : (k + 1) * n], tuple(a for a in dims))
            if len(flips) > 1:
                total = total / np.float32(len(flips))
            out.extend(total[i] for i in range(n))
        return out

    @property
    def images_per_call(self) -> int:
        """Images per backend call: ``batch_size`` inputs, an image's four flips counting four with TTA."""
        return max(1, self.batch_size // (len(FLIPS) if self.tta else 1))

    def to_image(self, prob: np.ndarray, prepared: PreparedImage) -> ProbMap:
        """Map a model-scale probability map back to the original image size."""
        return probabilities_to_image_size(prob, prepared.hw, prepared.size)

    # ------------------------------------------------------------------ whole images

    def predict_proba(self, image: RGBImage) -> ProbMap:
        """(H, W) float32 lesion probability in [0, 1] for one (H, W, 3) uint8 RGB image."""
        prepared = self.prepare(image, name="image")
        return self.to_image(self.predict_prepared([prepared])[0], prepared)

    def predict_proba_batch(self, images: Sequence[RGBImage]) -> list[ProbMap]:
        """:meth:`predict_proba` for a list of images of any sizes (batched by padded shape)."""
        if isinstance(images, np.ndarray):
            raise ConfigError("`images` must be a list of (H, W, 3) arrays; for one image use predict_proba().")
        prepared = [self.prepare(im, name=f"images[{i}]") for i, im in enumerate(images)]
        results: list[ProbMap | None] = [None] * len(prepared)
        for group in group_by_shape([p.shape for p in prepared], self.batch_size):
            for i, prob in zip(group, self.predict_prepared([prepared[i] for i in group]), strict=True):
                results[i] = self.to_image(prob, prepared[i])
        return results  # type: ignore[return-value]

    def segment(self, image: RGBImage, *, largest_component: bool = True, fill_holes: bool = True,
                return_quality: bool = False) -> Any:
        """Lesion mask: :meth:`predict_proba`, :attr:`threshold`, then the clean-up of
        :func:`skinseg.postprocess.postprocess_mask`.

        With ``return_quality`` a :class:`Segmentation` ``(mask, quality, needs_review)``: the
        mask with its estimated IoU against an expert's mask (:meth:`estimate_quality`).
        """
        prob = self.predict_proba(image)
        mask = postprocess_mask(prob, threshold=self.threshold, largest_component=largest_component,
                                fill_holes=fill_holes)
        if not return_quality:
            return mask
        quality = self.estimate_quality(prob, mask, image)
        return Segmentation(mask, quality, None if quality is None else self.needs_review(quality))

    def estimate_quality(self, prob: ProbMap, mask: BinaryMask, image: RGBImage | None = None) -> float | None:
        """The estimated IoU of ``mask`` (made from ``prob``) with an expert's mask, in [0, 1]; None without a
        fitted estimate (:attr:`quality`). ``image``: the original image (its border contrast is a signal)."""
        if self.quality is None:
            return None
        return self.quality.estimate(quality_features(prob, mask, image, threshold=self.threshold))

    def needs_review(self, quality: float, review_below: float | None = None) -> bool:
        """Whether an estimate is below the review threshold (``review_below``, default the fitted one)."""
        limit = self.quality.review_below if review_below is None and self.quality is not None else review_below
        return limit is not None and quality < limit

    def predict_stream(self, items: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
        """Predict many images as a pipeline; see :func:`skinseg.inference.stream.predict_stream`."""
        from .stream import predict_stream

        return predict_stream(self, items, **kwargs)

    def settings(self) -> dict[str, Any]:
        """What determines this predictor's output (for run journals): model, backend, TTA, preprocessing, and
        the quality estimate when there is one."""
        out = {
            "model": self.backend.fingerprint,
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "tta": self.tta,
            "preprocess": self.preprocess.to_dict() if self.preprocess is not None else None,
        }
        if self.quality is not None:
            text = json.dumps(self.quality.to_dict(), sort_keys=True)
            out["quality"] = hashlib.sha256(text.encode()).hexdigest()
        return out

    def __repr__(self) -> str:
        return f"Predictor({self.backend!r}, tta={self.tta}, batch_size={self.batch_size})"


def predict_proba(model: Any, image: RGBImage, *, tta: bool | None = None,
                  preprocess: Any = MODEL_PREPROCESS) -> ProbMap:
    """Lesion probability for every pixel of ``image``.

    Parameters
    ----------
    model : Segmenter, Backend or Predictor
        From :func:`skinseg.load_segmenter` or :func:`skinseg.create_segmenter` (it runs
        on whatever device it is on, e.g. after ``model.to("cuda")``), an inference
        backend, or a :class:`Predictor` (see :meth:`Predictor.of`).
    image : (H, W, 3) uint8 RGB
    tta : bool or None
        Average over the identity and horizontal, vertical and both flips (each
        flip's inverse is exact). None (default): the model's ``config.tta``.
    preprocess : "model", None or a config
        "model" (default): apply the preprocessing stored in the model's config (hair
        removal, denoising; a Predictor's own); None: the image is already preprocessed.
        See :func:`resolve_preprocess` for the other values.

    Returns
    -------
    (H, W) float32 in [0, 1], the same size as ``image``.
    """
    return Predictor.of(model, tta=tta, preprocess=preprocess).predict_proba(image)


def predict_proba_batch(model: Any, images: Sequence[RGBImage], *, batch_size: int | None = None,
                        tta: bool | None = None, preprocess: Any = MODEL_PREPROCESS) -> list[ProbMap]:
    """:func:`predict_proba` for a list of images of any sizes.

    Images whose padded model input has the same shape are batched together, so
    every result equals the single-image result. ``batch_size``: model inputs per call
    (default 4, or a Predictor's own).
    """
    return Predictor.of(model, tta=tta, preprocess=preprocess, batch_size=batch_size).predict_proba_batch(images)


def segment(model: Any, image: np.ndarray, *, threshold: float | None = None, tta: bool | None = None,
            largest_component: bool = True, fill_holes: bool = True, preprocess: Any = MODEL_PREPROCESS) -> BinaryMask:
    """Lesion mask of ``image``: :func:`predict_proba` then threshold and clean-up.

    ``threshold`` defaults to the model's stored decision threshold and ``tta``
    (flip test-time augmentation) to the model's stored ``config.tta``. With
    ``largest_component`` only the largest connected region is kept; with
    ``fill_holes`` enclosed holes are filled (:func:`skinseg.postprocess.postprocess_mask`).
    """
    predictor = Predictor.of(model, tta=tta, preprocess=preprocess)
    thr = predictor.threshold if threshold is None else threshold
    return postprocess_mask(predictor.predict_proba(image), threshold=thr, largest_component=largest_component,
                            fill_holes=fill_holes)

