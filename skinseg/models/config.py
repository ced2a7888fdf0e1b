"""Model configurations (torch-free): what rebuilds a segmenter or a classifier and how to feed it.

Frozen dataclasses that validate themselves in ``__post_init__`` and round-trip through
JSON (``to_dict`` / ``from_dict``); checkpoints store them in ``config.json`` and ONNX
exports in their metadata. Importing this module does not import torch, so the ONNX
inference path can read a model's settings without it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .._checks import did_you_mean
from .._types import CROP_MODES
from ..errors import ConfigError
from .registry import check_segmenter_name

__all__ = ["SegmenterConfig", "ClassifierConfig", "ClassInfo", "KNOWN_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD",
           "CLASS_NAMES", "check_decision_weights", "decide", "prior_decision_weights"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet RGB mean (of values scaled to [0, 1]): the input normalisation of every bundled model."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB standard deviation (of values scaled to [0, 1])."""

CLASS_NAMES = ("melanoma", "nevus", "seborrheic_keratosis")
"""The ISIC 2017 Part 3 diagnoses, in the order of the bundled classifier's outputs."""


class ClassInfo(NamedTuple):
    """What a classifier's output class is: part of the model's metadata (:attr:`ClassifierConfig.classes`).

    ``code`` is the class name the model outputs (``p_<code>`` columns, ``predicted_label``);
    ``name`` its full name; ``malignant`` whether the diagnosis is malignant (None: not known);
    ``melanoma`` marks the melanoma class, whose probability every run also reports as
    ``p_melanoma`` whatever its code (``mel`` in the HAM10000 vocabulary).
    """

    code: str
    name: str
    malignant: bool | None
    melanoma: bool = False


KNOWN_CLASSES: dict[str, ClassInfo] = {
    info.code: info
    for info in (
        # ISIC 2017 Part 3 (the bundled three-class classifier)
        ClassInfo("melanoma", "melanoma", True, True),
        ClassInfo("nevus", "melanocytic nevus", False),
        ClassInfo("seborrheic_keratosis", "seborrheic keratosis", False),
        # HAM10000 / ISIC 2018 Task 3
        ClassInfo("akiec", "actinic keratosis / intraepithelial carcinoma (Bowen's disease)", True),
        ClassInfo("bcc", "basal cell carcinoma", True),
        ClassInfo("bkl", "benign keratosis-like lesion", False),
        ClassInfo("df", "dermatofibroma", False),
        ClassInfo("mel", "melanoma", True, True),
        ClassInfo("nv", "melanocytic nevus", False),
        ClassInfo("vasc", "vascular lesion", False),
    )
}
"""The class metadata a classifier config without ``class_info`` gets, by code (the ISIC 2017 and HAM10000
vocabularies); any other code is its own name, with malignancy unknown."""


def _class_info(entries: Any, class_names: tuple[str, ...]) -> tuple[ClassInfo, ...]:
    """``class_info`` checked against ``class_names``: one entry per class, in their order."""
    try:
        infos = tuple(ClassInfo(**e) if isinstance(e, dict) else ClassInfo(*e) for e in entries)
    except TypeError as exc:
        raise ConfigError(f"`class_info` entries must be {{'code', 'name', 'malignant'[, 'melanoma']}}; {exc}.") from None
    if tuple(i.code for i in infos) != class_names:
        raise ConfigError(f"`class_info` must describe the classes {list(class_names)} in that order; got codes "
                          f"{[i.code for i in infos]}.")
    for i in infos:
        if not isinstance(i.name, str) or i.malignant not in (True, False, None) or i.melanoma not in (True, False):
            raise ConfigError(f"`class_info` entry {i.code!r}: name must be a string, malignant True/False/None and "
                              f"melanoma True/False; got {tuple(i)!r}.")
    if sum(i.melanoma for i in infos) > 1:
        raise ConfigError("`class_info` may mark at most one class as the melanoma class.")
    return infos


