"""skinseg.metrics.classification against scikit-learn, and the classification report plots."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from skinseg.errors import ConfigError, SkinsegError
from skinseg.metrics import (
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    classification_metrics,
    confusion_matrix,
    one_vs_rest_auc,
    per_class_report,
    roc_auc,
    roc_curve,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from skinseg.report import plot_confusion_matrix, plot_roc_curves, write_classification_report

skm = pytest.importorskip("sklearn.metrics")

NAMES7 = ["melanoma", "nevus", "bcc", "akiec", "bkl", "df", "vasc"]
SEEDS = [0, 1, 2, 3, 4]
# (n samples, class frequencies, ties in scores, class never predicted)
SCENARIOS = {
    "balanced": (120, [0.25, 0.25, 0.25, 0.25], False, None),
    "imbalanced": (300, [0.02, 0.67, 0.05, 0.03, 0.11, 0.01, 0.11], False, None),  # HAM10000-like
    "ties": (80, [0.3, 0.3, 0.4], True, None),
    "absent_prediction": (150, [0.2, 0.5, 0.2, 0.1], False, 2),
    "small_ties_absent": (25, [0.5, 0.3, 0.2], True, 0),
}


def _data(seed: int, scenario: str) -> tuple[np.ndarray, np.ndarray]:
    n, freqs, ties, never = SCENARIOS[scenario]
    rng = np.random.default_rng(seed)
    k = len(freqs)
    while True:
        y = rng.choice(k, size=n, p=freqs)
        if len(np.unique(y)) == k:
            break
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.uniform(0.0, 2.0)
    if never is not None:
        logits[:, never] -= 10.0
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    if ties:
        probs = np.round(probs, 1)
        probs /= probs.sum(axis=1, keepdims=True)  # roc_auc_score(multi_class="ovr") wants rows summing to 1
    return y, probs


def _sk(fn, *args, **kwargs):
    """Call scikit-learn with its warnings (e.g. classes in y_pred absent from y_true) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


CASES = [(seed, sc) for sc in SCENARIOS for seed in SEEDS]
IDS = [f"{sc}-{seed}" for seed, sc in CASES]


@pytest.mark.parametrize("seed,scenario", CASES, ids=IDS)
def test_label_metrics_match_sklearn(seed, scenario):
    y, probs = _data(seed, scenario)
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    labels = list(range(k))
    cm = confusion_matrix(y, pred, k)
    assert cm.dtype.kind == "i"
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=labels))
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert balanced_accuracy(y, pred, k) == pytest.approx(
        _sk(skm.balanced_accuracy_score, y, pred), abs=1e-12
    )
    assert balanced_accuracy(y, pred) == pytest.approx(_sk(skm.balanced_accuracy_score, y, pred), abs=1e-12)

    report = per_class_report(y, pred, k)
    assert list(report) == [str(i) for i in labels]
    prec, rec, f1, sup = _sk(skm.precision_recall_fscore_support, y, pred, labels=labels, zero_division=0)
    sk_cm = skm.confusion_matrix(y, pred, labels=labels)
    fp = sk_cm.sum(axis=0) - np.diag(sk_cm)
    tn = sk_cm.sum() - sk_cm.sum(axis=0) - sk_cm.sum(axis=1) + np.diag(sk_cm)
    for i in labels:
        r = report[str(i)]
        assert r["precision"] == pytest.approx(prec[i], abs=1e-12)
        assert r["recall"] == r["sensitivity"] == pytest.approx(rec[i], abs=1e-12)
        assert r["f1"] == pytest.approx(f1[i], abs=1e-12)
        assert r["support"] == sup[i]
        assert r["specificity"] == pytest.approx(tn[i] / (tn[i] + fp[i]), abs=1e-12)
        assert all(type(v) in (float, int) for v in r.values())


def test_never_predicted_class_scores_zero_like_sklearn():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 1])  # class 2 never predicted: precision 0/0 -> 0
    r = per_class_report(y, pred, 3, ["a", "b", "c"])
    assert r["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "sensitivity": 0.0,
        "specificity": 1.0,
        "f1": 0.0,
        "support": 2,
    }
    assert r["b"]["precision"] == 0.5
    # a class absent from y_true leaves the balanced-accuracy mean; a never-predicted one counts as 0
    assert balanced_accuracy([0, 0, 1], [0, 2, 2], 3) == pytest.approx(
        _sk(skm.balanced_accuracy_score, [0, 0, 1], [0, 2, 2])
    )
    assert balanced_accuracy([0, 0, 1], [0, 2, 2], 3) == 0.25
    # a class with every sample: specificity 0/0 -> 0
    assert per_class_report([1, 1], [1, 1], 2)["1"]["specificity"] == 0.0


