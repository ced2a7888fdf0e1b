"""The quality estimate shipped with the bundled default segmenter: it is fitted for these
weights, it is deterministic, and it warns about inputs that cannot give a trustworthy mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skinseg as ss
from skinseg.inference import Predictor
from skinseg.metrics import iou_score

pytest.importorskip("torch")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def predictor():
    p = Predictor.load("default")  # the default path: ONNX Runtime, int8
    if p.quality is None:
        pytest.fail("the bundled default segmenter ships no quality estimate (quality.json)")
    return p


@pytest.fixture(scope="module")
def example():
    return ss.read_image(EXAMPLES / "images" / "ISIC_0013491.jpg")


def test_the_estimate_is_deterministic_and_a_clean_example_is_not_flagged(predictor, example):
    a = predictor.segment(example, return_quality=True)
    b = predictor.segment(example, return_quality=True)
    assert a.quality == b.quality
    assert 0.0 <= a.quality <= 1.0
    truth = ss.read_mask(EXAMPLES / "masks" / "ISIC_0013491_segmentation.png", shape=example.shape[:2])
    # the example is segmented well, and the estimate says so
    assert iou_score(a.mask, truth) > 0.8
    assert not a.needs_review


def test_a_blank_image_gets_a_low_estimate(predictor, example):
    blank = np.empty_like(example)
    blank[:] = np.median(example.reshape(-1, 3), axis=0).astype(np.uint8)  # skin colour, no lesion
    seg = predictor.segment(blank, return_quality=True)
    assert seg.quality < predictor.quality.review_below
    assert seg.needs_review


def test_a_lesion_cut_by_the_border_gets_a_lower_estimate_and_is_flagged(predictor, example):
    truth = ss.read_mask(EXAMPLES / "masks" / "ISIC_0013491_segmentation.png", shape=example.shape[:2])
    cols = np.nonzero(truth)[1]
    # keep the columns right of the lesion's centre: the image's left edge cuts the lesion in half
    cut = np.ascontiguousarray(example[:, int(cols.mean()):])
    whole = predictor.segment(example, return_quality=True)
    part = predictor.segment(cut, return_quality=True)
    assert part.quality < whole.quality
    assert part.needs_review


@pytest.mark.parametrize("name", ["default", "deeplabv3plus"])
def test_the_bundled_estimates_are_fitted_on_a_log_scale_for_their_own_weights(name):
    from skinseg.models.checkpoint import checkpoint_fingerprint, load_quality_model
    from skinseg.quality import LOG_SCALE

    model = load_quality_model(name)
    assert model.transforms == tuple(LOG_SCALE[f] for f in model.features)
    assert model.record["scale"] == "log"
    assert model.record["segmenter_fingerprint"] == checkpoint_fingerprint(name)
    # the review threshold flags about 15 % of the validation images (a quantile of the cross-fitted estimates)
    assert model.record["review_share"] == 0.15 and 0.5 < model.review_below < 0.95
