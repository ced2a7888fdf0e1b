"""Per-image lesion-segmentation metrics with the ISIC challenge conventions, and their aggregation.

Conventions (those of the official scorer, ``isic-challenge-scoring`` 5.6.0,
``isic_challenge_scoring/metrics.py`` and ``segmentation.py``):

- every metric is computed per image from that image's confusion counts and the
  dataset score is the **macro mean over images**;
- Dice and IoU (Jaccard) of two empty masks are ``empty_score`` (default 1.0); an empty
  truth with any false positive scores 0.0;
- sensitivity is ``empty_score`` (1.0) when the truth has no lesion pixel, even if the
  prediction has false positives (specificity then pays for them); specificity is
  ``empty_score`` when the truth has no background pixel; accuracy is always defined;
- thresholded Jaccard zeroes every image with J < 0.65 (J >= 0.65 is kept);
- mask files are binarised as ``pixel > 128``, truth and prediction alike, and compared
  at the truth's size (see :func:`skinseg.metrics.evaluate_folders` in
  :mod:`skinseg.metrics.folders`), with one documented difference: a file holding only
  {0, 1} is read as 1 = lesion and flagged (the scorer reads it as empty).

Dataset-pooled ("micro") numbers from summed confusion counts are offered by
:func:`summarize` too, always under the key ``"pooled"``. They are what many papers and
torchmetrics report and usually run higher than the ISIC macro mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .._checks import as_bool_mask, check_fraction, check_positive_int, check_same_hw
from .._imagefile import ISIC_BINARY_LEVEL as _ISIC_LEVEL
from ..errors import ConfigError, InvalidMaskError
from .resample import bootstrap_indices

__all__ = [
    "METRIC_NAMES",
    "POOLED_METRIC_NAMES",
    "ISIC_JACCARD_THRESHOLD",
    "ISIC_BINARY_LEVEL",
    "confusion_counts",
    "dice_score",
    "iou_score",
    "thresholded_jaccard",
    "sensitivity_score",
    "specificity_score",
    "accuracy_score",
    "hd95",
    "segmentation_metrics",
    "summarize",
    "SegmentationMeter",
]

METRIC_NAMES: tuple[str, ...] = (
    "dice",
    "iou",
    "thresholded_jaccard",
    "sensitivity",
    "specificity",
    "accuracy",
    "hd95",
)
"""Keys of the per-image metrics in :func:`segmentation_metrics` (``iou`` is the ISIC ``jaccard``)."""
POOLED_METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "sensitivity", "specificity", "accuracy")
"""Metrics that :func:`summarize` also reports pooled over all pixels of the dataset."""
ISIC_JACCARD_THRESHOLD = 0.65
"""Images with Jaccard below this score 0 in the ISIC thresholded Jaccard."""
ISIC_BINARY_LEVEL = _ISIC_LEVEL
"""Mask files are binarised as ``pixel > 128`` (truth and prediction), as the ISIC scorer does."""

_COUNTS = ("tp", "fp", "fn", "tn")
_CROSS = ndimage.generate_binary_structure(2, 1)


# --------------------------------------------------------------------------- per image


def _pair(pred: object, target: object) -> tuple[np.ndarray, np.ndarray]:
    p = as_bool_mask(pred, "pred")
    t = as_bool_mask(target, "target")
    check_same_hw(p, t)
    if p.size == 0:
        raise InvalidMaskError(f"`pred` and `target` must have at least one pixel; got shape {p.shape}.")
    return p, t


def _counts(p: np.ndarray, t: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.count_nonzero(p & t))
    n_pred = int(np.count_nonzero(p))
    n_true = int(np.count_nonzero(t))
    return tp, n_pred - tp, n_true - tp, p.size - n_pred - n_true + tp


def _div(num: int, den: int, empty_score: float) -> float:
    return float(empty_score) if den == 0 else num / den


def _scores(tp: int, fp: int, fn: int, tn: int, empty_score: float, jaccard_threshold: float) -> dict:
    iou = _div(tp, tp + fp + fn, empty_score)
    return {
        "dice": _div(2 * tp, 2 * tp + fp + fn, empty_score),
        "iou": iou,
        "thresholded_jaccard": iou if iou >= jaccard_threshold else 0.0,
        "sensitivity": _div(tp, tp + fn, empty_score),
        "specificity": _div(tn, tn + fp, empty_score),
        "accuracy": (tp + tn) / (tp + fp + fn + tn),
    }


def confusion_counts(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel confusion counts of a predicted mask against the truth.

    Parameters
    ----------
    pred, target : (H, W) bool, or integer array with values {0, 1} or {0, 255}
        Prediction first. Both go through :func:`skinseg._checks.as_bool_mask`.

    Returns
    -------
    (tp, fp, fn, tn) : tuple of int

    Raises
    ------
    MaskValueError
        If a mask holds values other than {0, 1} or {0, 255} (threshold probabilities first).
    MaskShapeError
        If the (H, W) of ``pred`` and ``target`` differ.

    Examples
    --------
    >>> import numpy as np
    >>> pred = np.array([[1, 1], [0, 0]], dtype=bool)
    >>> target = np.array([[1, 0], [1, 0]], dtype=bool)
    >>> confusion_counts(pred, target)
    (1, 1, 1, 1)
    """
    return _counts(*_pair(pred, target))