@pytest.mark.parametrize("seed,scenario", CASES, ids=IDS)
def test_binary_auc_and_roc_curve_match_sklearn(seed, scenario):
    y, probs = _data(seed, scenario)
    for k in range(probs.shape[1]):
        yb, s = y == k, probs[:, k]
        expected = skm.roc_auc_score(yb, s)
        assert roc_auc(yb, s) == pytest.approx(expected, abs=1e-12)
        fpr, tpr, thr = roc_curve(yb, s)
        sk_fpr, sk_tpr, sk_thr = skm.roc_curve(yb, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr, atol=1e-15)
        np.testing.assert_allclose(tpr, sk_tpr, atol=1e-15)
        np.testing.assert_array_equal(thr, sk_thr)
        assert skm.auc(fpr, tpr) == pytest.approx(expected, abs=1e-12)
        assert (
            np.all(np.diff(thr) < 0)
            and np.isinf(thr[0])
            and fpr[0] == tpr[0] == 0
            and fpr[-1] == tpr[-1] == 1
        )
        # the default (collinear points dropped) is a subset of ours
        d_fpr, d_tpr, _ = skm.roc_curve(yb, s)
        assert set(zip(d_fpr, d_tpr, strict=True)) <= set(zip(fpr, tpr, strict=True))


@pytest.mark.parametrize("seed,scenario", CASES, ids=IDS)
def test_one_vs_rest_auc_matches_sklearn(seed, scenario):
    y, probs = _data(seed, scenario)
    per_class, macro = one_vs_rest_auc(y, probs)
    for k, auc in enumerate(per_class):
        assert auc == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]), abs=1e-12)
    assert macro == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12)


def test_auc_exact_known_answers_and_ties():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == 0.875
    assert roc_auc([0, 1], [0.3, 0.3]) == 0.5  # a tie counts 1/2
    assert roc_auc([True, False, True], [1.0, 2.0, 3.0]) == 0.5
    assert roc_auc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    assert roc_auc(y, np.zeros(1000)) == 0.5  # all tied


def test_one_vs_rest_auc_with_absent_class_is_none():
    y = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]]
    )
    per_class, macro = one_vs_rest_auc(y, probs)
    assert per_class[2] is None
    assert per_class[0] == pytest.approx(skm.roc_auc_score(y == 0, probs[:, 0]))
    assert macro == pytest.approx((per_class[0] + per_class[1]) / 2)


def _brute_force(yb, s, target, fixed="specificity"):
    """Best rate over every threshold (every distinct score and +inf), predicting score >= t."""
    yb = np.asarray(yb, bool)
    best = None
    for t in np.r_[np.unique(s), np.inf]:
        pos = s >= t
        sens = np.count_nonzero(pos & yb) / np.count_nonzero(yb)
        spec = np.count_nonzero(~pos & ~yb) / np.count_nonzero(~yb)
        got, other = (spec, sens) if fixed == "specificity" else (sens, spec)
        if got >= target and (best is None or other > best):
            best = other
    return best


@pytest.mark.parametrize("seed,scenario", CASES, ids=IDS)
@pytest.mark.parametrize("target", [0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0])
def test_fixed_specificity_and_sensitivity_match_brute_force(seed, scenario, target):
    y, probs = _data(seed, scenario)
    for k in range(probs.shape[1]):
        yb, s = y == k, probs[:, k]
        assert sensitivity_at_specificity(yb, s, target) == _brute_force(yb, s, target, "specificity")
        assert specificity_at_sensitivity(yb, s, target) == _brute_force(yb, s, target, "sensitivity")


def test_fixed_specificity_exact_target_and_threshold():
    # 10 negatives: 9 below 0.5 -> specificity exactly 0.9 at threshold 0.5
    neg = [0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5]
    pos = [0.45, 0.5, 0.6, 0.9]
    y = np.r_[np.zeros(10, int), np.ones(4, int)]
    s = np.r_[neg, pos]
    sens, thr = sensitivity_at_specificity(y, s, 0.9, return_threshold=True)
    # threshold 0.45 gives specificity 9/10 (only the negative 0.5 above it) and every positive
    assert (sens, thr) == (1.0, 0.45)
    assert sensitivity_at_specificity(y, s, 0.91) == 0.5  # threshold 0.6
    assert sensitivity_at_specificity(y, s, 1.0, return_threshold=True) == (0.5, 0.6)
    # nothing above every negative: only +inf reaches specificity 1
    assert sensitivity_at_specificity([0, 1], [0.9, 0.1], 1.0, return_threshold=True) == (0.0, np.inf)
    spec, thr = specificity_at_sensitivity(y, s, 1.0, return_threshold=True)
    assert (spec, thr) == (0.9, 0.45)


