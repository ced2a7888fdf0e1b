"""Per-image segmentation quality: an estimate of the IoU an expert's mask would have with ours.

A folder of 10,000 masks cannot all be checked by eye; this module says which to check.
:func:`quality_features` measures a handful of signals of one prediction, from the
probability map, the final mask and the image (numpy only, on a copy scaled to at most
:data:`FEATURE_SIDE` px, so the cost does not grow with the image):

- ``soft_dice``: Dice between the probability map and the mask (a confident map agrees
  with its own mask);
- ``mean_prob_in``: mean probability inside the mask;
- ``ring_prob``: mean probability in a ring just outside the mask (lesion the mask left out);
- ``fuzzy``: pixels of intermediate probability (0.1 - 0.9) per mask pixel (a soft border);
- ``outside_mass``: the share of thresholded pixels outside the kept mask (other blobs);
- ``area``: mask area / image area; ``border``: share of the image frame the mask covers
  (a lesion cut by the border); ``compactness``: 4 pi area / perimeter^2;
- ``contrast``: luminance step across the mask border (inside vs the outer ring), in units
  of the ring's spread (a faint border is where annotators and models disagree);
- ``agreement`` (only with a second model): IoU of the mask with a second model's mask.

A :class:`QualityModel` turns the signals into one number in [0, 1]: a logistic model of
the IoU (fitted by :func:`fit_quality_model` on validation images, where the true IoU is
known) with a review threshold. Each signal may enter on a log scale first
(:data:`LOG_SCALE`: ``log(x + c)``, or ``log(1 - x + c)`` for signals that crowd near 1 such
as ``soft_dice``), which spreads out the differences among good masks that a linear model
of the raw signals cannot tell apart. An empty mask gets 0. The bundled segmenter ships its
fitted model (``quality.json`` beside its weights, with the record of how it was fitted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import expit

from ._checks import as_bool_mask, check_prob_map
from ._geometry import fit_size, resize_image
from .errors import ConfigError

__all__ = [
    "FEATURE_SIDE",
    "SELF_FEATURES",
    "SECOND_MODEL_FEATURES",
    "LOG_SCALE",
    "TRANSFORMS",
    "quality_features",
    "QualityModel",
    "fit_quality_model",
]

FEATURE_SIDE = 256
"""Long side (px) of the copy the signals are measured on."""

SELF_FEATURES = ("soft_dice", "mean_prob_in", "ring_prob", "fuzzy", "outside_mass", "area", "border",
                 "compactness", "contrast")
"""Signals of one model's prediction and the image (:func:`quality_features`)."""

SECOND_MODEL_FEATURES = ("agreement",)
"""Signals that need a second model's probability map."""

TRANSFORMS = ("identity", "log", "log1m")
"""How a signal enters a :class:`QualityModel`: as it is, ``log(x + c)``, or ``log(1 - x + c)``."""

LOG_SCALE: dict[str, tuple[str, float]] = {
    "soft_dice": ("log1m", 1e-4),
    "mean_prob_in": ("log1m", 1e-4),
    "ring_prob": ("log", 1e-3),
    "fuzzy": ("log", 1e-3),
    "outside_mass": ("log", 1e-3),
    "area": ("log", 1e-4),
    "border": ("log", 1e-3),
    "compactness": ("identity", 0.0),
    "contrast": ("log", 0.05),
    "agreement": ("log1m", 1e-3),
}
"""The transform (and its offset ``c``) of each signal on a log scale, as the bundled estimates use them."""

_EPS = 1e-6


