"""Calibration metrics: reliability table, ECE, temperature scaling."""

from __future__ import annotations

import numpy as np
import pytest

from skinseg.errors import ConfigError
from skinseg.metrics.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _sampled(n=20000, k=3, seed=0):
    """Logits and labels drawn from softmax(logits): perfectly calibrated probabilities."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, k))
    q = _softmax(z)
    y = (rng.random(n)[:, None] > np.cumsum(q, 1)).sum(1)
    return z, y


def test_known_answer_and_table():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.3, 0.7]])
    y = np.array([0, 1, 1, 0])
    t = reliability_table(y, p, n_bins=5)
    assert t["count"].tolist() == [0, 0, 1, 2, 1]
    np.testing.assert_allclose(t["confidence"][2:], [0.55, 0.75, 0.9])
    np.testing.assert_allclose(t["accuracy"][2:], [0.0, 0.5, 1.0])
    # |0 - .55| * 1/4 + |.5 - .75| * 2/4 + |1 - .9| * 1/4
    assert expected_calibration_error(y, p, n_bins=5) == pytest.approx(0.55 / 4 + 0.25 / 2 + 0.1 / 4)


def test_calibrated_probabilities_have_small_ece_and_overconfident_ones_do_not():
    z, y = _sampled()
    assert expected_calibration_error(y, _softmax(z)) < 0.02
    assert expected_calibration_error(y, _softmax(2.5 * z)) > 0.08


def test_temperature_one_is_the_identity_and_argmax_is_kept():
    z, _ = _sampled(100)
    p = _softmax(z)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-12)
    for t in (0.5, 3.0):
        np.testing.assert_allclose(apply_temperature(p, t), _softmax(z / t), atol=1e-9)
        assert (apply_temperature(p, t).argmax(1) == p.argmax(1)).all()


def test_fit_temperature_recovers_the_overconfidence_and_lowers_ece():
    z, y = _sampled()
    over = _softmax(2.0 * z)
    t = fit_temperature(y, over)
    assert t == pytest.approx(2.0, rel=0.08)
    assert expected_calibration_error(y, apply_temperature(over, t)) < 0.02


def test_errors():
    p = np.array([[0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(ConfigError, match="temperature"):
        apply_temperature(p, 0)
    with pytest.raises(ConfigError, match="bounds"):
        fit_temperature([0, 1], p, bounds=(2.0, 1.0))
    with pytest.raises(ConfigError, match="n_bins"):
        reliability_table([0, 1], p, n_bins=0)
    with pytest.raises(ConfigError):
        expected_calibration_error([0, 1, 1], p)