@dataclass(frozen=True)
class SegmenterConfig:
    """Everything needed to rebuild a segmenter and feed it images.

    Parameters
    ----------
    arch : str
        Registered architecture name (see :func:`list_segmenters`).
    encoder_name : str
        smp encoder name, e.g. ``"tu-efficientnet_lite0"`` or ``"resnet34"``.
    encoder_depth : int
        Number of encoder stages used (3 to 5).
    decoder_channels : list of int or None
        U-Net decoder widths (None: smp's default). Ignored by DeepLabv3+.
    input_size : int
        Images are resized so their longest side is ``input_size`` pixels before
        the forward pass (and padded to a multiple of 32); probabilities are
        resized back to the original size.
    mean, std : tuple of 3 floats
        Normalisation applied to RGB values scaled to [0, 1].
    threshold : float
        Decision threshold on the lesion probability.
    preprocess : dict
        A :class:`skinseg.preprocess.PreprocessConfig` as a dict (empty: none).
    tta : bool
        Whether inference averages over the 4 flips by default (when
        ``predict_proba`` / ``segment`` / ``segment_folder`` get ``tta=None``).
        Chosen on validation data for the bundled model.
    """

    arch: str = "unet"
    encoder_name: str = "tu-efficientnet_lite0"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] | None = None
    input_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    threshold: float = 0.5
    preprocess: dict = field(default_factory=dict)
    tta: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", str(self.arch).lower())
        check_segmenter_name(self.arch)  # raises UnknownNameError listing valid names
        if self.decoder_channels is not None:
            object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"`mean` and `std` must be 3 numbers each, std > 0; got {self.mean}, {self.std}.")
        if not 3 <= int(self.encoder_depth) <= 5:
            raise ConfigError(f"`encoder_depth` must be an integer in [3, 5]; got {self.encoder_depth!r}.")
        if int(self.input_size) < 32 or int(self.input_size) % 32:
            raise ConfigError(f"`input_size` must be a multiple of 32, >= 32; got {self.input_size!r}.")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"`threshold` must be in (0, 1); got {self.threshold!r}.")
        if not isinstance(self.tta, bool):
            raise ConfigError(f"`tta` must be True or False; got {self.tta!r}.")
        if not isinstance(self.preprocess, dict):
            raise ConfigError(f"`preprocess` must be a dict (PreprocessConfig.to_dict()); got {self.preprocess!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        for k in ("decoder_channels", "mean", "std"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmenterConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"Unknown SegmenterConfig keys {unknown}; valid keys: {sorted(names)}.")
        return cls(**d)

    @property
    def input_box(self) -> tuple[int, int]:
        """(height, width) of the landscape box images are scaled into: (3/4 ``input_size`` rounded to 32, ``input_size``)."""
        from .._geometry import box_hw

        return box_hw(self.input_size)

    def replace(self, **changes: Any) -> SegmenterConfig:
        """Return a copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier and prepare its input (stored in config.json).

    ``class_info`` (optional) describes each output class, in the order of ``class_names``:
    ``{"code", "name", "malignant"[, "melanoma"]}`` (see :class:`ClassInfo`); without it the
    classes get :data:`KNOWN_CLASSES`' entries. Runners read the classes from here
    (:attr:`classes`, :attr:`melanoma_class`), never from a list of their own.
    """

    backbone: str = "efficientnet_lite0"
    class_names: tuple[str, ...] = CLASS_NAMES
    input_size: int = 224
    crop_mode: str = "dilated_bbox"
    margin: float = 0.25
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    drop_rate: float = 0.2
    color_norm: str | None = None  # colour constancy of the whole image before cropping ("shades_of_gray")
    class_info: tuple[ClassInfo, ...] | None = None

    def __post_init__(self) -> None:
        if self.color_norm is not None:
            from ..preprocess.color import COLOR_METHODS

            if self.color_norm not in COLOR_METHODS:
                raise ConfigError(f"`color_norm` must be None or one of {', '.join(COLOR_METHODS)}; "
                                  f"got {self.color_norm!r}.")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"`class_names` must hold at least 2 distinct names; got {self.class_names!r}.")
        if self.crop_mode not in CROP_MODES:
            raise ConfigError(
                f"Unknown crop mode {self.crop_mode!r}{did_you_mean(self.crop_mode, CROP_MODES)}. "
                f"Valid: {', '.join(CROP_MODES)}."
            )
        if not isinstance(self.input_size, int) or self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"`input_size` must be a multiple of 32, >= 32; got {self.input_size!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("`mean` and `std` must hold 3 values each (RGB), std > 0.")
        if self.class_info is not None:
            object.__setattr__(self, "class_info", _class_info(self.class_info, self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        """One :class:`ClassInfo` per output class: ``class_info``, else :data:`KNOWN_CLASSES`' entries."""
        if self.class_info is not None:
            return self.class_info
        return tuple(KNOWN_CLASSES.get(code, ClassInfo(code, code, None)) for code in self.class_names)

    @property
    def melanoma_class(self) -> str | None:
        """The code of the melanoma class (``p_melanoma`` reports its probability), or None."""
        return next((c.code for c in self.classes if c.melanoma), None)

    @property
    def in_chans(self) -> int:
        return 4 if self.crop_mode == "mask_channel" else 3

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; ``class_info`` only when given (so configs without it, and their
        fingerprints, stay as they were)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        info = d.pop("class_info")
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        if info is not None:
            out["class_info"] = [i._asdict() for i in info]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"Unknown classifier config keys {sorted(unknown)}; valid keys: {sorted(known)}."
            )
        return cls(**d)


def check_decision_weights(weights: Any, num_classes: int) -> tuple[float, ...] | None:
    """A classifier's decision weights checked (None, or one finite number > 0 per class); all ones -> None."""
    if weights is None:
        return None
    try:
        w = tuple(float(v) for v in weights)
    except (TypeError, ValueError):
        raise ConfigError(f"`decision_weights` must be one number per class; got {weights!r}.") from None
    if len(w) != num_classes or not all(math.isfinite(v) and v > 0 for v in w):
        raise ConfigError(f"`decision_weights` must be {num_classes} finite numbers > 0 (one per class); got {w!r}.")
    return None if all(v == 1.0 for v in w) else w


def prior_decision_weights(counts: Mapping[str, int], class_names: Sequence[str], tau: float) -> list[float]:
    """Logit-adjustment decision weights ``(training prior of each class) ** -tau`` (``counts``: training images per
    class, e.g. a classifier's ``metadata["training_data"]["counts"]``); ``tau`` 0 gives plain argmax.

    >>> [round(w, 2) for w in prior_decision_weights({"a": 3, "b": 1}, ["a", "b"], 1.0)]
    [1.33, 4.0]
    """
    missing = [c for c in class_names if not counts.get(c)]
    if missing:
        raise ConfigError(f"No training count for classes {missing}: cannot weigh them by their prior.")
    total = sum(counts[c] for c in class_names)
    return [(counts[c] / total) ** -float(tau) for c in class_names]


def decide(probs: Any, weights: Sequence[float] | None = None) -> Any:
    """The predicted class index of (K,) or (N, K) probabilities: ``argmax(p * w)`` (plain argmax without weights).

    >>> int(decide([0.6, 0.4])), int(decide([0.6, 0.4], (1.0, 2.0)))
    (0, 1)
    """
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    if weights is not None:
        p = p * np.asarray(weights, dtype=np.float64)
    return p.argmax(axis=-1)
