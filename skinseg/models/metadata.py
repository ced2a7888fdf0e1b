"""Optional patient metadata (age, sex, body site) for a classifier that stores a metadata model.

A :class:`MetadataModel` is a multinomial logistic model ``p(class | age, sex, site)`` fitted on
training metadata (the HAM10000 ``train`` split for ``classifier-ham10000-7class``). It is
combined with the image classifier's probabilities by late fusion:

    p_fused(c) ∝ p_image(c) · (p_meta(c) / prior(c)) ** alpha

where ``prior`` is the class frequency of the data the metadata model was fitted on and
``alpha`` (chosen on validation data) tempers the metadata's evidence. An image without
metadata (``None`` or every field missing) keeps its image probabilities unchanged; a
missing field is encoded as all zeros, as it was in training (HAM10000 has unknown ages,
sexes and sites).

Fields of one image's metadata (a mapping; other keys are ignored):

- ``age``: years, a number in [0, 120], or empty / None;
- ``sex``: ``male`` or ``female`` (``unknown`` or empty: missing);
- ``site``: one of :attr:`MetadataModel.sites` (HAM10000's ``localization`` vocabulary, also
  accepted under the key ``localization``; ``unknown`` or empty: missing).

A value outside these is refused with an error naming the field and the allowed values:
a misspelt site must not silently count as "missing".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["MetadataModel", "METADATA_FIELDS", "AGE_EDGES", "fit_metadata_model"]

METADATA_FIELDS = ("age", "sex", "site")
_MISSING = ("", "unknown", "nan", "none", "na", "n/a")
_SEXES = ("male", "female")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip().lower()


class MetadataModel:
    """``p(class | age, sex, site)`` and its late fusion with image probabilities (see the module docstring).

    Parameters
    ----------
    class_names : sequence of str
        The classifier's class codes, in its output order.
    age_edges : sequence of float
        Left edges of the age bins (one-hot; an age below the first edge is refused).
    sites : sequence of str
        The body-site vocabulary (one-hot).
    coef : (K, F) array
        Logistic coefficients over the features: age bins, ``male``, ``female``, sites.
    intercept : (K,) array
    prior : (K,) array
        Class frequencies of the data the model was fitted on.
    alpha : float
        Weight of the metadata's evidence (0: the image alone).
    """

    def __init__(self, class_names: Sequence[str], age_edges: Sequence[float], sites: Sequence[str], coef: Any,
                 intercept: Any, prior: Any, alpha: float) -> None:
        self.class_names = tuple(str(c) for c in class_names)
        self.age_edges = tuple(float(a) for a in age_edges)
        self.sites = tuple(str(s).lower() for s in sites)
        k, f = len(self.class_names), len(self.age_edges) + len(_SEXES) + len(self.sites)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.prior = np.asarray(prior, np.float64)
        if self.coef.shape != (k, f) or self.intercept.shape != (k,) or self.prior.shape != (k,):
            raise ConfigError(f"A metadata model for {k} classes and {f} features needs coef ({k}, {f}), intercept "
                              f"({k},) and prior ({k},); got {self.coef.shape}, {self.intercept.shape}, "
                              f"{self.prior.shape}.")
        if list(self.age_edges) != sorted(set(self.age_edges)):
            raise ConfigError(f"`age_edges` must increase; got {list(self.age_edges)}.")
        if not (np.all(np.isfinite(self.coef)) and np.all(np.isfinite(self.intercept))
                and np.all(self.prior > 0) and np.all(np.isfinite(self.prior))):
            raise ConfigError("A metadata model's coefficients must be finite and its prior positive.")
        if not (isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0 <= alpha <= 10):
            raise ConfigError(f"`alpha` must be a number in [0, 10]; got {alpha!r}.")
        self.prior = self.prior / self.prior.sum()
        self.alpha = float(alpha)

    # ------------------------------------------------------------------ features

    def features(self, metadata: Mapping[str, Any] | None) -> np.ndarray | None:
        """The (F,) feature vector of one image's metadata, or None when it carries none (no fusion)."""
        if metadata is None:
            return None
        if not isinstance(metadata, Mapping):
            raise ConfigError(f"Metadata must be a mapping with keys {METADATA_FIELDS}; got {type(metadata).__name__}.")
        x = np.zeros(len(self.age_edges) + len(_SEXES) + len(self.sites))
        given = False
        age = metadata.get("age")
        if _text(age) not in _MISSING:
            try:
                years = float(age)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ConfigError(f"Metadata 'age' must be a number of years; got {age!r}.") from None
            if not (math.isfinite(years) and 0 <= years <= 120):
                raise ConfigError(f"Metadata 'age' must be between 0 and 120 years; got {age!r}.")
            if years < self.age_edges[0]:
                raise ConfigError(f"Metadata 'age' {age!r} is below the model's first age bin ({self.age_edges[0]:g}).")
            x[int(np.searchsorted(self.age_edges, years, side="right")) - 1] = 1.0
            given = True
        sex = _text(metadata.get("sex"))
        if sex not in _MISSING:
            if sex not in _SEXES:
                raise ConfigError(f"Metadata 'sex' must be one of {list(_SEXES)} (or empty / 'unknown'); got "
                                  f"{metadata.get('sex')!r}.")
            x[len(self.age_edges) + _SEXES.index(sex)] = 1.0
            given = True
        site_value = metadata.get("site", metadata.get("localization"))
        site = _text(site_value)
        if site not in _MISSING:
            if site not in self.sites:
                raise ConfigError(f"Metadata 'site' must be one of {list(self.sites)} (or empty / 'unknown'); got "
                                  f"{site_value!r}.")
            x[len(self.age_edges) + len(_SEXES) + self.sites.index(site)] = 1.0
            given = True
        return x if given else None

    def proba(self, features: np.ndarray) -> np.ndarray:
        """``p(class | metadata)`` (N, K) of (N, F) features (softmax of the linear model)."""
        z = np.asarray(features, np.float64) @ self.coef.T + self.intercept
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def fuse(self, probs: np.ndarray, metadata: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """(N, K) image probabilities fused with each image's metadata; rows without metadata are unchanged.

        ``metadata`` may also be the output of :meth:`features` per image (arrays or None): a caller that
        checked the values before running the model does not encode them twice.
        """
        p = np.asarray(probs)
        if p.ndim != 2 or p.shape[1] != len(self.class_names):
            raise ConfigError(f"`probs` must be (N, {len(self.class_names)}); got {p.shape}.")
        feats = [m if isinstance(m, np.ndarray) else self.features(m) for m in metadata]
        if len(feats) != len(p):
            raise ConfigError(f"{len(p)} images but {len(feats)} metadata entries; pass one (or None) per image.")
        out = p.astype(np.float64, copy=True)
        rows = [i for i, x in enumerate(feats) if x is not None]
        if rows and self.alpha:
            evidence = (self.proba(np.stack([feats[i] for i in rows])) / self.prior) ** self.alpha
            fused = out[rows] * evidence
            out[rows] = fused / fused.sum(axis=1, keepdims=True)
        return out.astype(p.dtype, copy=False)

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names), "age_edges": list(self.age_edges), "sites": list(self.sites),
                "coef": self.coef.tolist(), "intercept": self.intercept.tolist(), "prior": self.prior.tolist(),
                "alpha": self.alpha}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetadataModel:
        try:
            return cls(d["class_names"], d["age_edges"], d["sites"], d["coef"], d["intercept"], d["prior"],
                       d["alpha"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"Cannot read a metadata model: {type(exc).__name__}: {exc}.") from exc

    def __repr__(self) -> str:
        return (f"MetadataModel({len(self.class_names)} classes, {len(self.age_edges)} age bins, "
                f"{len(self.sites)} sites, alpha={self.alpha:g})")


AGE_EDGES = (0, 20, 30, 40, 50, 60, 70, 80)
"""Default age bins (years): under 20, then decades, 80 and over."""


def fit_metadata_model(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], class_names: Sequence[str], *,
                       alpha: float, age_edges: Sequence[float] = AGE_EDGES, sites: Sequence[str] | None = None,
                       l2: float = 1.0) -> MetadataModel:
    """Fit ``p(class | age, sex, site)`` on training metadata (scikit-learn's multinomial logistic regression).

    Parameters
    ----------
    rows : sequence of mappings
        One per training image: ``age``, ``sex``, ``site`` (or ``localization``), as
        :meth:`MetadataModel.features` reads them (missing values as zeros).
    labels : sequence of str
        Each image's class code.
    class_names : sequence of str
        The classifier's classes, in its output order (every one must occur in ``labels``).
    alpha : float
        The weight of the metadata's evidence in the fusion (chosen on validation data).
    age_edges, sites
        The age bins, and the site vocabulary (default: every known site in ``rows``).
    l2 : float
        Inverse L2 strength ``C`` of the logistic regression.
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the [test] and [train] extras
        raise ConfigError("Fitting a metadata model needs scikit-learn: pip install scikit-learn.") from exc
    names = [str(c) for c in class_names]
    missing = sorted(set(names) - set(labels))
    if missing or not set(labels) <= set(names):
        raise ConfigError(f"Every class needs training images and every label a class: missing {missing}, unknown "
                          f"{sorted(set(labels) - set(names))}.")
    if sites is None:
        sites = sorted({_text(r.get("site", r.get("localization"))) for r in rows} - set(_MISSING))
    k = len(names)
    blank = MetadataModel(names, age_edges, sites, np.zeros((k, len(age_edges) + 2 + len(sites))), np.zeros(k),
                          np.ones(k), alpha)
    feats = [blank.features(r) for r in rows]
    x = np.array([f if f is not None else np.zeros(blank.coef.shape[1]) for f in feats])
    y = np.array([names.index(str(c)) for c in labels])
    lr = LogisticRegression(C=l2, max_iter=2000).fit(x, y)
    coef, intercept = lr.coef_, lr.intercept_
    if k == 2:  # scikit-learn's binary model: p(1) = sigmoid(w.x + b) = softmax([0, w.x + b])[1]
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    prior = np.bincount(y, minlength=k) / len(y)
    return MetadataModel(names, age_edges, sites, coef, intercept, prior, alpha)