def _small(prob: np.ndarray, mask: np.ndarray, image: np.ndarray | None) -> tuple[Any, Any, Any]:
    h, w = mask.shape
    hw = fit_size(h, w, FEATURE_SIDE) if max(h, w) > FEATURE_SIDE else (h, w)
    if hw == (h, w):
        return prob.astype(np.float32), mask, image
    import cv2

    p = cv2.resize(prob.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    im = resize_image(image, hw) if image is not None else None
    return p, m, im


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def quality_features(prob: np.ndarray, mask: np.ndarray, image: np.ndarray | None = None, *,
                     threshold: float = 0.5, second_prob: np.ndarray | None = None) -> dict[str, float]:
    """The quality signals of one prediction (see the module docstring), as ``{name: float}``.

    Parameters
    ----------
    prob : (H, W) float in [0, 1]
        The model's lesion probability map (after TTA), at the image's size.
    mask : (H, W) bool
        The final mask made from it (threshold and clean-up).
    image : (H, W, 3) uint8 RGB, optional
        The image; without it ``contrast`` is NaN.
    threshold : float
        The decision threshold that made ``mask``.
    second_prob : (H, W) float in [0, 1], optional
        A second model's probability map: adds ``agreement``.

    An empty mask gives NaN for the signals that need a lesion.
    """
    prob = check_prob_map(prob, "prob")
    m = as_bool_mask(mask)
    if m.shape != prob.shape:
        raise ConfigError(f"`mask` {m.shape} and `prob` {prob.shape} must have the same (H, W).")
    if image is not None and image.shape[:2] != m.shape:
        raise ConfigError(f"`image` {image.shape[:2]} and `mask` {m.shape} must have the same (H, W).")
    q = None
    if second_prob is not None:
        q = check_prob_map(second_prob, "second_prob")
        if q.shape != m.shape:
            raise ConfigError(f"`second_prob` {q.shape} and `mask` {m.shape} must have the same (H, W).")
        q = _small(q, m, None)[0]  # scaled as the mask is, before the mask itself is
    p, m, im = _small(prob, m, image)
    area = float(m.sum())
    out = dict.fromkeys(SELF_FEATURES, math.nan)
    out["area"] = area / m.size
    above = p >= threshold
    out["outside_mass"] = float((above & ~m).sum() / max(above.sum(), 1))
    if q is not None:
        other = q >= threshold
        union = float((other | m).sum())
        out["agreement"] = float((other & m).sum() / union) if union else 1.0
    if area == 0:
        return out
    out["soft_dice"] = float(2 * (p * m).sum() / (p.sum() + area + _EPS))
    out["mean_prob_in"] = float(p[m].mean())
    width = max(2, round(0.03 * max(m.shape)))
    ring = _ring(m, width)
    out["ring_prob"] = float(p[ring].mean()) if ring.any() else 0.0
    out["fuzzy"] = float(((p > 0.1) & (p < 0.9)).sum() / area)
    frame = np.concatenate([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]])
    out["border"] = float(frame.mean())
    perimeter = float((m & ~ndimage.binary_erosion(m)).sum())
    out["compactness"] = float(min(1.0, 4 * math.pi * area / max(perimeter, 1.0) ** 2))
    if im is not None and ring.any():
        lum = im.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        inner = m & ~ndimage.binary_erosion(m, iterations=width)
        spread = float(lum[ring].std()) + 1.0
        out["contrast"] = float(abs(lum[ring].mean() - lum[inner].mean()) / spread)
    return out


def _transformed(x: np.ndarray, transforms: Sequence[tuple[str, float]]) -> np.ndarray:
    """The columns of ``x`` through their transforms (none given: all as they are); NaN stays NaN."""
    if not transforms:
        return x
    out = x.copy()
    with np.errstate(invalid="ignore"):
        for j, (kind, c) in enumerate(transforms):
            if kind == "log":
                out[:, j] = np.log(np.maximum(x[:, j], 0.0) + c)
            elif kind == "log1m":
                out[:, j] = np.log(np.maximum(1.0 - x[:, j], 0.0) + c)
    return out


def _check_transforms(transforms: Sequence[Sequence[Any]], names: Sequence[str]) -> tuple[tuple[str, float], ...]:
    try:
        out = tuple((str(kind), float(c)) for kind, c in transforms)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Quality model transforms must be (kind, offset) pairs; got {transforms!r}.") from exc
    if out and len(out) != len(names):
        raise ConfigError(f"Quality model: {len(out)} transforms for {len(names)} signals; give one per signal.")
    for kind, c in out:
        if kind not in TRANSFORMS or not (math.isfinite(c) and (c > 0 or kind == "identity")):
            raise ConfigError(f"Quality model transform ({kind!r}, {c}) is not one of {TRANSFORMS} with an offset > 0.")
    return out


