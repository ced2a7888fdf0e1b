"""Grouped (cluster) bootstrap: several images of one lesion are resampled together."""

import numpy as np
import pytest

from skinseg.errors import ConfigError
from skinseg.metrics import bootstrap_ci, bootstrap_indices, roc_auc, segmentation_metrics, summarize


def test_ungrouped_indices_are_the_plain_bootstrap():
    ref = np.random.default_rng(7)
    for idx in bootstrap_indices(5, 20, 7):
        np.testing.assert_array_equal(idx, ref.integers(0, 5, 5))


def test_grouped_indices_take_whole_groups():
    groups = ["a", "b", "a", "c", "b", "a"]
    for idx in bootstrap_indices(6, 200, 1, groups=groups):
        drawn = [groups[i] for i in idx]
        for g in set(drawn):  # each draw of a group brings all its members
            members = [i for i, x in enumerate(groups) if x == g]
            assert drawn.count(g) % len(members) == 0
            assert sorted(set(i for i in idx if groups[i] == g)) == members


def test_groups_must_match_the_samples():
    with pytest.raises(ConfigError, match="one label per sample"):
        next(bootstrap_indices(3, 1, 0, groups=["a", "b"]))


def test_copies_grouped_give_the_interval_of_the_originals():
    # every sample duplicated 3 times: grouped by origin, the resamples are the originals' resamples
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(y * 0.3 + rng.random(60) * 0.7, 0, 1)
    probs = np.stack([1 - p, p], 1)
    auc = lambda yt, pr: roc_auc(yt, pr[:, 1])  # noqa: E731
    base = bootstrap_ci(auc, y, probs, n=300, seed=3)
    rep = np.repeat(np.arange(60), 3)
    grouped = bootstrap_ci(auc, y[rep], probs[rep], n=300, seed=3, groups=rep)
    assert grouped["low"] == pytest.approx(base["low"]) and grouped["high"] == pytest.approx(base["high"])
    naive = bootstrap_ci(auc, y[rep], probs[rep], n=300, seed=3)
    assert naive["high"] - naive["low"] < 0.8 * (grouped["high"] - grouped["low"])  # copies fake precision


def test_summarize_groups_widen_intervals_of_copies_and_keep_means():
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(30):
        truth = np.zeros((20, 20), bool)
        truth[5:15, 5:15] = True
        pred = np.zeros_like(truth)
        k = int(rng.integers(3, 12))
        pred[5:5 + k, 5:15] = True
        rows += [segmentation_metrics(pred, truth)] * 4
    groups = np.repeat(np.arange(30), 4)
    naive = summarize(rows, n_boot=400, rng=0)
    grouped = summarize(rows, n_boot=400, rng=0, groups=groups)
    dedup = summarize(rows[::4], n_boot=400, rng=0)
    for m in ("dice", "iou"):
        assert grouped["macro"][m]["mean"] == pytest.approx(naive["macro"][m]["mean"])
        assert grouped["macro"][m]["ci_low"] == pytest.approx(dedup["macro"][m]["ci_low"])
        assert grouped["macro"][m]["ci_high"] == pytest.approx(dedup["macro"][m]["ci_high"])
        width = grouped["macro"][m]["ci_high"] - grouped["macro"][m]["ci_low"]
        assert naive["macro"][m]["ci_high"] - naive["macro"][m]["ci_low"] < 0.8 * width