def dice_score(pred: np.ndarray, target: np.ndarray, *, empty_score: float = 1.0) -> float:
    """Dice coefficient 2·TP / (2·TP + FP + FN) of one image (= F1 of the lesion pixels).

    Both masks empty returns ``empty_score`` (default 1.0, as the ISIC scorer); an empty
    truth with any predicted pixel returns 0.0. Masks as in :func:`confusion_counts`.

    Examples
    --------
    >>> import numpy as np
    >>> dice_score(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
    0.6666666666666666
    """
    empty_score = check_fraction(empty_score, "empty_score")
    tp, fp, fn, _ = _counts(*_pair(pred, target))
    return _div(2 * tp, 2 * tp + fp + fn, empty_score)


def iou_score(pred: np.ndarray, target: np.ndarray, *, empty_score: float = 1.0) -> float:
    """Intersection over union TP / (TP + FP + FN) of one image (the ISIC "Jaccard").

    Both masks empty returns ``empty_score`` (default 1.0, as the ISIC scorer); an empty
    truth with any predicted pixel returns 0.0. Masks as in :func:`confusion_counts`.

    Examples
    --------
    >>> import numpy as np
    >>> iou_score(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
    0.5
    """
    empty_score = check_fraction(empty_score, "empty_score")
    tp, fp, fn, _ = _counts(*_pair(pred, target))
    return _div(tp, tp + fp + fn, empty_score)


def thresholded_jaccard(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    threshold: float = ISIC_JACCARD_THRESHOLD,
    empty_score: float = 1.0,
) -> float:
    """ISIC 2018 thresholded Jaccard: the IoU if it is >= ``threshold`` (default 0.65), else 0.0.

    Both masks empty count as IoU = ``empty_score`` (1.0), which passes the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> thresholded_jaccard(np.eye(2, dtype=bool), np.ones((2, 2), dtype=bool))
    0.0
    """
    threshold = check_fraction(threshold, "threshold")
    iou = iou_score(pred, target, empty_score=empty_score)
    return iou if iou >= threshold else 0.0


def sensitivity_score(pred: np.ndarray, target: np.ndarray, *, empty_score: float = 1.0) -> float:
    """Sensitivity (recall) TP / (TP + FN) of one image.

    A truth without lesion pixels returns ``empty_score`` (default 1.0) whatever the
    prediction, exactly as the ISIC scorer does ("a freebie"); the false positives of
    such an image lower its specificity, Dice and IoU instead.
    """
    empty_score = check_fraction(empty_score, "empty_score")
    tp, _, fn, _ = _counts(*_pair(pred, target))
    return _div(tp, tp + fn, empty_score)


def specificity_score(pred: np.ndarray, target: np.ndarray, *, empty_score: float = 1.0) -> float:
    """Specificity TN / (TN + FP) of one image.

    A truth that is lesion everywhere returns ``empty_score`` (default 1.0), as the ISIC scorer.
    """
    empty_score = check_fraction(empty_score, "empty_score")
    _, fp, _, tn = _counts(*_pair(pred, target))
    return _div(tn, tn + fp, empty_score)


def accuracy_score(pred: np.ndarray, target: np.ndarray) -> float:
    """Pixel accuracy (TP + TN) / (H·W) of one image; always defined."""
    tp, fp, fn, tn = _counts(*_pair(pred, target))
    return (tp + tn) / (tp + fp + fn + tn)