def _design(rows: Sequence[Mapping[str, float]], names: Sequence[str], center: np.ndarray | None = None,
            scale: np.ndarray | None = None, transforms: Sequence[tuple[str, float]] = (),
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array([[float(r.get(n, math.nan)) for n in names] for r in rows], np.float64).reshape(len(rows), len(names))
    x = _transformed(x, transforms)
    if center is None:
        center = np.nanmedian(x, axis=0) if len(x) else np.zeros(len(names))
        center = np.where(np.isfinite(center), center, 0.0)
    x = np.where(np.isfinite(x), x, center)  # a missing signal counts as typical
    if scale is None:
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
    return (x - center) / scale, center, scale


@dataclass(frozen=True)
class QualityModel:
    """A fitted quality estimate: a logistic model of the IoU on standardised signals.

    ``estimate = sigmoid(intercept + sum(coef * (t(x) - center) / scale))``, where ``t`` is
    each signal's transform (``transforms``: one ``(kind, offset)`` per signal, kinds
    :data:`TRANSFORMS`; empty: every signal as it is), with a missing (NaN) signal replaced
    by its ``center``; an empty mask is 0. ``review_below``: images whose estimate is below
    it are flagged for review. ``record`` says how it was fitted (segmenter fingerprint,
    data, cross-fitted scores).
    """

    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    review_below: float = 0.75
    record: dict = field(default_factory=dict)
    transforms: tuple[tuple[str, float], ...] = ()

    @property
    def needs_second_model(self) -> bool:
        return any(f in SECOND_MODEL_FEATURES for f in self.features)

    def estimate(self, features: Mapping[str, float]) -> float:
        """The estimated IoU in [0, 1] of one image's signals (:func:`quality_features`)."""
        return float(self.estimate_many([features])[0])

    def estimate_many(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        x, _, _ = _design(rows, self.features, np.asarray(self.center), np.asarray(self.scale), self.transforms)
        q = expit(self.intercept + x @ np.asarray(self.coef))
        empty = np.array([float(r.get("area", 1.0)) == 0 for r in rows], bool)
        return np.where(empty, 0.0, q)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": "skinseg-quality", "features": list(self.features), "center": list(self.center),
             "scale": list(self.scale), "coef": list(self.coef), "intercept": self.intercept,
             "review_below": self.review_below, "record": self.record}
        if self.transforms:
            d["transforms"] = [list(t) for t in self.transforms]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QualityModel:
        if not isinstance(d, Mapping) or d.get("format") != "skinseg-quality":
            raise ConfigError("Not a skinseg quality model (expected format 'skinseg-quality').")
        names = tuple(str(n) for n in d["features"])
        known = set(SELF_FEATURES) | set(SECOND_MODEL_FEATURES)
        if not names or set(names) - known:
            raise ConfigError(f"Quality model signals {sorted(set(names) - known)} are unknown; known: {sorted(known)}.")
        arrays = [tuple(float(v) for v in d[k]) for k in ("center", "scale", "coef")]
        if any(len(a) != len(names) for a in arrays):
            raise ConfigError("Quality model: center, scale and coef need one value per signal.")
        return cls(names, *arrays, float(d["intercept"]), float(d.get("review_below", 0.75)),
                   dict(d.get("record") or {}), _check_transforms(d.get("transforms") or (), names))


def fit_quality_model(rows: Sequence[Mapping[str, float]], iou: Sequence[float], features: Sequence[str], *,
                      l2: float = 1.0, review_below: float = 0.75, record: Mapping[str, Any] | None = None,
                      transforms: Sequence[tuple[str, float]] | Mapping[str, tuple[str, float]] | None = None,
                      ) -> QualityModel:
    """Fit a :class:`QualityModel`: logistic regression of the true IoU (a fraction in [0, 1]) on ``features``.

    Minimises the binary cross-entropy between ``sigmoid(x . w + b)`` and the IoU plus
    ``l2 / 2 * |w|^2`` by Newton's method with step halving (a convex problem: the solution
    is unique). Images with an empty mask are left out (their estimate is 0 by definition).
    ``transforms``: one ``(kind, offset)`` per feature, or a mapping such as
    :data:`LOG_SCALE` (features it does not name enter as they are); None: all as they are.
    """
    if isinstance(transforms, Mapping):
        transforms = [transforms.get(f, ("identity", 0.0)) for f in features]
    transforms = _check_transforms(transforms or (), features)
    y_all = np.asarray(iou, np.float64)
    if len(rows) != len(y_all) or not len(rows):
        raise ConfigError(f"Need one IoU per row; got {len(rows)} rows and {len(y_all)} IoUs.")
    keep = [i for i, r in enumerate(rows) if float(r.get("area", 1.0)) > 0]
    rows = [rows[i] for i in keep]
    y = np.clip(y_all[keep], 0.0, 1.0)
    x, center, scale = _design(rows, features, transforms=transforms)
    n, k = x.shape
    a = np.hstack([np.ones((n, 1)), x])
    w = np.zeros(k + 1)
    w[0] = math.log((y.mean() + 1e-3) / (1 - y.mean() + 1e-3))
    reg = np.diag([0.0] + [l2] * k)

    def objective(v: np.ndarray) -> float:  # cross-entropy (logaddexp: no overflow) + penalty
        z = a @ v
        return float(np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)) + 0.5 * v @ reg @ v)

    current = objective(w)
    for _ in range(100):
        pr = expit(a @ w)
        grad = a.T @ (pr - y) + reg @ w
        hess = (a * (pr * (1 - pr))[:, None]).T @ a + reg + 1e-9 * np.eye(k + 1)
        step = np.linalg.solve(hess, grad)
        trial = objective(w - step)
        for _ in range(40):  # a full Newton step can overshoot from far away: halve it until the objective falls
            if trial <= current:
                break
            step = step / 2
            trial = objective(w - step)
        w -= step
        current = trial
        if np.abs(step).max() < 1e-10:
            break
    return QualityModel(tuple(features), tuple(center.tolist()), tuple(scale.tolist()), tuple(w[1:].tolist()),
                        float(w[0]), float(review_below), dict(record or {}), transforms)
