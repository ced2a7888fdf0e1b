"""An ensemble's decision weights: the predicted class is argmax(p * w), the probabilities stay as they are."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("torch")

import skinseg.classify as C  # noqa: E402
from skinseg.errors import ConfigError  # noqa: E402
from skinseg.models.checkpoint import checkpoint_fingerprint, model_fingerprint  # noqa: E402
from skinseg.models.config import decide  # noqa: E402
from skinseg.testing import synthetic_lesion  # noqa: E402


@pytest.fixture(scope="module")
def member(tiny_classifier_checkpoint):
    return C.load_classifier(tiny_classifier_checkpoint)


def test_decide_is_a_weighted_argmax():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    np.testing.assert_array_equal(decide(p), [0, 2])
    np.testing.assert_array_equal(decide(p, (1.0, 2.0, 1.0)), [1, 2])


def test_weights_are_saved_loaded_fingerprinted_and_used(member, tmp_path):
    image, mask = synthetic_lesion((70, 90), rng=3)
    plain = C.ClassifierEnsemble([member])
    p = C.predict_proba(plain, image, mask)
    favour = np.full(3, 1e-3)
    favour[int(np.argmin(p))] = 1.0  # the least probable class wins the decision
    weighted = C.ClassifierEnsemble([member], decision_weights=favour)
    np.testing.assert_allclose(C.predict_proba(weighted, image, mask), p)  # probabilities unchanged
    assert C.predict_label(plain, image, mask) == member.class_names[int(np.argmax(p))]
    assert C.predict_label(weighted, image, mask) == member.class_names[int(np.argmin(p))]
    assert model_fingerprint(weighted) != model_fingerprint(plain)
    folder = C.save_classifier(weighted, tmp_path / "ens")
    back = C.load_classifier(folder)
    assert back.decision_weights == tuple(favour) and checkpoint_fingerprint(folder, "classifier") == \
        model_fingerprint(weighted)
    predictor = C.ClassifierPredictor.load(folder, backend="torch")
    assert predictor.decision_weights == tuple(favour)
    assert predictor.predict_label(image, mask) == member.class_names[int(np.argmin(p))]


def test_classify_folder_writes_the_weighted_decision(member, lesion_folder, tmp_path):
    from skinseg.runs import classify_folder

    images, masks = lesion_folder
    target = member.class_names[2]
    weighted = C.ClassifierEnsemble([member], decision_weights=(1e-4, 1e-4, 1.0))
    classify_folder(images, tmp_path / "out", classifier=C.ClassifierPredictor.of(weighted), masks_dir=masks,
                    progress=False, measure=False)
    with open(tmp_path / "out" / "classification.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {r["predicted_label"] for r in rows} == {target}


def test_bad_weights_are_refused(member):
    for bad in ((1.0, 2.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0), "abc"):
        with pytest.raises(ConfigError, match="decision_weights"):
            C.ClassifierEnsemble([member], decision_weights=bad)


def test_prior_weights_are_the_inverse_prior_to_the_power_tau_and_need_every_count():
    from skinseg.models.config import prior_decision_weights

    w = prior_decision_weights({"nv": 6, "mel": 3, "df": 1}, ["df", "mel", "nv"], 0.5)
    assert w == pytest.approx([10 ** 0.5, (10 / 3) ** 0.5, (10 / 6) ** 0.5])
    assert prior_decision_weights({"a": 1, "b": 9}, ["a", "b"], 0.0) == [1.0, 1.0]
    with pytest.raises(ConfigError, match="training count"):
        prior_decision_weights({"a": 1}, ["a", "b"], 0.5)