def _boundary(mask: np.ndarray) -> np.ndarray:
    # Lesion pixels with a 4-neighbour outside the lesion; outside the image counts as background.
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _hd95(p: np.ndarray, t: np.ndarray) -> float:
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 0.0
    if not (p_any and t_any):
        return float(math.hypot(*p.shape))
    bp, bt = _boundary(p), _boundary(t)
    rows, cols = np.nonzero(bp | bt)  # crop to the boundaries: exact, and faster on large images
    box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    bp, bt = bp[box], bt[box]
    d_pt = ndimage.distance_transform_edt(~bt)[bp]
    d_tp = ndimage.distance_transform_edt(~bp)[bt]
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask boundaries, in pixels.

    Lower is better, hence no ``_score`` suffix.

    Parameters
    ----------
    pred, target : (H, W) masks
        As in :func:`confusion_counts`.

    Returns
    -------
    float
        ``max(P95(d(pred→target)), P95(d(target→pred)))`` where ``d(a→b)`` are the Euclidean
        distances from every boundary pixel of ``a`` to the nearest boundary pixel of ``b``
        and P95 is ``np.percentile(..., 95)`` (linear interpolation). Both masks empty give
        0.0; exactly one empty gives the image diagonal ``hypot(H, W)`` (the worst case).

    Notes
    -----
    The boundary of a mask is its set of lesion pixels that have a 4-connected neighbour
    outside the lesion, pixels beyond the image edge counting as outside. This is the
    max-of-directed-percentiles definition (MONAI, BraTS); MedPy instead takes the
    percentile of both directions pooled, which can differ slightly.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((9, 9), dtype=bool); a[2:5, 2:5] = True
    >>> hd95(a, np.roll(a, 3, axis=1))
    3.0
    """
    return _hd95(*_pair(pred, target))


def segmentation_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    empty_score: float = 1.0,
    jaccard_threshold: float = ISIC_JACCARD_THRESHOLD,
) -> dict[str, float]:
    """All per-image metrics of one prediction, plus its confusion counts.

    Returns
    -------
    dict
        The keys of :data:`METRIC_NAMES` (floats: ``dice``, ``iou``, ``thresholded_jaccard``,
        ``sensitivity``, ``specificity``, ``accuracy``, ``hd95`` in pixels) and the pixel
        counts ``tp``, ``fp``, ``fn``, ``tn`` (ints), which :func:`summarize` pools.
        Conventions as in the module docstring (ISIC).
    """
    empty_score = check_fraction(empty_score, "empty_score")
    jaccard_threshold = check_fraction(jaccard_threshold, "jaccard_threshold")
    p, t = _pair(pred, target)
    counts = _counts(p, t)
    row: dict[str, Any] = _scores(*counts, empty_score, jaccard_threshold)
    row["hd95"] = _hd95(p, t)
    row.update(zip(_COUNTS, counts, strict=True))
    return row


# --------------------------------------------------------------------------- aggregation


def summarize(
    rows: Iterable[Mapping[str, Any]],
    *,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = 0,
    ci: float = 0.95,
    empty_score: float = 1.0,
    groups: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Aggregate per-image metric rows: ISIC macro mean with bootstrap CIs, plus pooled numbers.

    Parameters
    ----------
    rows : iterable of mappings
        Rows from :func:`segmentation_metrics` (extra keys such as ``id`` are ignored).
    n_boot : int, default 2000
        Bootstrap resamples of the images; 0 skips the intervals (``ci_low``/``ci_high`` None).
    rng : Generator, int or None, default 0
        Seed or generator for the resampling; the default makes the intervals reproducible.
    ci : float, default 0.95
        Coverage of the percentile bootstrap interval, in (0, 1).
    empty_score : float, default 1.0
        Pooled Dice/IoU/... when the whole dataset has no pixel in the denominator.
    groups : sequence, optional
        One label per row (e.g. the lesion id): the bootstrap then resamples whole groups
        (:func:`skinseg.metrics.resample.bootstrap_indices`), as a dataset with several images
        per lesion needs. The means are unchanged.

    Returns
    -------
    dict
        ``aggregation`` ("macro mean over N images (ISIC)"), ``macro``: {metric: {"mean",
        "ci_low", "ci_high"}}, ``pooled``: {"aggregation": "pooled over all pixels", metric:
        value, "tp"/"fp"/"fn"/"tn": summed counts}, ``ci``, ``n_boot``, and the counts
        ``n_images``, ``n_empty_truth``, ``n_empty_pred``, ``n_both_empty`` and
        ``n_one_empty`` (images whose HD95 is the image diagonal).

    Raises
    ------
    ConfigError
        If there are no rows, a row lacks a metric or a count, or an option is out of range.
    """
    n_boot = check_positive_int(n_boot, "n_boot", minimum=0)
    ci = check_fraction(ci, "ci")
    empty_score = check_fraction(empty_score, "empty_score")
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"`ci` must be strictly between 0 and 1; got {ci!r}. Use 0.95 for a 95 % interval.")
    rows = list(rows)
    if not rows:
        raise ConfigError(
            "`rows` must hold at least one image; got none. Check that predictions were paired."
        )
    names = [m for m in METRIC_NAMES if m in rows[0]]
    needed = [*names, *_COUNTS]
    for i, row in enumerate(rows):
        missing = [k for k in needed if k not in row]
        if missing:
            raise ConfigError(
                f"`rows[{i}]` must have the keys {needed}; it lacks {missing}. "
                "Build rows with segmentation_metrics()."
            )
    values = np.array([[float(r[m]) for m in names] for r in rows], dtype=np.float64).reshape(len(rows), -1)
    counts = np.array([[int(r[c]) for c in _COUNTS] for r in rows], dtype=np.int64)
    n = len(rows)

    means = values.mean(axis=0)
    low: list[float | None] = [None] * len(names)
    high: list[float | None] = [None] * len(names)
    if n_boot and groups is not None:
        boot = np.array([values[idx].mean(axis=0) for idx in bootstrap_indices(n, n_boot, rng, groups=groups)])
        boot = boot.reshape(n_boot, len(names))
    elif n_boot:
        gen = np.random.default_rng(rng)
        boot = np.empty((n_boot, len(names)))
        for start in range(0, n_boot, 256):  # chunked: bounded memory for large datasets
            idx = gen.integers(0, n, size=(min(256, n_boot - start), n))
            boot[start : start + idx.shape[0]] = values[idx].mean(axis=1)
    if n_boot:
        alpha = (1.0 - ci) / 2.0
        low = np.quantile(boot, alpha, axis=0).tolist()
        high = np.quantile(boot, 1.0 - alpha, axis=0).tolist()
    macro = {m: {"mean": float(means[j]), "ci_low": low[j], "ci_high": high[j]} for j, m in enumerate(names)}

    tp, fp, fn, tn = (int(v) for v in counts.sum(axis=0))
    pooled_all = _scores(tp, fp, fn, tn, empty_score, 0.0)
    pooled: dict[str, Any] = {"aggregation": "pooled over all pixels"}
    pooled.update({m: pooled_all[m] for m in POOLED_METRIC_NAMES})
    pooled.update(tp=tp, fp=fp, fn=fn, tn=tn)

    empty_truth = (counts[:, 0] + counts[:, 2]) == 0
    empty_pred = (counts[:, 0] + counts[:, 1]) == 0
    return {
        "aggregation": f"macro mean over {n} images (ISIC)",
        "macro": macro,
        "pooled": pooled,
        "ci": ci,
        "n_boot": n_boot,
        "n_images": n,
        "n_empty_truth": int(empty_truth.sum()),
        "n_empty_pred": int(empty_pred.sum()),
        "n_both_empty": int((empty_truth & empty_pred).sum()),
        "n_one_empty": int((empty_truth ^ empty_pred).sum()),
    }


