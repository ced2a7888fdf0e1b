"""Lesion-classification metrics in plain numpy, checked against scikit-learn.

Conventions:

- class labels are integers ``0 .. K-1`` in a 1-D array ``y_true`` of shape (N,); predicted
  labels ``y_pred`` likewise; scores or probabilities ``probs`` are an (N, K) float array
  (rows need not sum to 1; only their order matters for the AUC);
- :func:`confusion_matrix` has true classes in rows and predicted classes in columns, as
  :func:`sklearn.metrics.confusion_matrix`;
- :func:`balanced_accuracy` is the mean recall over the classes present in ``y_true``, as
  :func:`sklearn.metrics.balanced_accuracy_score`; it is the ISIC 2018 Task 3 metric;
- a ratio with a zero denominator is 0.0, as scikit-learn's ``zero_division=0``;
- a binary ``score`` means "more positive" when larger: a threshold ``t`` predicts positive
  for ``score >= t``. Every distinct score is a threshold, plus ``+inf`` (nothing positive);
- an AUC that is undefined (a class absent from ``y_true``, or every sample of one class)
  raises for a single binary problem and is ``None`` in the one-vs-rest lists, so that
  :func:`classification_metrics` stays strict JSON (no NaN).

scikit-learn is only a test dependency: every metric here is computed with numpy, and
``tests/test_classification_metrics.py`` compares them with scikit-learn.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._checks import check_fraction, check_positive_int, did_you_mean
from ..errors import ConfigError
from .resample import bootstrap_indices

__all__ = [
    "confusion_matrix",
    "accuracy",
    "balanced_accuracy",
    "per_class_report",
    "roc_curve",
    "roc_auc",
    "one_vs_rest_auc",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "classification_metrics",
    "bootstrap_ci",
    "check_probs",
    "resolve_class_names",
    "positive_class_index",
    "operating_point_at_specificity",
]


# ----------------------------------------------------------------------------- validation


def _describe(arr: np.ndarray) -> str:
    return f"shape {arr.shape}, dtype {arr.dtype}"


def _as_labels(y: object, name: str) -> np.ndarray:
    """``y`` as a non-empty 1-D int64 array of labels >= 0, else :class:`ConfigError`."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        hint = " For probabilities, pass probs.argmax(axis=1)." if arr.ndim == 2 else ""
        raise ConfigError(
            f"`{name}` must be a 1-D array of integer class labels; got {_describe(arr)}.{hint}"
        )
    if arr.size == 0:
        raise ConfigError(f"`{name}` must hold at least one label; got an empty array.")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any():
            raise ConfigError(
                f"`{name}` contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}; "
                "every sample needs a class label."
            )
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ConfigError(
                f"`{name}` must hold integer class labels 0..K-1; got non-integer values "
                f"such as {arr[(~np.isfinite(arr)) | (arr != np.round(arr))][0]!r}."
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"`{name}` must hold integer class labels 0..K-1; got {_describe(arr)}. "
            "Map class names to indices first."
        )
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ConfigError(f"`{name}` must hold class labels 0..K-1; got {int(arr.min())}.")
    return arr


def _check_range(y: np.ndarray, num_classes: int, name: str) -> None:
    if int(y.max()) >= num_classes:
        raise ConfigError(
            f"`{name}` holds label {int(y.max())}, out of range for {num_classes} classes "
            f"(labels 0..{num_classes - 1}). Pass the right num_classes."
        )


