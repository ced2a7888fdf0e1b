"""Colour constancy in the classifier: stored in its config, applied before the crop in
training and inference, and selectable in ``skinseg train-classifier``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import skinseg.classify as C
from skinseg.errors import ConfigError
from skinseg.preprocess import normalize_color
from skinseg.testing import synthetic_lesion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cast_lesion():
    image, mask = synthetic_lesion((96, 128), rng=3)
    return np.clip(image * np.array([1.0, 0.8, 0.65]), 0, 255).astype(np.uint8), mask


@pytest.mark.parametrize("mode", ["full", "dilated_bbox", "mask_channel"])
def test_crop_of_the_normalised_image(cast_lesion, mode):
    image, mask = cast_lesion
    plain = C.ClassifierConfig(crop_mode=mode, input_size=64)
    sog = C.ClassifierConfig(crop_mode=mode, input_size=64, color_norm="shades_of_gray")
    before = image.copy()
    crop, _ = C.prepare_crop(image, mask, sog)
    np.testing.assert_array_equal(crop, C.prepare_crop(normalize_color(image), mask, plain)[0])
    assert not np.array_equal(crop, C.prepare_crop(image, mask, plain)[0])
    np.testing.assert_array_equal(image, before)


def test_config_round_trip_and_old_configs(tmp_path, cast_lesion):
    model = C.create_classifier(pretrained=False, input_size=64, color_norm="shades_of_gray")
    assert model.config.color_norm == "shades_of_gray"
    C.save_classifier(model, tmp_path / "m")
    again = C.load_classifier(tmp_path / "m")
    assert again.config == model.config
    image, mask = cast_lesion
    expected = C.predict_proba(model.eval(), image, mask)
    np.testing.assert_allclose(C.predict_proba(again, image, mask), expected, atol=1e-6)
    old = model.config.to_dict()
    del old["color_norm"]  # written by skinseg before colour constancy existed
    assert C.ClassifierConfig.from_dict(old).color_norm is None
    with pytest.raises(ConfigError, match="color_norm"):
        C.ClassifierConfig(color_norm="grey_world")


@pytest.mark.slow
def test_train_classifier_cli_color_norm(tmp_path):
    from skinseg.cli import main
    from skinseg.io import write_image, write_mask

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,split,label"]
    for i in range(9):
        image, mask = synthetic_lesion((48, 64), rng=i)
        write_image(root / "images" / f"im{i}.jpg", image)
        write_mask(root / "masks" / f"im{i}.png", mask)
        rows.append(f"im{i},{'train' if i < 6 else 'val'},{C.CLASS_NAMES[i % 3]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    base = ["train-classifier", "--data", str(root), "--epochs", "1", "--batch-size", "3", "--threads", "1"]
    assert main([*base, "--input-size", "64", "--pretrained", "none", "--color-norm", "shades_of_gray",
                 "--out", str(tmp_path / "run")]) == 0
    best = tmp_path / "run" / "best"
    assert C.load_classifier(best).config.color_norm == "shades_of_gray"
    # fine-tuning keeps the stored setting; it cannot be switched on top of a checkpoint
    assert main([*base, "--init-from", str(best), "--out", str(tmp_path / "ft")]) == 0
    assert C.load_classifier(tmp_path / "ft" / "best").config.color_norm == "shades_of_gray"


def test_ensemble_temperature_rescales_probabilities_and_round_trips(tmp_path, cast_lesion):
    from skinseg.metrics.calibration import apply_temperature

    image, mask = cast_lesion
    torch.manual_seed(0)
    kinds = ("full", "mask_channel")
    members = [C.create_classifier(pretrained=False, input_size=64, crop_mode=m) for m in kinds]
    plain = C.ClassifierEnsemble(members).eval()
    assert plain.temperature == 1.0
    sharp = C.ClassifierEnsemble(members, temperature=0.5).eval()
    p, q = C.predict_proba_batch(plain, [image, image[::-1]], [mask, mask[::-1]]), C.predict_proba_batch(
        sharp, [image, image[::-1]], [mask, mask[::-1]])
    np.testing.assert_allclose(q, apply_temperature(p, 0.5), atol=1e-6)
    assert (q.argmax(1) == p.argmax(1)).all() and q.max() > p.max()
    C.save_classifier(sharp, tmp_path / "ens")
    again = C.load_classifier(tmp_path / "ens")
    assert again.temperature == 0.5
    np.testing.assert_allclose(C.predict_proba(again, image, mask), q[0], atol=1e-6)
    for bad in (0, -1.0, True, "2"):
        with pytest.raises(ConfigError, match="temperature"):
            C.ClassifierEnsemble(members, temperature=bad)
