"""The classifier's inference core: :class:`ClassifierPredictor`, from an image and its lesion mask to class
probabilities, with any backend (torch-free).

One object owns every step between an (H, W, 3) uint8 RGB image with its (H, W) mask and
the (K,) class probabilities, for a single classifier or an ensemble:

1. the crop of each member (:func:`prepare_crop`: its crop mode, margin, input size and
   colour normalisation; an empty or missing mask falls back to the whole image);
2. normalisation (:func:`normalize_crops`: ImageNet mean/std, the mask channel to [-1, 1]);
3. flip TTA (optional): the crop and its horizontal, vertical and double flips run as one
   backend call, and their softmax probabilities are averaged;
4. the backend (:mod:`skinseg.inference.backends`, the segmenter's protocol): ONNX Runtime
   (exported on demand into the cache folder, checked against torch) or torch;
5. the mean of the members' probabilities, then the ensemble's temperature.

:meth:`ClassifierPredictor.load` builds one from a checkpoint folder or bundled name with
the loaders' defaults (ONNX Runtime on the CPU, int8 only where a gated export ships);
:meth:`ClassifierPredictor.of` accepts a torch classifier too. The torch functions of
:mod:`skinseg.classify.predict` run through it as well.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._checks import as_bool_mask, check_positive_int, check_rgb_image
from ..crops import crop_lesion
from ..errors import ConfigError, MaskShapeError
from ..inference import DEFAULT_BACKEND, DEFAULT_PRECISION, Backend, as_backend, load_backend, model_kind
from ..models.config import check_decision_weights, decide

__all__ = ["ClassifierPredictor", "prepare_crop", "normalize_crops", "member_proba"]

_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))  # axes of an (N, C, S, S) batch: identity, h, v, both


def prepare_crop(image: np.ndarray, mask: np.ndarray | None, config: Any) -> tuple[np.ndarray, bool]:
    """The uint8 crop a classifier with ``config`` sees, and whether the mask was empty.

    An empty or missing mask (nothing segmented) falls back to the whole image as
    the lesion box, so a prediction is still made; the flag reports it. With
    ``config.color_norm`` the whole image is colour-normalised first.
    """
    check_rgb_image(image)
    if config.color_norm:
        from ..preprocess.color import normalize_color

        image = normalize_color(image, method=config.color_norm)
    empty = mask is None
    if mask is not None:
        m = as_bool_mask(mask)
        if m.shape != image.shape[:2]:
            raise MaskShapeError(
                f"The mask is {m.shape[0]}x{m.shape[1]} (HxW) but the image is "
                f"{image.shape[0]}x{image.shape[1]}; they must match."
            )
        empty = not m.any()
    if config.crop_mode == "full":
        return crop_lesion(image, mode="full", size=config.input_size), empty
    if empty:
        m = np.ones(image.shape[:2], bool)
        return crop_lesion(image, m, mode=config.crop_mode, size=config.input_size, margin=0.0), True
    return crop_lesion(image, m, mode=config.crop_mode, size=config.input_size, margin=config.margin), False


def normalize_crops(crops: np.ndarray, config: Any) -> np.ndarray:
    """(N, S, S, C) uint8 crops -> normalised (N, C, S, S) float32 (the mask channel maps to [-1, 1])."""
    x = np.ascontiguousarray(crops).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    extra = x.shape[1] - 3
    mean = np.asarray(list(config.mean) + [0.5] * extra, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(list(config.std) + [0.5] * extra, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std)


def member_proba(backend: Backend, crops: np.ndarray, *, tta: bool = False, batch_size: int = 16) -> np.ndarray:
    """(N, K) float32 softmax probabilities of one classifier for crops cut by :func:`prepare_crop` for it.

    With ``tta`` each crop's four flips run in one backend call and their probabilities are averaged.
    """
    flips = _FLIPS if tta else _FLIPS[:1]
    out = []
    for start in range(0, len(crops), batch_size):
        x = normalize_crops(crops[start : start + batch_size], backend.config)
        n = len(x)
        if len(flips) > 1:
            x = np.ascontiguousarray(np.concatenate([x] + [np.flip(x, axes) for axes in flips[1:]]))
        p = backend.run(x)
        out.append(np.mean([p[k * n : (k + 1) * n] for k in range(len(flips))], axis=0) if len(flips) > 1 else p)
    return np.concatenate(out).astype(np.float32, copy=False)


class ClassifierPredictor:
    """Class probabilities from images and their lesion masks, with any backend: the classifier's inference core.

    Parameters
    ----------
    members : sequence of Backend
        One backend per member of the ensemble (a single classifier: one), all with the same
        classes (:class:`~skinseg.inference.OnnxBackend` or :class:`~skinseg.inference.TorchBackend`
        of a classifier).
    temperature : float, default 1
        The ensemble's temperature, applied to the mean probabilities
        (:func:`skinseg.metrics.calibration.apply_temperature`).
    decision_weights : sequence of float, optional
        The ensemble's decision rule: the predicted class is ``argmax(p * w)``
        (:func:`skinseg.models.config.decide`); the probabilities are not changed.
    tta : bool, default False
        Average each member's probabilities over the four flips of its crop.
    fingerprint : str, optional
        The model's :func:`~skinseg.models.model_fingerprint` (what a run journal records);
        default: the single member's.
    source : str or path, optional
        The checkpoint it was loaded from (for :meth:`torch_model`, e.g. Grad-CAM).
    batch_size : int, default 16
        Crops per backend call.

    Examples
    --------
    >>> import numpy as np
    >>> from skinseg.classify import ClassifierPredictor, create_classifier
    >>> from skinseg.testing import synthetic_lesion
    >>> image, mask = synthetic_lesion((60, 80), rng=0)
    >>> classifier = ClassifierPredictor.of(create_classifier(pretrained=False, input_size=64))
    >>> p = classifier.predict_proba(image, mask)
    >>> p.shape, bool(np.isclose(p.sum(), 1.0))
    ((3,), True)
    """

    def __init__(self, members: Sequence[Any], *, temperature: float = 1.0, tta: bool = False,
                 fingerprint: str | None = None, source: str | os.PathLike | None = None,
                 batch_size: int = 16, decision_weights: Sequence[float] | None = None,
                 metadata_model: Any = None) -> None:
        self.members = [as_backend(m) for m in members]
        if not self.members:
            raise ConfigError("A ClassifierPredictor needs at least one member.")
        kinds = {model_kind(m.config) for m in self.members}
        if kinds != {"classifier"}:
            raise ConfigError(f"ClassifierPredictor members must be classifiers; got {sorted(map(str, kinds))}.")
        if len({m.config.classes for m in self.members}) != 1:
            raise ConfigError("The members of a ClassifierPredictor must share their classes (codes, names, order).")
        if len(self.members) > 1 and fingerprint is None:
            raise ConfigError("Pass the ensemble's `fingerprint` (checkpoint_fingerprint of its folder).")
        if not isinstance(tta, bool | np.bool_):
            raise ConfigError(f"`tta` must be True or False; got {tta!r}.")
        self.temperature = float(temperature)
        self.decision_weights = check_decision_weights(decision_weights, len(self.members[0].config.class_names))
        self.tta = bool(tta)
        if metadata_model is not None and tuple(metadata_model.class_names) != tuple(self.class_names):
            raise ConfigError(f"The metadata model's classes {list(metadata_model.class_names)} are not the "
                              f"classifier's {list(self.class_names)}.")
        self.metadata_model = metadata_model
        self.fingerprint = fingerprint if fingerprint is not None else self.members[0].fingerprint
        self.source = os.fspath(source) if source is not None else None
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self._torch: Any = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path_or_name: str | os.PathLike = "default", *, backend: str = DEFAULT_BACKEND, device: str = "cpu",
             precision: str = DEFAULT_PRECISION, threads: int | None = None, cache_dir: Any = None,
             tta: bool | None = None) -> ClassifierPredictor:
        """A ClassifierPredictor for a classifier checkpoint folder (single or ensemble) or bundled name.

        ``tta`` None: the ensemble's stored default (``"tta"`` in its ensemble.json; a single
        checkpoint: False).

        Each member gets :func:`~skinseg.inference.load_backend` (``kind="classifier"``) with the
        loaders' defaults: ONNX Runtime where it is installed (the member's ``model.onnx``, an
        export cached in ``cache_dir`` by fingerprint, or one made when first run and checked
        against torch; written to ``cache_dir`` when given), its ``model-int8.onnx`` only where
        the checkpoint ships one made from its weights (a gated export), else fp32.
        Without torch when every export is at hand.
        """
        from ..models.checkpoint import (
            ENSEMBLE_FILE,
            checkpoint_fingerprint,
            ensemble_metadata_model,
            ensemble_tta,
            read_ensemble,
        )

        folder, members, payload = read_ensemble(path_or_name, "classifier")
        if tta is None:
            tta = ensemble_tta(payload, folder / ENSEMBLE_FILE)
        try:
            temperature = float(payload.get("temperature", 1.0))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Cannot read the temperature of '{folder}': {exc}.") from exc
        backends = [load_backend(m, kind="classifier", backend=backend, device=device, precision=precision,
                                 threads=threads, cache_dir=cache_dir) for m in members]
        return cls(backends, temperature=temperature, tta=tta, source=path_or_name,
                   fingerprint=checkpoint_fingerprint(folder, "classifier"),
                   decision_weights=payload.get("decision_weights"),
                   metadata_model=ensemble_metadata_model(payload, folder / ENSEMBLE_FILE))

    @classmethod
    def of(cls, model: Any, *, tta: bool | None = None, **load: Any) -> ClassifierPredictor:
        """``model`` as a ClassifierPredictor: itself (``tta`` replaces its own), a checkpoint folder or bundled
        name (:meth:`load`), or a torch :class:`~skinseg.models.Classifier` / ``ClassifierEnsemble``.

        ``tta`` None keeps the model's own default (a ``ClassifierEnsemble``'s or an ensemble.json's
        ``tta``; False for a single classifier)."""
        if isinstance(model, ClassifierPredictor):
            if tta is None or bool(tta) == model.tta:
                return model
            return cls(model.members, temperature=model.temperature, tta=bool(tta), fingerprint=model.fingerprint,
                       source=model.source, batch_size=model.batch_size, decision_weights=model.decision_weights,
                       metadata_model=model.metadata_model)
        if isinstance(model, str | os.PathLike):
            return cls.load(model, tta=None if tta is None else bool(tta), **load)
        members = getattr(model, "members", None)
        if not isinstance(members, list) or not all(model_kind(getattr(m, "config", None)) == "classifier"
                                                    for m in members):
            raise ConfigError(
                "`model` must be a skinseg Classifier or ClassifierEnsemble (load_classifier / create_classifier), a "
                f"ClassifierPredictor, or a checkpoint folder or bundled name; got {type(model).__name__}."
            )
        from ..models.checkpoint import model_fingerprint

        if tta is None:
            tta = getattr(model, "tta", False)
        made = cls(members, temperature=float(getattr(model, "temperature", 1.0)), tta=bool(tta),
                   fingerprint=model_fingerprint(model), decision_weights=getattr(model, "decision_weights", None),
                   metadata_model=getattr(model, "metadata_model", None))
        made._torch = model
        return made

    # ------------------------------------------------------------------ what it is

    @property
    def config(self) -> Any:
        """The first member's :class:`~skinseg.models.ClassifierConfig` (the classes are every member's)."""
        return self.members[0].config

    @property
    def classes(self) -> tuple[Any, ...]:
        """One :class:`~skinseg.models.config.ClassInfo` per output: code, full name, malignant, melanoma flag."""
        return self.config.classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def settings(self) -> dict[str, Any]:
        """What determines the probabilities (for run journals): model, backend, precision, TTA."""
        return {"model": self.fingerprint, "backend": self.members[0].name,
                "precision": "+".join(sorted({m.precision for m in self.members})), "tta": self.tta}

    def torch_model(self, device: str = "cpu") -> Any:
        """The torch classifier (for Grad-CAM, which needs gradients): the one it was made from, or loaded from
        its checkpoint."""
        if self._torch is None:
            if self.source is None:
                raise ConfigError("This ClassifierPredictor was not loaded from a checkpoint; build it with "
                                  "ClassifierPredictor.of(torch_model) for Grad-CAM.")
            from ..models.checkpoint import load_classifier

            self._torch = load_classifier(self.source, device=device)
        return self._torch

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.source is not None:  # loaded again from its checkpoint where needed
            state["_torch"] = None
        return state

    def __repr__(self) -> str:
        return (f"ClassifierPredictor({len(self.members)} member(s), {self.members[0].name}, "
                f"classes={list(self.class_names)}, tta={self.tta})")

    # ------------------------------------------------------------------ prediction

    def predict_proba_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None,
                            metadata: Sequence[Any] | None = None) -> np.ndarray:
        """Class probabilities (N, K) for lists of images and their lesion masks (None: no mask).

        ``metadata`` (optional): one mapping per image with its patient's ``age``, ``sex`` and body
        ``site`` (or None), fused in by the classifier's metadata model
        (:class:`~skinseg.models.metadata.MetadataModel`); only for a classifier that has one.
        """
        if isinstance(images, np.ndarray):
            raise ConfigError("`images` must be a list of (H, W, 3) arrays; for one image use predict_proba().")
        imgs = list(images)
        msks: list[Any] = [None] * len(imgs) if masks is None else list(masks)
        if len(msks) != len(imgs):
            raise ConfigError(f"{len(imgs)} images but {len(msks)} masks were given; pass one mask (or None) per "
                              "image.")
        if metadata is not None:
            if self.metadata_model is None:
                raise ConfigError("This classifier has no metadata model: it cannot use age, sex or body site. Leave "
                                  "`metadata` out, or use a classifier that lists a metadata input (`skinseg models`).")
            metadata = [self.metadata_model.features(m) for m in metadata]  # bad values refused before any run
            if len(metadata) != len(imgs):
                raise ConfigError(f"{len(imgs)} images but {len(metadata)} metadata entries were given; pass one "
                                  "(or None) per image.")
        if not imgs:
            return np.zeros((0, len(self.class_names)), np.float32)
        probs = []
        for member in self.members:
            crops = np.stack([prepare_crop(im, m, member.config)[0] for im, m in zip(imgs, msks, strict=True)])
            probs.append(member_proba(member, crops, tta=self.tta, batch_size=self.batch_size))
        p = np.mean(probs, axis=0)
        if self.temperature != 1.0:
            from ..metrics.calibration import apply_temperature

            p = apply_temperature(p, self.temperature).astype(np.float32)
        if metadata is not None:
            p = self.metadata_model.fuse(p, metadata).astype(np.float32)  # type: ignore[union-attr]
        return p

    def predict_proba(self, image: np.ndarray, mask: np.ndarray | None = None, metadata: Any = None) -> np.ndarray:
        """Class probabilities (K,) of one image and its lesion mask (None: no mask); they sum to 1.

        ``metadata``: the patient's ``{"age": ..., "sex": ..., "site": ...}`` (see
        :meth:`predict_proba_batch`), or None.
        """
        check_rgb_image(image, "image")
        return self.predict_proba_batch([image], [mask], None if metadata is None else [metadata])[0]

    def decide(self, probs: np.ndarray) -> Any:
        """The predicted class index of (K,) or (N, K) probabilities (with the ensemble's decision weights)."""
        return decide(probs, self.decision_weights)

    def predict_label(self, image: np.ndarray, mask: np.ndarray | None = None, metadata: Any = None) -> str:
        """The predicted class code of one image and its lesion mask (and optional metadata)."""
        return str(self.class_names[int(self.decide(self.predict_proba(image, mask, metadata)))])
