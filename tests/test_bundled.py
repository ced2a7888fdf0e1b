"""The models shipped inside the package: they load offline, stay under the size budget,
and do their job on the bundled example images (real ISIC 2017 images with expert masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skinseg as ss
from skinseg.metrics import dice_score

pytest.importorskip("torch")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WEIGHTS = Path(ss.__file__).resolve().parent / "weights"


def test_bundled_weights_fit_the_30_mb_budget_and_are_safetensors():
    files = list(WEIGHTS.rglob("*"))
    weights = [f for f in files if f.is_file() and f.suffix != ".json"]
    assert weights and all(f.suffix == ".safetensors" for f in weights)
    assert sum(f.stat().st_size for f in weights) <= 30 * 2**20


def test_default_segmenter_segments_the_example_images():
    model = ss.load_segmenter("default")
    assert model.config.arch == "unet" and model.config.encoder_name == "tu-efficientnet_lite0"
    scores = []
    for image_path in sorted((EXAMPLES / "images").glob("*.jpg")):
        image = ss.read_image(image_path)
        truth = ss.read_mask(
            EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2]
        )
        mask = ss.segment(model, image)
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        scores.append(dice_score(mask, truth))
    assert len(scores) == 4 and np.mean(scores) >= 0.8, scores


def test_default_classifier_predicts_the_three_diagnoses():
    clf = ss.load_classifier("default")
    assert tuple(clf.class_names) == ("melanoma", "nevus", "seborrheic_keratosis")
    image_path = sorted((EXAMPLES / "images").glob("*.jpg"))[0]
    image = ss.read_image(image_path)
    mask = ss.read_mask(EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
    out = ss.classify.predict(clf, image, mask)
    assert set(out) == set(clf.class_names) and abs(sum(out.values()) - 1) < 1e-5
