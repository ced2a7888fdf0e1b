"""The per-image quality estimate: its signals, the fitted model and its file format."""

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from skinseg.errors import ConfigError
from skinseg.quality import LOG_SCALE, SELF_FEATURES, QualityModel, fit_quality_model, quality_features
from skinseg.testing import synthetic_lesion


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_a_confident_centred_prediction_has_clean_signals():
    image, truth = synthetic_lesion((150, 200), rng=0)
    prob = truth.astype(np.float32)
    f = quality_features(prob, truth, image)
    assert set(SELF_FEATURES) <= set(f)
    assert f["soft_dice"] == pytest.approx(1.0, abs=1e-5) and f["mean_prob_in"] == pytest.approx(1.0)
    assert f["ring_prob"] == 0 and f["fuzzy"] == 0 and f["outside_mass"] == 0 and f["border"] == 0
    assert 0 < f["area"] < 1 and 0 < f["compactness"] <= 1 and f["contrast"] > 0.5


def test_signals_see_a_cut_lesion_a_soft_border_and_other_blobs():
    shape = (120, 160)
    cut = _disc(shape, (60, 150), 40)  # runs off the right edge
    f = quality_features(cut.astype(np.float32), cut)
    assert f["border"] > 0.05
    soft = np.clip(1.2 - np.hypot(*np.mgrid[-60:60, -80:80]) / 40, 0, 1).astype(np.float32)
    mask = soft >= 0.5
    g = quality_features(soft, mask)
    assert g["fuzzy"] > 0.3 and g["ring_prob"] > 0.1 and g["soft_dice"] < 0.95
    blobs = _disc(shape, (30, 30), 10) | _disc(shape, (80, 100), 25)
    h = quality_features(blobs.astype(np.float32), _disc(shape, (80, 100), 25))
    assert h["outside_mass"] == pytest.approx(_disc(shape, (30, 30), 10).sum() / blobs.sum())


def test_large_images_are_measured_on_a_small_copy():
    big = _disc((3000, 4000), (1500, 2000), 900)
    small = _disc((192, 256), (96, 128), 57.6)
    fb, fs = quality_features(big.astype(np.float32), big), quality_features(small.astype(np.float32), small)
    assert fb["area"] == pytest.approx(fs["area"], rel=0.03)


def test_agreement_with_a_second_model_is_the_iou_of_the_masks():
    a = _disc((100, 100), (50, 50), 30)
    b = _disc((100, 100), (50, 60), 30)
    f = quality_features(a.astype(np.float32), a, second_prob=b.astype(np.float32))
    assert f["agreement"] == pytest.approx((a & b).sum() / (a | b).sum())


def test_agreement_on_a_large_image_is_measured_on_the_same_small_copy():
    # a second map larger than FEATURE_SIDE used to be scaled by the already scaled mask's size
    a = _disc((341, 512), (170, 250), 100)
    b = _disc((341, 512), (170, 290), 100)
    f = quality_features(a.astype(np.float32), a, second_prob=b.astype(np.float32))
    assert f["agreement"] == pytest.approx((a & b).sum() / (a | b).sum(), abs=0.02)
    with pytest.raises(ConfigError):
        quality_features(a.astype(np.float32), a, second_prob=b[:100].astype(np.float32))


def test_an_empty_mask_is_estimated_zero():
    model = QualityModel(("soft_dice",), (0.9,), (0.1,), (2.0,), 1.0)
    f = quality_features(np.zeros((40, 50), np.float32), np.zeros((40, 50), bool))
    assert math.isnan(f["soft_dice"]) and model.estimate(f) == 0.0
    assert 0 < model.estimate({"soft_dice": 0.9, "area": 0.3}) < 1


def test_fit_matches_a_direct_minimisation_of_the_same_objective():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    iou = 1 / (1 + np.exp(-(0.8 + 1.5 * x[:, 0] - 0.7 * x[:, 1]))) + rng.normal(0, 0.03, 300)
    iou = np.clip(iou, 0, 1)
    rows = [{"soft_dice": a, "fuzzy": b, "area": 0.2} for a, b in x]
    model = fit_quality_model(rows, iou, ("soft_dice", "fuzzy"), l2=0.5)
    z = (x - np.asarray(model.center)) / np.asarray(model.scale)

    def objective(w):
        p = 1 / (1 + np.exp(-(w[0] + z @ w[1:])))
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return -np.sum(iou * np.log(p) + (1 - iou) * np.log(1 - p)) + 0.25 * np.sum(w[1:] ** 2)

    ref = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose([model.intercept, *model.coef], ref, atol=1e-4)
    est = model.estimate_many(rows)
    assert np.corrcoef(est, iou)[0, 1] > 0.95