def test_classification_metrics_bundle():
    y, probs = _data(0, "imbalanced")
    m = classification_metrics(y, probs, NAMES7, n_boot=50)
    json.dumps(m, allow_nan=False)  # plain, strict JSON
    pred = probs.argmax(axis=1)
    assert m["n_samples"] == len(y) and m["class_names"] == NAMES7
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(_sk(skm.balanced_accuracy_score, y, pred))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(7)).tolist()
    assert list(m["per_class"]) == NAMES7
    for k, name in enumerate(NAMES7):
        assert m["auc_ovr"][name] == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]))
    assert m["auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert m["positive"] == "melanoma"
    assert m["positive_auc"] == m["auc_ovr"]["melanoma"]
    assert list(m["positive_sensitivity_at_specificity"]) == ["0.8", "0.9", "0.95"]
    for key, point in m["positive_sensitivity_at_specificity"].items():
        assert point["sensitivity"] == _brute_force(y == 0, probs[:, 0], float(key))
        assert point["specificity"] >= float(key)
        assert point["threshold"] is None or 0 <= point["threshold"] <= 1
    ci = m["ci"]
    assert set(ci) == {"balanced_accuracy", "positive_auc"}
    assert ci["balanced_accuracy"]["estimate"] == m["balanced_accuracy"]
    assert ci["positive_auc"]["low"] <= ci["positive_auc"]["estimate"] <= ci["positive_auc"]["high"]

    assert "positive" not in classification_metrics(y, probs, NAMES7, positive=None)
    assert classification_metrics(y, probs, NAMES7, positive=1)["positive"] == "nevus"
    with pytest.raises(ConfigError, match="Did you mean 'melanoma'"):
        classification_metrics(y, probs, NAMES7, positive="melanom")
    with pytest.raises(ConfigError, match="class_names"):
        classification_metrics(y, probs, NAMES7[:3])
    with pytest.raises(ConfigError, match="specificities"):
        classification_metrics(y, probs, NAMES7, specificities=(1.5,))


def test_classification_metrics_positive_absent_stays_json():
    y = np.array([1, 2, 1, 2, 1])
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=5)
    m = classification_metrics(y, probs, ["melanoma", "nevus", "bcc"], n_boot=20)
    assert m["positive_auc"] is None and m["auc_ovr"]["melanoma"] is None
    assert m["positive_sensitivity_at_specificity"] == {}
    assert "positive_auc" not in m["ci"]
    json.dumps(m, allow_nan=False)


