"""The classifier's inference core (ClassifierPredictor): ONNX export on demand into the cache, parity with
torch, the segmenter's backend protocol and defaults, class metadata (a tiny seven-class model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skinseg.errors import ConfigError
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
import skinseg.classify as C  # noqa: E402

HAM = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    ens = C.ClassifierEnsemble([
        C.create_classifier(pretrained=False, input_size=64),
        C.create_classifier(pretrained=False, input_size=64, crop_mode="mask_channel"),
    ], temperature=0.8)
    return C.save_classifier(ens, tmp_path_factory.mktemp("clf") / "ens")


@pytest.fixture(scope="module")
def seven_class_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = C.create_classifier(pretrained=False, input_size=64, class_names=HAM)
    with torch.no_grad():  # spread the logits so the classes differ
        model.network.get_classifier().weight.normal_(0, 0.5)
    return C.save_classifier(model, tmp_path_factory.mktemp("ham") / "clf")


def test_onnx_members_are_exported_into_the_cache_once_and_agree_with_torch(ensemble_dir, tmp_path, monkeypatch):
    from skinseg.inference import onnx as onnx_mod
    from skinseg.models import checkpoint_fingerprint

    images = [synthetic_lesion((60 + 7 * i, 80 - 5 * i), rng=i) for i in range(3)]
    reference = C.predict_proba_batch(C.load_classifier(ensemble_dir), [im for im, _ in images],
                                      [m for _, m in images])
    cache = tmp_path / "cache"
    onnx = C.ClassifierPredictor.load(ensemble_dir, cache_dir=cache)
    assert [m.name for m in onnx.members] == ["onnx", "onnx"] and not cache.exists()  # exported when first run
    got = onnx.predict_proba_batch([im for im, _ in images], [m for _, m in images])
    assert np.abs(got - reference).max() < 1e-4
    member_fps = [checkpoint_fingerprint(ensemble_dir / f"member{i}", "classifier") for i in range(2)]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"classifier-{fp[:32]}.onnx" for fp in member_fps)
    assert onnx.fingerprint == checkpoint_fingerprint(ensemble_dir, "classifier")
    assert onnx.settings() == {"model": onnx.fingerprint, "backend": "onnx", "precision": "fp32", "tta": False}
    monkeypatch.setattr(onnx_mod, "export_onnx_bytes", lambda *a, **k: pytest.fail("exported again"))
    again = C.ClassifierPredictor.load(ensemble_dir, cache_dir=cache)
    assert [m.path.parent for m in again.members] == [cache, cache]
    np.testing.assert_array_equal(again.predict_proba_batch([im for im, _ in images], [m for _, m in images]), got)
    torch_run = C.ClassifierPredictor.load(ensemble_dir, backend="torch")
    assert torch_run.settings()["backend"] == "torch" and torch_run.fingerprint == onnx.fingerprint
    np.testing.assert_allclose(torch_run.predict_proba_batch([im for im, _ in images], [m for _, m in images]),
                               reference, atol=1e-6)


def test_tta_averages_the_flips_of_each_crop(ensemble_dir):
    image, mask = synthetic_lesion((70, 90), rng=4)
    model = C.load_classifier(ensemble_dir)
    with_tta = C.ClassifierPredictor.of(model, tta=True).predict_proba(image, mask)
    np.testing.assert_allclose(with_tta, C.predict_proba(model, image, mask, tta=True), atol=1e-6)
    member = model.members[0]
    x = C.crops_to_tensor(C.prepare_crop(image, mask, member.config)[0][None], member.config)
    with torch.no_grad():
        views = [torch.softmax(member(x.flip(d) if d else x), 1)[0].numpy() for d in ((), (-1,), (-2,), (-1, -2))]
    np.testing.assert_allclose(C.predict_proba(member, image, mask, tta=True), np.mean(views, 0), atol=1e-6)


def test_an_int8_export_next_to_the_weights_is_used_only_when_made_from_them(ensemble_dir, tmp_path):
    """The door for a gated int8 classifier: a member's model-int8.onnx with its fingerprint (auto picks it)."""
    import shutil

    from skinseg.inference import MODEL_ONNX_INT8_FILE, export_onnx_bytes, int8_available
    from skinseg.models import checkpoint_fingerprint

    ckpt = Path(shutil.copytree(ensemble_dir / "member0", tmp_path / "single"))
    assert not int8_available(ckpt, kind="classifier")
    assert C.ClassifierPredictor.load(ckpt).settings()["precision"] == "fp32"
    # stands in for a quantized file: the metadata says int8 and names the weights it came from
    import onnx

    data, _ = export_onnx_bytes(C.load_classifier(ckpt), source_fingerprint=checkpoint_fingerprint(ckpt, "classifier"))
    proto = onnx.load_from_string(data)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "skinseg_precision", "int8"
    (ckpt / MODEL_ONNX_INT8_FILE).write_bytes(proto.SerializeToString())
    assert int8_available(ckpt, kind="classifier")
    assert C.ClassifierPredictor.load(ckpt).settings()["precision"] == "int8"
    assert C.ClassifierPredictor.load(ckpt, precision="fp32").settings()["precision"] == "fp32"


def test_seven_class_metadata_comes_from_the_model(seven_class_dir):
    model = C.load_classifier(seven_class_dir)
    predictor = C.ClassifierPredictor.of(model)
    assert predictor.class_names == HAM and model.config.melanoma_class == "mel"
    assert [c.code for c in predictor.classes if c.malignant] == ["akiec", "bcc", "mel"]
    image, mask = synthetic_lesion((64, 64), rng=2)
    p = C.predict(model, image, mask)
    assert list(p) == list(HAM) and abs(sum(p.values()) - 1) < 1e-5
    custom = C.create_classifier(pretrained=False, input_size=64, class_names=("lesion_a", "lesion_b"),
                                 class_info=[{"code": "lesion_a", "name": "A", "malignant": True, "melanoma": True},
                                             {"code": "lesion_b", "name": "B", "malignant": False}])
    assert custom.config.melanoma_class == "lesion_a" and custom.classes[1].name == "B"
    with pytest.raises(ConfigError, match="in that order"):
        C.ClassifierConfig(class_names=("a", "b"), class_info=[{"code": "b", "name": "B", "malignant": False},
                                                                {"code": "a", "name": "A", "malignant": False}])


def test_class_info_keeps_the_bundled_model_and_its_fingerprint_unchanged():
    from skinseg.models import checkpoint_fingerprint

    config = C.ClassifierConfig()
    assert "class_info" not in config.to_dict()
    assert [c.name for c in config.classes] == ["melanoma", "melanocytic nevus", "seborrheic keratosis"]
    assert config.melanoma_class == "melanoma"
    bundled = C.load_classifier("default")
    from skinseg.models import model_fingerprint

    assert model_fingerprint(bundled) == checkpoint_fingerprint("default", "classifier")


def test_the_classifier_core_imports_no_torch():
    code = ("import sys\nimport skinseg.classify, skinseg.runs.classify\n"
            "from skinseg.classify import ClassifierPredictor\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "False"


def test_a_predictor_refuses_what_is_not_a_classifier():
    from skinseg.models import create_segmenter

    with pytest.raises(ConfigError, match="Classifier or ClassifierEnsemble"):
        C.ClassifierPredictor.of(object())
    seg = create_segmenter("unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8))
    with pytest.raises(ConfigError, match="must be classifiers"):
        C.ClassifierPredictor([seg])