def _check_same_length(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[0] != b.shape[0]:
        raise ConfigError(
            f"`{names[0]}` and `{names[1]}` must have the same number of samples; got "
            f"{a.shape[0]} and {b.shape[0]}."
        )


def _as_scores(score: object, name: str, ndim: int) -> np.ndarray:
    """``score`` as a finite float64 array with ``ndim`` dimensions."""
    arr = np.asarray(score)
    if arr.ndim != ndim:
        want = "a 1-D array of scores, shape (N,)" if ndim == 1 else "a 2-D array of scores, shape (N, K)"
        raise ConfigError(f"`{name}` must be {want}; got {_describe(arr)}.")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ConfigError(f"`{name}` must be a numeric (float) array; got {_describe(arr)}.")
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ConfigError(f"`{name}` must hold at least one sample; got {_describe(arr)}.")
    if np.isnan(arr).any():
        raise ConfigError(
            f"`{name}` contains NaN (first at flat index {int(np.flatnonzero(np.isnan(arr))[0])}). "
            "Check the model outputs."
        )
    if not np.isfinite(arr).all():
        raise ConfigError(f"`{name}` contains infinite values. Pass finite scores (probabilities or logits).")
    return arr


def check_probs(y_true: object, probs: object) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) checked: 1-D int labels, an (N, K >= 2) probability array of the same N."""
    p = _as_scores(probs, "probs", 2)
    if p.shape[1] < 2:
        raise ConfigError(f"`probs` must have one column per class (K >= 2); got shape {p.shape}.")
    t = _as_labels(y_true, "y_true")
    _check_same_length(t, p, ("y_true", "probs"))
    _check_range(t, p.shape[1], "y_true")
    return t, p


def _as_binary(y_true: object, score: object) -> tuple[np.ndarray, np.ndarray]:
    """(bool truth, float score) for a binary problem, both classes required."""
    t = _as_labels(y_true, "y_true")
    if int(t.max()) > 1:
        raise ConfigError(
            f"`y_true` must be binary (0 = negative, 1 = positive); got label {int(t.max())}. "
            "For one class of a multi-class problem pass y_true == k."
        )
    s = _as_scores(score, "score", 1)
    _check_same_length(t, s, ("y_true", "score"))
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == t.size:
        which = "positive" if n_pos == 0 else "negative"
        raise ConfigError(
            f"`y_true` has no {which} sample, so the ROC curve and AUC are undefined. "
            "Evaluate on a set holding both classes."
        )
    return t.astype(bool), s


def _num_classes(value: object, *arrays: np.ndarray) -> int:
    if value is None:
        return max(int(a.max()) for a in arrays) + 1
    return check_positive_int(value, "num_classes")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0.0 where ``den == 0`` (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


# ----------------------------------------------------------------------------- labels


def confusion_matrix(y_true: object, y_pred: object, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): ``cm[i, j]`` = samples of class i predicted as j.

    Rows are true classes and columns predicted classes, as
    :func:`sklearn.metrics.confusion_matrix` with ``labels=range(num_classes)``.

    Returns
    -------
    np.ndarray
        (K, K) int64 array.

    Raises
    ------
    ConfigError
        If the labels are not 1-D integers in ``0..num_classes-1`` or their lengths differ.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    k = check_positive_int(num_classes, "num_classes")
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    _check_same_length(t, p, ("y_true", "y_pred"))
    _check_range(t, k, "y_true")
    _check_range(p, k, "y_pred")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def accuracy(y_true: object, y_pred: object) -> float:
    """Fraction of samples whose predicted label equals the true label.

    >>> accuracy([0, 1, 1, 2], [0, 1, 2, 2])
    0.75
    """
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    _check_same_length(t, p, ("y_true", "y_pred"))
    return float(np.mean(t == p))


def balanced_accuracy(y_true: object, y_pred: object, num_classes: int | None = None) -> float:
    """Mean recall (sensitivity) over the classes present in ``y_true``.

    As :func:`sklearn.metrics.balanced_accuracy_score` (``adjusted=False``), and the ISIC 2018
    Task 3 ("balanced multi-class accuracy") metric. Classes absent from ``y_true`` are left out
    of the mean; a class never predicted counts with recall 0.

    Parameters
    ----------
    num_classes : int, optional
        Number of classes K; only used to check the label range. Default: the largest label + 1.

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5
    """
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    k = _num_classes(num_classes, t, p)
    cm = confusion_matrix(t, p, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class_report(
    y_true: object,
    y_pred: object,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, float | int]]:
    """Precision, recall (= sensitivity), specificity, F1 and support of every class, one vs rest.

    Returns
    -------
    dict
        ``{class_name: {"precision", "recall", "sensitivity", "specificity", "f1", "support"}}``
        in class order; names default to ``"0"``, ``"1"``, ... . ``sensitivity`` repeats ``recall``.
        Plain floats and ints. A ratio with a zero denominator is 0.0, as scikit-learn's
        ``precision_recall_fscore_support(..., zero_division=0)``; F1 is
        ``2 TP / (2 TP + FP + FN)``. Specificity is ``TN / (TN + FP)`` of the class against
        all others.

    Raises
    ------
    ConfigError
        On invalid labels, or if ``class_names`` does not have ``num_classes`` unique names.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    k = cm.shape[0]
    names = resolve_class_names(class_names, k)
    tp = np.diag(cm).astype(np.int64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    tn = int(cm.sum()) - tp - fp - fn
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    specificity = _ratio(tn, tn + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        names[i]: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "sensitivity": float(recall[i]),
            "specificity": float(specificity[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(k)
    }


def resolve_class_names(class_names: Sequence[str] | None, k: int) -> list[str]:
    """``class_names`` checked against ``k`` classes (default ``["0", "1", ...]``)."""
    if class_names is None:
        return [str(i) for i in range(k)]
    if isinstance(class_names, str):
        raise ConfigError(f"`class_names` must be a sequence of {k} names, not a single string.")
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise ConfigError(
            f"`class_names` must name all {k} classes in label order; got {len(names)}: {names}."
        )
    if len(set(names)) != k:
        raise ConfigError(f"`class_names` must be unique; got {names}.")
    return names


# ----------------------------------------------------------------------------- scores (binary)


def _curve_counts(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fps, tps, thresholds) at every distinct score, thresholds decreasing, ``+inf`` first.

    ``tps[i]``/``fps[i]`` count the positives/negatives with ``score >= thresholds[i]``.
    """
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    t_sorted = t[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # last index of every tie group
    tps = np.cumsum(t_sorted, dtype=np.int64)[last]
    fps = (last + 1) - tps
    return np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, s_sorted[last]]


def roc_curve(y_true: object, score: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of a binary problem: one point per distinct score, plus the origin.

    Parameters
    ----------
    y_true : array of shape (N,)
        1 (or True) for positives, 0 for negatives; both must occur.
    score : array of shape (N,)
        Finite scores; higher means more likely positive.

    Returns
    -------
    fpr, tpr, thresholds : np.ndarray
        ``thresholds`` decrease from ``+inf`` (nothing predicted positive: fpr = tpr = 0) over
        every distinct score; ``fpr[i]``/``tpr[i]`` are the rates of ``score >= thresholds[i]``.
        These are the points of ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``
        (scikit-learn >= 1.3); the default ``drop_intermediate=True`` there removes collinear
        points only, so the area is the same.

    Raises
    ------
    ConfigError
        If ``y_true`` is not binary with both classes present, on length mismatch, or if
        ``score`` is not 1-D or holds NaN/inf.
    """
    t, s = _as_binary(y_true, score)
    fps, tps, thresholds = _curve_counts(t, s)
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(y_true: object, score: object) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties 0.5.

    The Mann-Whitney U statistic over ``n_pos * n_neg``, computed exactly in integers; equal to
    the trapezoidal area under :func:`roc_curve` and to :func:`sklearn.metrics.roc_auc_score`.

    Raises
    ------
    ConfigError
        As :func:`roc_curve` (in particular when ``y_true`` holds a single class).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9])
    0.875
    """
    t, s = _as_binary(y_true, score)
    fps, tps, _ = _curve_counts(t, s)
    # U = sum over tie groups g of dpos_g * (negatives scored below g + dneg_g / 2), so
    # 2U = sum_g dpos_g * (2 * neg_below_g + dneg_g), exact in integers (the trapezoid rule on the curve)
    dpos = np.diff(tps)
    dneg = np.diff(fps)
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    neg_below = n_neg - fps[1:]  # negatives with a strictly lower score than the group
    twice_u = int(np.sum(dpos * (2 * neg_below + dneg)))
    return twice_u / (2 * n_pos * n_neg)


def _rates(y_true: object, score: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensitivity, specificity, thresholds) at every threshold, exact divisions of counts."""
    t, s = _as_binary(y_true, score)
    fps, tps, thresholds = _curve_counts(t, s)
    n_neg = fps[-1]
    return tps / tps[-1], (n_neg - fps) / n_neg, thresholds


def operating_point_at_specificity(y_true: object, score: object, specificity: float) -> tuple[float, float, float]:
    """(sensitivity, specificity reached, threshold) of :func:`sensitivity_at_specificity`."""
    target = check_fraction(specificity, "specificity")
    sens, spec, thresholds = _rates(y_true, score)
    ok = np.flatnonzero(spec >= target)  # thresholds decrease, so sensitivity increases along ok
    best = ok[np.argmax(sens[ok])]  # first maximum: the highest threshold
    return float(sens[best]), float(spec[best]), float(thresholds[best])


def sensitivity_at_specificity(
    y_true: object, score: object, specificity: float = 0.9, *, return_threshold: bool = False
) -> float | tuple[float, float]:
    """The highest sensitivity of any threshold whose specificity is at least ``specificity``.

    The thresholds are ``+inf`` and every distinct score, ``score >= t`` predicting positive
    (the points of :func:`roc_curve`; no interpolation between them). Specificity is computed
    as ``TN / (TN + FP)`` (not ``1 - fpr``), so a target like 0.9 is met exactly by 9 of 10
    negatives. The ``+inf`` threshold always qualifies (specificity 1), so the answer exists;
    it is 0.0 when no threshold that reaches the target finds a positive.

    Parameters
    ----------
    specificity : float in [0, 1]
    return_threshold : bool, default False
        Also return the threshold: the highest one with that sensitivity (hence the highest
        specificity among the best); ``inf`` when nothing is predicted positive.

    Returns
    -------
    float or (float, float)
        The sensitivity, or ``(sensitivity, threshold)``.
    """
    sens, _, threshold = operating_point_at_specificity(y_true, score, specificity)
    return (sens, threshold) if return_threshold else sens


def specificity_at_sensitivity(
    y_true: object, score: object, sensitivity: float = 0.9, *, return_threshold: bool = False
) -> float | tuple[float, float]:
    """The highest specificity of any threshold whose sensitivity is at least ``sensitivity``.

    The mirror of :func:`sensitivity_at_specificity` (same thresholds, exact count ratios).
    The lowest threshold (every sample positive) always qualifies. With ``return_threshold``
    the threshold returned is the lowest one reaching that specificity (hence the highest
    sensitivity among the best).
    """
    target = check_fraction(sensitivity, "sensitivity")
    sens, spec, thresholds = _rates(y_true, score)
    ok = np.flatnonzero(sens >= target)  # specificity decreases along ok
    best = ok[len(ok) - 1 - np.argmax(spec[ok][::-1])]  # last maximum: the lowest threshold
    return (float(spec[best]), float(thresholds[best])) if return_threshold else float(spec[best])


# ----------------------------------------------------------------------------- multi-class scores


def one_vs_rest_auc(y_true: object, probs: object) -> tuple[list[float | None], float | None]:
    """ROC AUC of every class against the rest, scored by its column of ``probs``, and their mean.

    Returns
    -------
    per_class : list of float or None
        ``roc_auc(y_true == k, probs[:, k])``; ``None`` where it is undefined (class k absent
        from ``y_true``, or every sample of class k).
    macro : float or None
        Unweighted mean over the defined classes (``None`` if none is): with every class
        present this is ``sklearn.metrics.roc_auc_score(y_true, probs, multi_class="ovr")``
        (which also demands rows summing to 1; this function does not).
    """
    t, p = check_probs(y_true, probs)
    per_class: list[float | None] = []
    for k in range(p.shape[1]):
        n_pos = int(np.count_nonzero(t == k))
        per_class.append(None if n_pos in (0, t.size) else roc_auc(t == k, p[:, k]))
    defined = [a for a in per_class if a is not None]
    return per_class, (float(np.mean(defined)) if defined else None)


def positive_class_index(positive: object, names: list[str]) -> int:
    """Index of the positive class, given by index or by name."""
    if isinstance(positive, numbers.Integral) and not isinstance(positive, bool):
        if not 0 <= int(positive) < len(names):
            raise ConfigError(f"`positive` index {positive} is out of range for {len(names)} classes.")
        return int(positive)
    if positive not in names:
        raise ConfigError(
            f"`positive` must be one of the class names {names} (or None); got {positive!r}."
            + did_you_mean(positive, names)
        )
    return names.index(str(positive))


def classification_metrics(
    y_true: object,
    probs: object,
    class_names: Sequence[str],
    positive: str | int | None = "melanoma",
    specificities: Sequence[float] = (0.8, 0.9, 0.95),
    *,
    n_boot: int = 0,
    seed: int = 0,
    groups: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Every classification number of an evaluation, as plain JSON-ready values.

    Predictions are ``probs.argmax(axis=1)`` (ties go to the lower class index).

    Parameters
    ----------
    y_true : array of shape (N,)
        Integer labels, index into ``class_names``.
    probs : array of shape (N, K)
        Class probabilities (or any scores, larger = more likely).
    class_names : sequence of K str
    positive : str, int or None, default "melanoma"
        The class of the binary "positive vs rest" numbers (a name or index); None skips them.
    specificities : sequence of float
        Specificities at which the positive class's sensitivity is reported.
    n_boot : int, default 0
        If > 0, add 95 % percentile bootstrap intervals (:func:`bootstrap_ci`, ``seed``) of the
        balanced accuracy and the positive-vs-rest AUC under ``"ci"``.
    groups : sequence, optional
        One label per sample (e.g. the lesion id): the bootstrap resamples whole groups.

    Returns
    -------
    dict
        ``n_samples``, ``class_names``, ``prediction``, ``accuracy``, ``balanced_accuracy``,
        ``per_class`` (:func:`per_class_report`), ``confusion_matrix`` (list of lists, rows true),
        ``auc_ovr`` (``{name: AUC or None}``), ``auc_ovr_macro``, and with ``positive``:
        ``positive``, ``positive_auc`` (``None`` if undefined) and
        ``positive_sensitivity_at_specificity`` =
        ``{"0.9": {"sensitivity", "specificity", "threshold"}, ...}`` where ``specificity`` is
        the one reached and ``threshold`` the score threshold (``None`` for +inf, i.e. nothing
        positive). No NaN anywhere.

    Raises
    ------
    ConfigError
        On invalid inputs or an unknown ``positive``.
    """
    t, p = check_probs(y_true, probs)
    k = p.shape[1]
    names = resolve_class_names(class_names, k)
    pred = p.argmax(axis=1)
    cm = confusion_matrix(t, pred, k)
    per_class_auc, macro_auc = one_vs_rest_auc(t, p)
    out: dict[str, Any] = {
        "n_samples": int(t.size),
        "class_names": names,
        "prediction": "argmax of probs",
        "accuracy": accuracy(t, pred),
        "balanced_accuracy": balanced_accuracy(t, pred, k),
        "per_class": per_class_report(t, pred, k, names),
        "confusion_matrix": cm.tolist(),
        "auc_ovr": dict(zip(names, per_class_auc, strict=True)),
        "auc_ovr_macro": macro_auc,
    }
    targets = [check_fraction(s, "specificities") for s in specificities]
    pos = None if positive is None else positive_class_index(positive, names)
    if pos is not None:
        out["positive"] = names[pos]
        out["positive_auc"] = per_class_auc[pos]
        at_spec: dict[str, Any] = {}
        if per_class_auc[pos] is not None:
            y_pos = t == pos
            for target in targets:
                sens, reached, thr = operating_point_at_specificity(y_pos, p[:, pos], target)
                at_spec[f"{target:g}"] = {
                    "sensitivity": sens,
                    "specificity": reached,
                    "threshold": thr if math.isfinite(thr) else None,
                }
        out["positive_sensitivity_at_specificity"] = at_spec
    n_boot = check_positive_int(n_boot, "n_boot", minimum=0)
    if n_boot:
        ci: dict[str, Any] = {
            "balanced_accuracy": bootstrap_ci(
                lambda yt, pr: balanced_accuracy(yt, pr.argmax(axis=1), k), t, p, n=n_boot, seed=seed,
                groups=groups,
            )
        }
        if pos is not None and out["positive_auc"] is not None:
            ci["positive_auc"] = bootstrap_ci(
                lambda yt, pr: roc_auc(yt == pos, pr[:, pos]), t, p, n=n_boot, seed=seed, groups=groups
            )
        out["ci"] = ci
    return out


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: object,
    probs: object,
    n: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    *,
    groups: Sequence[object] | None = None,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``metric_fn(y_true, probs)`` over resampled samples.

    Draws ``n`` resamples of the N samples with replacement (``np.random.default_rng(seed)``,
    so the result is reproducible) and takes the ``(1 - ci) / 2`` and ``(1 + ci) / 2``
    quantiles of the metric. With ``groups`` (one label per sample, e.g. the lesion id) whole
    groups are resampled (:func:`skinseg.metrics.resample.bootstrap_indices`), as a dataset
    with several images per lesion needs. A resample on which the metric is undefined (``metric_fn`` raises
    :class:`ConfigError`, e.g. an AUC on a resample without positives) is skipped and counted.

    Examples
    --------
    ``bootstrap_ci(lambda y, p: balanced_accuracy(y, p.argmax(1)), y_true, probs)``

    Returns
    -------
    dict
        ``{"estimate", "low", "high", "ci", "n_boot", "n_skipped"}``; ``low``/``high`` are None
        if every resample was skipped.
    """
    t, p = check_probs(y_true, probs)
    n = check_positive_int(n, "n")
    level = check_fraction(ci, "ci")
    estimate = float(metric_fn(t, p))
    values = []
    for idx in bootstrap_indices(t.size, n, seed, groups=groups):
        try:
            values.append(float(metric_fn(t[idx], p[idx])))
        except ConfigError:
            continue
    if not values:
        low = high = None
    else:
        low, high = (float(v) for v in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))
    return {
        "estimate": estimate,
        "low": low,
        "high": high,
        "ci": level,
        "n_boot": n,
        "n_skipped": n - len(values),
    }
