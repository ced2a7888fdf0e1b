"""How well a per-image quality estimate points at the failures: what reviewing its lowest part would catch.

:func:`review_table` takes each image's estimate (higher = better, e.g. the ``quality``
column of ``skinseg segment``) and its true IoU with the expert mask, and says how many of
the failures (IoU < ``failure_iou``, 0.65 by default: the masks an expert would reject)
are among the 10 / 20 / 30 % of images with the lowest estimate, with the AUROC of the
estimate for a failure and its Spearman correlation with the true IoU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["FAILURE_IOU", "review_table", "review_curve"]

FAILURE_IOU = 0.65
"""IoU below which a mask counts as a failure (an expert would reject it)."""


def _check(quality: Sequence[float], iou: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(quality, np.float64).ravel()
    t = np.asarray(iou, np.float64).ravel()
    if q.shape != t.shape or not q.size:
        raise ConfigError(f"`quality` and `iou` need one value per image; got {q.size} and {t.size}.")
    if not (np.isfinite(q).all() and np.isfinite(t).all()):
        raise ConfigError("`quality` and `iou` must be finite numbers (images without an estimate left out).")
    return q, t


def review_curve(quality: Sequence[float], iou: Sequence[float], *, failure_iou: float = FAILURE_IOU,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(share of images reviewed, share of failures caught), reviewing images from the lowest estimate up.

    Starts at (0, 0); ties in the estimate are reviewed in input order. With no failure the
    caught share is 0 throughout.
    """
    q, t = _check(quality, iou)
    order = np.argsort(q, kind="stable")
    fail = (t < failure_iou)[order]
    caught = np.concatenate([[0], np.cumsum(fail)]) / max(int(fail.sum()), 1)
    return np.arange(q.size + 1) / q.size, caught


def review_table(quality: Sequence[float], iou: Sequence[float], *, failure_iou: float = FAILURE_IOU,
                 shares: Sequence[float] = (0.1, 0.2, 0.3)) -> dict[str, Any]:
    """The review numbers of a quality estimate (see the module docstring), JSON-ready.

    Returns
    -------
    dict
        ``n_images``, ``n_failures``, ``failure_iou``, ``auroc`` (of a low estimate for a
        failure; None without both kinds), ``spearman`` (estimate vs true IoU; None if either
        is constant) and ``review``: one ``{"share", "reviewed", "failures_caught",
        "fraction_caught"}`` per share (``reviewed`` = ceil(share * n) images with the lowest
        estimate; ``fraction_caught`` None without failures).
    """
    from scipy.stats import spearmanr

    from .classification import roc_auc

    q, t = _check(quality, iou)
    fail = t < failure_iou
    order = np.argsort(q, kind="stable")
    rows = []
    for share in shares:
        k = min(q.size, math.ceil(share * q.size))
        caught = int(fail[order[:k]].sum())
        rows.append({"share": float(share), "reviewed": k, "failures_caught": caught,
                     "fraction_caught": caught / int(fail.sum()) if fail.any() else None})
    auroc = roc_auc(fail, -q) if 0 < fail.sum() < q.size else None
    rho = None if np.ptp(q) == 0 or np.ptp(t) == 0 else float(spearmanr(q, t).statistic)
    return {"n_images": int(q.size), "n_failures": int(fail.sum()), "failure_iou": float(failure_iou),
            "auroc": auroc, "spearman": rho, "review": rows}