def test_bootstrap_ci_is_reproducible_and_skips_undefined():
    y, probs = _data(1, "imbalanced")
    fn = lambda yt, p: roc_auc(yt == 5, p[:, 5])  # noqa: E731  (class 5 is rare: some resamples lack it)
    a = bootstrap_ci(fn, y, probs, n=200, seed=3)
    assert a == bootstrap_ci(fn, y, probs, n=200, seed=3)
    assert a["n_boot"] == 200 and 0 <= a["n_skipped"] < 200
    assert a["low"] <= a["estimate"] <= a["high"]
    b = bootstrap_ci(lambda yt, p: balanced_accuracy(yt, p.argmax(1), 7), y, probs, n=100, seed=0, ci=0.9)
    assert b["ci"] == 0.9 and b["n_skipped"] == 0 and b["low"] < b["high"]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: confusion_matrix([0, 1, 2], [0, 1], 3), "same number of samples"),
        (lambda: confusion_matrix([0, 1, 3], [0, 1, 1], 3), "out of range"),
        (lambda: confusion_matrix([0, 1, 1], [0, 1, -1], 3), "0..K-1"),
        (lambda: confusion_matrix([0, 1], [0, 1], 0), "num_classes"),
        (lambda: accuracy([0.0, np.nan], [0, 1]), "NaN"),
        (lambda: accuracy([0.5, 1.0], [0, 1]), "non-integer"),
        (lambda: accuracy(["mel", "nev"], [0, 1]), "integer class labels"),
        (lambda: accuracy([], []), "at least one"),
        (lambda: accuracy([0, 1], np.eye(2)), "argmax"),
        (lambda: balanced_accuracy([0, 1, 2], [0, 1, 2], 2), "out of range"),
        (lambda: roc_auc([0, 1, 2], [0.1, 0.2, 0.3]), "binary"),
        (lambda: roc_auc([1, 1, 1], [0.1, 0.2, 0.3]), "no negative"),
        (lambda: roc_auc([0, 0], [0.1, 0.2]), "no positive"),
        (lambda: roc_auc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: roc_auc([0, 1], [0.1, np.inf]), "infinite"),
        (lambda: roc_auc([0, 1], [[0.1, 0.2]]), "1-D"),
        (lambda: roc_curve([0, 1, 1], [0.1, 0.2]), "same number of samples"),
        (lambda: one_vs_rest_auc([0, 1], [0.3, 0.7]), "2-D"),
        (lambda: one_vs_rest_auc([0, 1, 2], [[0.3, 0.7]] * 3), "out of range"),
        (lambda: one_vs_rest_auc([0, 1], [[0.3, 0.7]] * 3), "same number of samples"),
        (lambda: one_vs_rest_auc([0, 0], [[1.0], [1.0]]), "K >= 2"),
        (lambda: one_vs_rest_auc([0, 1], [[0.3, np.nan], [0.5, 0.5]]), "NaN"),
        (lambda: sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.2), "specificity"),
        (lambda: specificity_at_sensitivity([0, 1], [0.1, 0.2], -0.1), "sensitivity"),
        (lambda: per_class_report([0, 1], [0, 1], 2, ["a"]), "class_names"),
        (lambda: per_class_report([0, 1], [0, 1], 2, ["a", "a"]), "unique"),
        (lambda: bootstrap_ci(lambda y, p: 0.0, [0, 1], [[0.5, 0.5]] * 2, n=0), "`n`"),
    ],
)
def test_input_validation(call, match):
    with pytest.raises(ConfigError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, SkinsegError)


def _read_png(path):
    from matplotlib.image import imread

    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.05  # not blank
    return img


def test_plots_write_valid_pngs(tmp_path):
    y, probs = _data(2, "imbalanced")
    cm = confusion_matrix(y, probs.argmax(1), 7)
    for normalize in (True, False):
        path = plot_confusion_matrix(cm, NAMES7, tmp_path / f"sub/cm_{normalize}.png", normalize=normalize)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        _read_png(path)
    for positive in (None, "melanoma"):
        _read_png(plot_roc_curves(y, probs, NAMES7, tmp_path / f"roc_{positive}.png", positive=positive))
    # a class absent from y_true and an empty row of the matrix are drawn without error
    y3 = np.array([0, 1, 0, 1, 1])
    p3 = np.random.default_rng(0).dirichlet(np.ones(3), size=5)
    _read_png(plot_roc_curves(y3, p3, ["a", "b", "c"], tmp_path / "roc3.png", positive="c"))
    _read_png(
        plot_confusion_matrix(confusion_matrix(y3, p3.argmax(1), 3), ["a", "b", "c"], tmp_path / "cm3.png")
    )
    with pytest.raises(ConfigError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="class_names"):
        plot_confusion_matrix(np.zeros((3, 3), int), ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="positive"):
        plot_roc_curves(y, probs, NAMES7, tmp_path / "bad.png", positive="lentigo")
    assert not (tmp_path / "bad.png").exists()


def test_write_classification_report(tmp_path):
    y, probs = _data(0, "absent_prediction")
    names = ["melanoma", "nevus", "bcc", "akiec"]
    m = classification_metrics(y, probs, names)
    paths = write_classification_report(m, y, probs, names, tmp_path / "report")
    assert set(paths) == {"metrics", "confusion_matrix", "roc_curves"}
    assert json.loads(paths["metrics"].read_text()) == m
    _read_png(paths["confusion_matrix"])
    _read_png(paths["roc_curves"])
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "roc_curves.png",
    ]  # no temporary files left
    bad = dict(m, accuracy=float("nan"))
    with pytest.raises(ValueError):
        write_classification_report(bad, y, probs, names, tmp_path / "report")
    assert json.loads(paths["metrics"].read_text()) == m  # the old report is untouched


def test_metrics_package_layout_and_no_heavy_imports():
    import skinseg.metrics as metrics
    from skinseg.metrics import classification, folders, resample, review, segmentation

    assert set(metrics.__all__) == (set(segmentation.__all__) | set(folders.__all__) | set(classification.__all__)
                                    | set(resample.__all__) | set(review.__all__))
    assert metrics.dice_score is segmentation.dice_score and metrics.roc_auc is classification.roc_auc
    code = (
        "import sys, skinseg.metrics\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
