"""A classifier ensemble's stored flip-TTA default: saved, loaded, fingerprinted, used unless a caller overrides it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")

import skinseg.classify as C  # noqa: E402
from skinseg.errors import CheckpointError, ConfigError  # noqa: E402
from skinseg.models.checkpoint import checkpoint_fingerprint, model_fingerprint  # noqa: E402
from skinseg.testing import synthetic_lesion  # noqa: E402


@pytest.fixture(scope="module")
def member(tiny_classifier_checkpoint):
    return C.load_classifier(tiny_classifier_checkpoint)


@pytest.fixture(scope="module")
def lesion():
    return synthetic_lesion((70, 90), rng=5)


def test_the_stored_default_is_saved_loaded_and_used(member, lesion, tmp_path):
    image, mask = lesion
    with_tta = C.ClassifierEnsemble([member], tta=True)
    assert with_tta.tta and not C.ClassifierEnsemble([member]).tta
    p_tta = C.predict_proba(member, image, mask, tta=True)
    p_plain = C.predict_proba(member, image, mask, tta=False)
    assert not np.allclose(p_tta, p_plain)  # the flips change this tiny model's answer
    np.testing.assert_allclose(C.predict_proba(with_tta, image, mask), p_tta, rtol=1e-6)
    np.testing.assert_allclose(C.predict_proba(with_tta, image, mask, tta=False), p_plain, rtol=1e-6)

    folder = C.save_classifier(with_tta, tmp_path / "ens")
    assert json.loads((folder / "ensemble.json").read_text())["tta"] is True
    assert C.load_classifier(folder).tta is True
    predictor = C.ClassifierPredictor.load(folder, backend="torch")
    assert predictor.tta is True
    assert C.ClassifierPredictor.load(folder, backend="torch", tta=False).tta is False
    assert C.ClassifierPredictor.of(str(folder), backend="torch").tta is True
    np.testing.assert_allclose(predictor.predict_proba(image, mask), p_tta, rtol=1e-5, atol=1e-6)


def test_an_ensemble_without_the_key_keeps_tta_off(member, tmp_path):
    folder = C.save_classifier(C.ClassifierEnsemble([member]), tmp_path / "ens")
    assert "tta" not in json.loads((folder / "ensemble.json").read_text())
    assert C.load_classifier(folder).tta is False
    assert C.ClassifierPredictor.load(folder, backend="torch").tta is False
    assert C.ClassifierPredictor.of(member).tta is False


def test_the_default_is_part_of_the_fingerprint(member, tmp_path):
    plain, with_tta = C.ClassifierEnsemble([member]), C.ClassifierEnsemble([member], tta=True)
    assert model_fingerprint(plain) != model_fingerprint(with_tta)
    folder = C.save_classifier(with_tta, tmp_path / "ens")
    assert checkpoint_fingerprint(folder, "classifier") == model_fingerprint(with_tta)
    assert checkpoint_fingerprint(C.save_classifier(plain, tmp_path / "plain"), "classifier") == \
        model_fingerprint(plain)


def test_a_bad_stored_value_is_refused_naming_the_file(member, tmp_path):
    folder = C.save_classifier(C.ClassifierEnsemble([member]), tmp_path / "ens")
    payload = json.loads((folder / "ensemble.json").read_text())
    payload["tta"] = "yes"
    (folder / "ensemble.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=r"ensemble\.json.*tta"):
        C.load_classifier(folder)
    with pytest.raises(CheckpointError, match=r"ensemble\.json.*tta"):
        C.ClassifierPredictor.load(folder, backend="torch")
    with pytest.raises(ConfigError, match="tta"):
        C.ClassifierEnsemble([member], tta="yes")


def test_classify_uses_the_stored_default_and_records_it(member, lesion_folder, tmp_path, capsys):
    from skinseg.cli import main

    images, masks = lesion_folder
    folder = C.save_classifier(C.ClassifierEnsemble([member], tta=True), tmp_path / "ens")
    probs = {}
    for name, flag in (("default", []), ("on", ["--tta"]), ("off", ["--no-tta"])):
        out = tmp_path / name
        assert main(["classify", str(images), "-o", str(out), "--classifier", str(folder), "--masks", str(masks),
                     "--no-measure", *flag]) == 0
        with open(out / "classification.csv", newline="", encoding="utf-8") as fh:
            probs[name] = [r[f"p_{member.class_names[0]}"] for r in csv.DictReader(fh)]
    assert probs["default"] == probs["on"] != probs["off"]
    capsys.readouterr()
    # the default run recorded tta on: --tta resumes it, --no-tta is another setting
    assert main(["classify", str(images), "-o", str(tmp_path / "default"), "--classifier", str(folder),
                 "--masks", str(masks), "--no-measure", "--tta"]) == 0
    assert main(["classify", str(images), "-o", str(tmp_path / "default"), "--classifier", str(folder),
                 "--masks", str(masks), "--no-measure", "--no-tta"]) == 2
    assert "classifier_tta: True -> False" in capsys.readouterr().err
