"""What reviewing the images with the lowest quality estimate catches (skinseg.metrics.review_table)."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from skinseg.errors import ConfigError
from skinseg.metrics import review_curve, review_table


def test_review_table_counts_the_failures_among_the_lowest_estimates():
    rng = np.random.default_rng(0)
    iou = rng.uniform(0.3, 1.0, 200)
    quality = iou + rng.normal(0, 0.15, 200)
    t = review_table(quality, iou, shares=(0.1, 0.2, 0.3))
    fail = iou < 0.65
    assert t["n_images"] == 200 and t["n_failures"] == int(fail.sum())
    for row in t["review"]:
        k = int(np.ceil(row["share"] * 200))
        lowest = np.argsort(quality, kind="stable")[:k]
        assert row["reviewed"] == k and row["failures_caught"] == int(fail[lowest].sum())
        assert row["fraction_caught"] == pytest.approx(row["failures_caught"] / fail.sum())
    assert t["auroc"] == pytest.approx(roc_auc_score(fail, -quality))
    assert t["spearman"] == pytest.approx(spearmanr(quality, iou).statistic)


def test_a_perfect_estimate_catches_every_failure_first():
    iou = np.linspace(0.2, 0.95, 40)
    x, caught = review_curve(iou, iou)
    n_fail = int((iou < 0.65).sum())
    assert x[0] == 0 and caught[0] == 0 and x[-1] == 1 and caught[-1] == 1
    assert caught[n_fail] == 1 and np.all(np.diff(caught) >= 0)
    t = review_table(iou, iou)
    assert t["auroc"] == 1.0 and t["spearman"] == pytest.approx(1.0)


def test_undefined_numbers_are_none_and_bad_input_is_refused():
    t = review_table([0.9, 0.8, 0.7], [0.9, 0.9, 0.9])
    assert t["n_failures"] == 0 and t["auroc"] is None and t["spearman"] is None
    assert all(r["fraction_caught"] is None for r in t["review"])
    with pytest.raises(ConfigError, match="one value per image"):
        review_table([0.5], [0.5, 0.6])
    with pytest.raises(ConfigError, match="finite"):
        review_table([np.nan, 0.5], [0.5, 0.6])
