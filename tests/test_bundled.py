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
CC0_TEMPERATURE = 0.9791  # classifier-isic2017-cc0 (one member since the seven-class default took two)


def test_bundled_weights_fit_the_60_mb_budget_and_hold_no_code():
    files = list(WEIGHTS.rglob("*"))
    weights = [f for f in files if f.is_file() and f.suffix != ".json"]
    # safetensors (torch) and ONNX protobufs (ONNX Runtime): neither format runs code when loaded
    assert weights and all(f.suffix in (".safetensors", ".onnx") for f in weights)
    assert sum(f.stat().st_size for f in weights) <= 60_000_000  # every shipped model together, 60 MB


@pytest.mark.parametrize("name", ["default", "deeplabv3plus"])
def test_bundled_int8_export_is_within_the_accuracy_gate_on_the_examples(name):
    """A shipped int8 model (the default on the CPU) against fp32 torch, same TTA, on the bundled
    example images with expert masks; the gate on the val splits is benchmarks/backend_accuracy.py."""
    from skinseg.inference import Predictor, load_backend
    from skinseg.metrics import thresholded_jaccard

    int8 = Predictor(load_backend(name, backend="onnx", precision="int8"))
    fp32 = Predictor(load_backend(name, backend="torch"))
    assert int8.backend.precision == "int8" and int8.tta and fp32.tta
    d8, d32, j8, j32 = [], [], [], []
    for image_path in sorted((EXAMPLES / "images").glob("*.jpg")):
        image = ss.read_image(image_path)
        truth = ss.read_mask(EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
        m8, m32 = int8.segment(image), fp32.segment(image)
        d8.append(dice_score(m8, truth))
        d32.append(dice_score(m32, truth))
        j8.append(thresholded_jaccard(m8, truth))
        j32.append(thresholded_jaccard(m32, truth))
        assert dice_score(m8, m32) > 0.98  # the same masks up to a few boundary pixels
    assert np.mean(d32) - np.mean(d8) <= 0.002 and np.mean(j32) - np.mean(j8) <= 0.005


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


def test_deeplabv3plus_is_bundled_and_segments_the_example_images():
    model = ss.load_segmenter("deeplabv3plus")
    assert model.config.arch == "deeplabv3plus"
    scores = []
    for image_path in sorted((EXAMPLES / "images").glob("*.jpg")):
        image = ss.read_image(image_path)
        truth = ss.read_mask(EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
        scores.append(dice_score(ss.segment(model, image), truth))
    assert np.mean(scores) >= 0.8, scores


def test_default_classifier_is_the_seven_diagnosis_model_and_the_cc0_one_stays_selectable():
    from skinseg.models.checkpoint import bundled_model_dir

    clf = ss.load_classifier("default")
    assert tuple(clf.class_names) == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert bundled_model_dir("default", "classifier") == bundled_model_dir("classifier-ham10000-7class", "classifier")
    cc0 = ss.load_classifier("classifier-isic2017-cc0")
    assert tuple(cc0.class_names) == ("melanoma", "nevus", "seborrheic_keratosis")
    assert bundled_model_dir("classifier-isic2017-cc0", "classifier") != bundled_model_dir("default", "classifier")
    image_path = sorted((EXAMPLES / "images").glob("*.jpg"))[0]
    image = ss.read_image(image_path)
    mask = ss.read_mask(EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
    for model in (clf, cc0):
        out = ss.classify.predict(model, image, mask)
        assert set(out) == set(model.class_names) and abs(sum(out.values()) - 1) < 1e-5


def test_the_default_classifier_takes_optional_metadata():
    """Two members, TTA off by default, a metadata model fitted on HAM10000 train (alpha 0.25, chosen on val)."""
    import skinseg.classify as C

    clf = ss.load_classifier("default")
    assert len(clf.members) == 2 and clf.tta is False
    mm = clf.metadata_model
    assert mm is not None and mm.alpha == 0.25 and mm.class_names == clf.class_names
    assert {"back", "face", "lower extremity", "trunk"} <= set(mm.sites) and "unknown" not in mm.sites
    image_path = sorted((EXAMPLES / "images").glob("*.jpg"))[0]
    image = ss.read_image(image_path)
    mask = ss.read_mask(EXAMPLES / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
    alone = C.predict_proba(clf, image, mask)
    old_face = C.predict_proba(clf, image, mask, metadata={"age": 80, "sex": "male", "site": "face"})
    young_back = C.predict_proba(clf, image, mask, metadata={"age": 25, "sex": "female", "site": "back"})
    np.testing.assert_allclose(C.predict_proba(clf, image, mask, metadata={"sex": "unknown"}), alone)
    akiec, nv = clf.class_names.index("akiec"), clf.class_names.index("nv")
    # actinic keratoses are lesions of old, sun-exposed skin; nevi of the young trunk
    assert old_face[akiec] / alone[akiec] > 1 > young_back[akiec] / alone[akiec]
    assert young_back[nv] / alone[nv] > old_face[nv] / alone[nv]


def test_the_seven_diagnosis_classifier_is_bundled_with_its_class_metadata_and_decision_weights():
    import json

    import skinseg.classify as C

    clf = ss.load_classifier("classifier-ham10000-7class")
    assert tuple(clf.class_names) == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    info = {c.code: c for c in clf.members[0].config.classes}
    assert {c for c, i in info.items() if i.malignant} == {"akiec", "bcc", "mel"} and info["mel"].melanoma
    # the metadata is stored with the model, not supplied by the library's table of known codes
    stored = json.loads((WEIGHTS / "classifier7_lite0" / "member0" / "config.json").read_text())["config"]
    assert [c["code"] for c in stored["class_info"]] == list(clf.class_names)
    # decision weights (prior^-tau) favour the rare classes and leave the probabilities alone
    w = np.asarray(clf.decision_weights)
    assert w[clf.class_names.index("df")] > w[clf.class_names.index("nv")] > 0
    images = [ss.read_image(p) for p in sorted((EXAMPLES / "images").glob("*.jpg"))]
    masks = [ss.read_mask(EXAMPLES / "masks" / f"{p.stem}_segmentation.png", shape=im.shape[:2])
             for p, im in zip(sorted((EXAMPLES / "images").glob("*.jpg")), images, strict=True)]
    probs = np.array([C.predict_proba(clf, im, m) for im, m in zip(images, masks, strict=True)])
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    labels = [C.predict_label(clf, im, m) for im, m in zip(images, masks, strict=True)]
    assert labels == [clf.class_names[int(np.argmax(p * w))] for p in probs]


@pytest.mark.parametrize("name, temperature", [("default", 0.8055), ("classifier-isic2017-cc0", CC0_TEMPERATURE)])
def test_bundled_classifiers_ship_their_val_temperature(name, temperature):
    """Each bundled classifier ships the temperature fitted on val (NLL); the card documents it.

    The temperature comes from ensemble.json; predictions are the members' mean probabilities
    sharpened by it (softmax(log p / T)), with the same argmax.
    """
    import skinseg.classify as C
    from skinseg.metrics.calibration import apply_temperature

    clf = ss.load_classifier(name)
    assert 0.5 < clf.temperature < 1.0
    assert clf.temperature == pytest.approx(temperature)
    images = [ss.read_image(p) for p in sorted((EXAMPLES / "images").glob("*.jpg"))]
    got = C.predict_proba_batch(clf, images)
    mean = np.mean([C.predict_proba_batch(m, images) for m in clf.members], axis=0)
    np.testing.assert_allclose(got, apply_temperature(mean, clf.temperature), atol=1e-5)
    assert (got.argmax(1) == mean.argmax(1)).all() and (got.max(1) >= mean.max(1) - 1e-6).all()


def test_every_bundled_model_is_listed_with_data_licence_and_score():
    """`skinseg models` (and ss.bundled_models()) names every shipped model with what a user needs to choose."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    models = ss.bundled_models()
    assert {m["kind"] for m in models} == {"segmenter", "classifier"}
    for m in models:
        for key in ("title", "architecture", "training_data", "licence", "headline", "card"):
            assert m[key], f"bundled {m['kind']} {m['name']!r} lacks '{key}'"
        assert (repo / m["card"]).is_file()
        if "HAM10000" in m["training_data"]:  # CC BY-NC 4.0 data: the licence entry must say so
            assert "non-commercial" in m["licence"].lower()
        loader = ss.load_segmenter if m["kind"] == "segmenter" else ss.load_classifier
        assert loader(m["name"]) is not None
    # a user who needs weights trained on CC0 data only finds them by name, one of each kind
    for kind in ("segmenter", "classifier"):
        cc0 = [m for m in models if m["kind"] == kind and m["name"].endswith("-cc0")]
        assert cc0 and all("HAM10000" not in m["training_data"] for m in cc0)
    out = subprocess.run([sys.executable, "-m", "skinseg", "models", "--format", "json"], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == models
    text = subprocess.run([sys.executable, "-m", "skinseg", "models"], capture_output=True, text=True, check=True)
    assert all(m["name"] in text.stdout for m in models) and "non-commercial" in text.stdout