class SegmentationMeter:
    """Accumulate per-image metrics while streaming predictions; holds no masks.

    Examples
    --------
    >>> import numpy as np
    >>> meter = SegmentationMeter()
    >>> row = meter.update(np.eye(2, dtype=bool), np.eye(2, dtype=bool), name="a")
    >>> meter.summary(n_boot=0)["macro"]["dice"]["mean"]
    1.0
    """

    def __init__(
        self, *, empty_score: float = 1.0, jaccard_threshold: float = ISIC_JACCARD_THRESHOLD
    ) -> None:
        self.empty_score = check_fraction(empty_score, "empty_score")
        self.jaccard_threshold = check_fraction(jaccard_threshold, "jaccard_threshold")
        self._rows: list[dict[str, Any]] = []

    def update(self, pred: np.ndarray, target: np.ndarray, name: str | None = None) -> dict[str, Any]:
        """Score one (pred, target) pair, store its row and return it.

        The row's ``id`` is ``name``, or the running index when ``name`` is None.
        """
        row: dict[str, Any] = {"id": str(len(self._rows)) if name is None else str(name)}
        row.update(
            segmentation_metrics(
                pred, target, empty_score=self.empty_score, jaccard_threshold=self.jaccard_threshold
            )
        )
        self._rows.append(row)
        return dict(row)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Copies of the per-image rows, in update order."""
        return [dict(r) for r in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def reset(self) -> None:
        """Forget every row."""
        self._rows.clear()

    def summary(
        self, *, n_boot: int = 2000, rng: np.random.Generator | int | None = 0, ci: float = 0.95
    ) -> dict:
        """:func:`summarize` of the rows so far."""
        return summarize(self._rows, n_boot=n_boot, rng=rng, ci=ci, empty_score=self.empty_score)
