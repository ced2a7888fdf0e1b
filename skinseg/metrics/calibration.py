"""Calibration of class probabilities: reliability diagram, expected calibration error, temperature.

numpy/scipy only. ``probs`` are (N, K) class probabilities (rows sum to 1) and
``y_true`` the (N,) class indices, as in :mod:`skinseg.metrics.classification`.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_positive_int
from ..errors import ConfigError
from .classification import check_probs

__all__ = [
    "reliability_table",
    "expected_calibration_error",
    "apply_temperature",
    "fit_temperature",
]


def reliability_table(y_true: object, probs: object, *, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Top-label reliability diagram: confidence vs accuracy in equal-width confidence bins.

    Parameters
    ----------
    y_true : (N,) int array
        True class indices.
    probs : (N, K) float array
        Class probabilities.
    n_bins : int
        Number of equal-width bins over [0, 1] (>= 1).

    Returns
    -------
    dict of (n_bins,) arrays
        ``lower``, ``upper`` (bin edges), ``count`` (images per bin), ``confidence``
        (mean top probability) and ``accuracy`` (fraction whose top class is right);
        NaN in empty bins.
    """
    t, p = check_probs(y_true, probs)
    n_bins = check_positive_int(n_bins, "n_bins", minimum=1)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds lower < conf <= upper (the first bin also holds 0)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(y_true: object, probs: object, *, n_bins: int = 10) -> float:
    """Expected calibration error of the top label (Guo et al. 2017), in [0, 1]; lower is better.

    ``sum over bins of (n_bin / N) * |accuracy_bin - confidence_bin|`` with
    :func:`reliability_table`'s equal-width bins.

    Examples
    --------
    >>> import numpy as np
    >>> expected_calibration_error([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]), n_bins=10)
    0.15
    """
    table = reliability_table(y_true, probs, n_bins=n_bins)
    keep = table["count"] > 0
    n = table["count"].sum()
    gaps = np.abs(table["accuracy"][keep] - table["confidence"][keep])
    return round(float(np.sum(table["count"][keep] / n * gaps)), 12)


def apply_temperature(probs: object, temperature: float) -> np.ndarray:
    """Rescale class probabilities by a temperature: ``softmax(log(p) / T)``, float64 (N, K).

    For a single model this equals softmax(logits / T). ``T > 1`` softens, ``T < 1``
    sharpens; the arg-max (and every ranking within a column) is unchanged.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ConfigError(f"`probs` must be an (N, K) array with K >= 2; got shape {p.shape}.")
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ConfigError(f"`temperature` must be a finite number > 0; got {temperature!r}.")
    z = np.log(np.clip(p, 1e-12, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y_true: object, probs: object, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the negative log-likelihood of ``probs`` on ``y_true``.

    Fit on validation data only (Guo et al. 2017). A bounded 1-D search over log T.
    """
    from scipy.optimize import minimize_scalar

    t, p = check_probs(y_true, probs)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not 0 < lo < hi:
        raise ConfigError(f"`bounds` must be (low, high) with 0 < low < high; got {bounds!r}.")

    def nll(log_t: float) -> float:
        q = apply_temperature(p, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(q[np.arange(len(t)), t], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(np.log(lo), np.log(hi)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