def test_a_quality_model_round_trips_through_json_and_refuses_unknown_signals():
    rows = [{"soft_dice": v, "area": 0.3} for v in np.linspace(0.5, 1, 20)]
    model = fit_quality_model(rows, np.linspace(0.3, 0.95, 20), ("soft_dice",), review_below=0.7,
                              record={"fitted_on": "test"})
    back = QualityModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert back == model and back.estimate(rows[3]) == model.estimate(rows[3])
    bad = dict(model.to_dict(), features=["made_up"])
    with pytest.raises(ConfigError, match="unknown"):
        QualityModel.from_dict(bad)
    with pytest.raises(ConfigError, match="skinseg quality"):
        QualityModel.from_dict({"format": "other"})


def test_log_scale_transforms_enter_the_model_as_documented():
    model = QualityModel(("soft_dice", "fuzzy", "compactness"), (-3.0, -2.0, 0.5), (1.5, 0.8, 0.2), (0.7, -0.4, 0.1),
                         0.3, transforms=(("log1m", 1e-4), ("log", 1e-3), ("identity", 0.0)))
    f = {"soft_dice": 0.97, "fuzzy": 0.05, "compactness": 0.8, "area": 0.2}
    z = (0.3 + 0.7 * (math.log(1 - 0.97 + 1e-4) + 3.0) / 1.5 - 0.4 * (math.log(0.05 + 1e-3) + 2.0) / 0.8
         + 0.1 * (0.8 - 0.5) / 0.2)
    assert model.estimate(f) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)
    # a soft Dice above 1 (rounding) is clipped, not a NaN; a missing signal is its centre
    assert math.isfinite(model.estimate({**f, "soft_dice": 1.0 + 1e-9}))
    assert model.estimate({**f, "soft_dice": math.nan}) == pytest.approx(
        1 / (1 + math.exp(-(z - 0.7 * (math.log(1 - 0.97 + 1e-4) + 3.0) / 1.5))), rel=1e-12)


def test_fit_on_a_log_scale_matches_a_direct_minimisation_on_the_transformed_signals():
    rng = np.random.default_rng(1)
    sd = 1 - rng.beta(1, 12, 400)  # crowded near 1, like soft Dice
    fz = rng.beta(1, 8, 400)
    iou = np.clip(sd ** 4 - 0.5 * fz + rng.normal(0, 0.04, 400), 0, 1)
    rows = [{"soft_dice": a, "fuzzy": b, "area": 0.2} for a, b in zip(sd, fz, strict=True)]
    model = fit_quality_model(rows, iou, ("soft_dice", "fuzzy"), l2=0.5, transforms=LOG_SCALE)
    assert model.transforms == (LOG_SCALE["soft_dice"], LOG_SCALE["fuzzy"])
    t = np.column_stack([np.log(1 - sd + LOG_SCALE["soft_dice"][1]), np.log(fz + LOG_SCALE["fuzzy"][1])])
    z = (t - np.asarray(model.center)) / np.asarray(model.scale)
    np.testing.assert_allclose(model.center, np.median(t, axis=0), rtol=1e-12)

    def objective(w):
        p = np.clip(1 / (1 + np.exp(-(w[0] + z @ w[1:]))), 1e-12, 1 - 1e-12)
        return -np.sum(iou * np.log(p) + (1 - iou) * np.log(1 - p)) + 0.25 * np.sum(w[1:] ** 2)

    ref = minimize(objective, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose([model.intercept, *model.coef], ref, atol=1e-4)
    raw = fit_quality_model(rows, iou, ("soft_dice", "fuzzy"), l2=0.5)
    assert raw.transforms == () and raw.coef != model.coef


def test_transforms_round_trip_and_bad_ones_are_refused():
    rows = [{"soft_dice": v, "area": 0.3} for v in np.linspace(0.5, 0.99, 20)]
    model = fit_quality_model(rows, np.linspace(0.3, 0.95, 20), ("soft_dice",), transforms=LOG_SCALE)
    d = json.loads(json.dumps(model.to_dict()))
    assert d["transforms"] == [["log1m", 1e-4]]
    back = QualityModel.from_dict(d)
    assert back == model and back.estimate(rows[3]) == model.estimate(rows[3])
    for bad in ([["cube", 1.0]], [["log", 0.0]], [["log", 1e-3], ["log", 1e-3]], ["log"]):
        with pytest.raises(ConfigError, match="transform"):
            QualityModel.from_dict(dict(d, transforms=bad))
    old = dict(d)
    del old["transforms"]  # estimates written before transforms existed: every signal as it is
    assert QualityModel.from_dict(old).transforms == ()
