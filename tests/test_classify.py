"""The lesion classifier: construction with offline ImageNet weights, checkpoints,
ensembles, prediction, Grad-CAM and a small training run (tiny inputs only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import skinseg.classify as C
from skinseg.errors import CheckpointError, ConfigError
from skinseg.models.pretrained import load_lite0_imagenet_state_dict
from skinseg.testing import synthetic_lesion

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lesion():
    return synthetic_lesion((96, 128), rng=3)


def test_pretrained_backbone_gets_the_imagenet_weights_and_a_new_head():
    ref = load_lite0_imagenet_state_dict(include_head=True)
    model = C.create_classifier(pretrained=True, input_size=64)
    state = model.network.state_dict()
    for key in ("conv_stem.weight", "blocks.3.1.conv_pwl.weight", "conv_head.weight", "bn2.running_var"):
        torch.testing.assert_close(state[key], ref[key])
    assert state["classifier.weight"].shape == (3, 1280)
    random_init = C.create_classifier(pretrained=False, input_size=64).network.state_dict()
    assert not torch.equal(random_init["conv_stem.weight"], ref["conv_stem.weight"])


def test_new_head_starts_near_zero_so_the_first_loss_is_log_k(lesion):
    # timm's default head init gave a starting loss of ~3.7 on real crops; log 3 = 1.10
    torch.manual_seed(0)
    model = C.create_classifier(pretrained=True, input_size=64, crop_mode="full").eval()
    x = C.crops_to_tensor(
        np.stack([np.roll(lesion[0], 7 * i, axis=1)[:64, :64] for i in range(6)]), model.config
    )
    with torch.no_grad():
        logits = model(x)
    assert logits.abs().max() < 0.5
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert abs(loss.item() - np.log(3)) < 0.1
    # timm's own init (kept for reproducing older runs) starts far from log 3
    torch.manual_seed(0)
    old = C.create_classifier(pretrained=True, input_size=64, crop_mode="full", head_init="timm").eval()
    with torch.no_grad():
        assert old(x).abs().max() > 2.0
    with pytest.raises(ConfigError, match="head_init"):
        C.create_classifier(pretrained=False, input_size=64, head_init="zero")


def test_mask_channel_model_extends_the_stem_with_a_silent_channel():
    ref = load_lite0_imagenet_state_dict()["conv_stem.weight"]
    model = C.create_classifier(crop_mode="mask_channel", input_size=64)
    w = model.network.state_dict()["conv_stem.weight"]
    assert w.shape == (32, 4, 3, 3) and model.config.in_chans == 4
    torch.testing.assert_close(w[:, :3], ref)
    assert (w[:, 3] == 0).all()


def test_construction_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean"):
        C.create_classifier("efficientnet_lite9", pretrained=False)
    with pytest.raises(ConfigError, match="Offline ImageNet weights exist only"):
        C.create_classifier("resnet18", pretrained=True)
    with pytest.raises(CheckpointError, match="not found"):
        C.create_classifier(pretrained=tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="num_classes"):
        C.create_classifier(num_classes=2, class_names=("a", "b", "c"), pretrained=False)
    with pytest.raises(ConfigError, match="crop mode"):
        C.create_classifier(crop_mode="bbox", pretrained=False)


def test_predict_returns_probabilities_per_class(lesion):
    image, mask = lesion
    model = C.create_classifier(pretrained=False, input_size=64)
    out = C.predict(model, image, mask)
    assert list(out) == list(C.CLASS_NAMES)
    assert abs(sum(out.values()) - 1) < 1e-5 and all(0 <= v <= 1 for v in out.values())
    batch = C.predict_proba_batch(model, [image, image], [mask, mask])
    assert batch.shape == (2, 3)
    np.testing.assert_allclose(batch[0], list(out.values()), atol=1e-6)
    assert C.predict_label(model, image, mask) == max(out, key=out.get)
    with pytest.warns(FutureWarning, match="predict_proba_batch"):
        np.testing.assert_allclose(C.predict_proba(model, [image, image], [mask, mask]), batch, atol=1e-6)
    with pytest.raises(ConfigError, match="2 images but 1 masks"):
        C.predict_proba_batch(model, [image, image], [mask])
    with pytest.raises(ConfigError, match="Classifier"):
        C.predict_proba(object(), image, mask)
    tta = C.predict_proba(model, image, mask, tta=True)
    assert tta.shape == (3,) and abs(tta.sum() - 1) < 1e-5


def test_empty_mask_falls_back_to_the_whole_image_and_is_flagged(lesion):
    image, _ = lesion
    config = C.ClassifierConfig(input_size=64)
    crop, empty = C.prepare_crop(image, np.zeros(image.shape[:2], bool), config)
    assert empty and crop.shape == (64, 64, 3)
    _, empty = C.prepare_crop(image, None, config)
    assert empty


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 5e-3)])
def test_save_load_round_trip(tmp_path, lesion, dtype, tol):
    image, mask = lesion
    model = C.create_classifier(pretrained=False, input_size=64, crop_mode="mask_channel").eval()
    C.save_classifier(model, tmp_path / "clf", metadata={"note": "x"}, weights_dtype=dtype)
    loaded = C.load_classifier(tmp_path / "clf")
    assert loaded.config == model.config and loaded.metadata == {"note": "x"}
    np.testing.assert_allclose(
        C.predict_proba(loaded, image, mask), C.predict_proba(model, image, mask), atol=tol
    )


def test_ensemble_averages_members_and_round_trips(tmp_path, lesion):
    image, mask = lesion
    a = C.create_classifier(pretrained=False, input_size=64, crop_mode="dilated_bbox").eval()
    b = C.create_classifier(pretrained=False, input_size=96, crop_mode="full").eval()
    ens = C.ClassifierEnsemble([a, b])
    expected = (C.predict_proba(a, image, mask) + C.predict_proba(b, image, mask)) / 2
    np.testing.assert_allclose(C.predict_proba(ens, image, mask), expected, atol=1e-6)
    C.save_classifier(ens, tmp_path / "ens")
    loaded = C.load_classifier(tmp_path / "ens")
    assert isinstance(loaded, C.ClassifierEnsemble) and len(loaded.members) == 2
    np.testing.assert_allclose(C.predict_proba(loaded, image, mask), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="class_names"):
        C.ClassifierEnsemble([a, C.create_classifier(pretrained=False, class_names=("x", "y"))])


def test_loading_bad_checkpoints_fails_clearly(tmp_path):
    model = C.create_classifier(pretrained=False, input_size=64)
    d = C.save_classifier(model, tmp_path / "clf")
    w = d / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        C.load_classifier(d)
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "config.json").write_text(json.dumps({"format": "skinseg-segmenter", "config": {}}))
    (seg / "weights.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="load_segmenter"):
        C.load_classifier(seg)
    with pytest.raises(CheckpointError, match="not found"):
        C.load_classifier(tmp_path / "nothing" / "here")


def test_gradcam_is_a_normalised_map_inside_the_crop_box(lesion):
    from skinseg.crops import crop_box

    image, mask = lesion
    model = C.create_classifier(pretrained=True, input_size=64).eval()
    with (
        torch.no_grad()
    ):  # make "melanoma" the sum of the (non-negative) features: its Grad-CAM cannot vanish
        model.network.classifier.weight[0] = 1.0
    cam = C.gradcam(model, image, mask, target="melanoma")
    assert cam.shape == mask.shape and cam.dtype == np.float32
    assert 0 <= cam.min() and cam.max() <= 1 and cam.max() > 0
    y0, x0, y1, x1 = crop_box(mask, margin=model.config.margin)
    outside = np.ones_like(mask)
    outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
    assert (cam[outside] == 0).all()
    overlay = C.gradcam_overlay(image, cam)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8 and not np.array_equal(overlay, image)
    with pytest.raises(ValueError, match="Unknown class"):
        C.gradcam(model, image, mask, target="wart")


def test_class_weights_match_sklearn():
    sklearn_utils = pytest.importorskip("sklearn.utils.class_weight")
    y = np.array([0] * 30 + [1] * 120 + [2] * 15)
    ref = sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(C.class_weights(y, 3), ref, rtol=1e-6)
    with pytest.raises(ConfigError, match="Every class"):
        C.class_weights(np.array([0, 0, 1]), 3)


def _colour_crops(n, size, rng):
    """Two classes told apart by colour: reddish vs bluish squares with noise."""
    y = np.arange(n) % 2
    base = np.where(y[:, None], [60, 80, 200], [200, 70, 60]).astype(np.float32)
    x = base[:, None, None, :] + rng.normal(0, 10, (n, size, size, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_fit_learns_a_separable_task_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    xtr, ytr = _colour_crops(48, 64, rng)
    xva, yva = _colour_crops(16, 64, rng)
    model = C.create_classifier(pretrained=True, class_names=("red", "blue"), input_size=64)
    cfg = C.ClassifierTrainConfig(epochs=2, batch_size=8, lr=2e-3, warmup_epochs=0, seed=0)
    hist = C.fit_classifier(model, xtr, ytr, xva, yva, config=cfg, out_dir=tmp_path, progress=False)
    assert len(hist) == 2
    for name in (
        "best/weights.safetensors",
        "best/config.json",
        "last.pt",
        "history.csv",
        "learning_curve.png",
    ):
        assert (tmp_path / name).is_file()
    # resume: a 3-epoch schedule continues after epoch 2 instead of starting over
    model2 = C.create_classifier(pretrained=True, class_names=("red", "blue"), input_size=64)
    cfg3 = C.ClassifierTrainConfig(epochs=3, batch_size=8, lr=2e-3, warmup_epochs=0, seed=0)
    hist3 = C.fit_classifier(model2, xtr, ytr, xva, yva, config=cfg3, out_dir=tmp_path, progress=False)
    assert [h["epoch"] for h in hist3] == [1, 2, 3] and hist3[:2] == hist
    best = C.load_classifier(tmp_path / "best")
    p = C.predict_proba_crops(best, xva)
    assert (p.argmax(1) == yva).mean() >= 0.75  # chance is 0.5
    assert max(h["val_balanced_accuracy"] for h in hist3) >= 0.75


def test_train_classifier_cli_on_a_tiny_manifest(tmp_path):
    from skinseg.cli import main
    from skinseg.io import write_image, write_mask

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,split,label"]
    for i in range(12):
        image, mask = synthetic_lesion((48, 64), rng=i)
        write_image(root / "images" / f"im{i}.jpg", image)
        write_mask(root / "masks" / f"im{i}.png", mask)
        rows.append(
            f"im{i},{'train' if i < 8 else 'val'},{['melanoma', 'nevus', 'seborrheic_keratosis'][i % 3]}"
        )
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    code = main(
        [
            "train-classifier",
            "--data",
            str(root),
            "--input-size",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--pretrained",
            "none",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    model = C.load_classifier(tmp_path / "run" / "best")
    assert model.class_names == C.CLASS_NAMES
    assert model.metadata["training_data"]["n_images"] == 8
    assert (
        main(["train-classifier", "--data", str(root), "--val-split", "nope", "--out", str(tmp_path / "r2")])
        == 2
    )
    # --init-from continues from the checkpoint (its weights, classes and crop mode) at a new input size
    start = C.load_classifier(tmp_path / "run" / "best")
    args = [
        "train-classifier",
        "--data",
        str(root),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--max-batches",
        "1",
    ]
    assert (
        main(
            [
                *args,
                "--init-from",
                str(tmp_path / "run" / "best"),
                "--input-size",
                "96",
                "--out",
                str(tmp_path / "r3"),
            ]
        )
        == 0
    )
    cont = C.load_classifier(tmp_path / "r3" / "best")
    assert cont.config.input_size == 96 and cont.config.crop_mode == start.config.crop_mode
    assert cont.metadata["init_from"] == str(tmp_path / "run" / "best")
    a, b = start.network.state_dict(), cont.network.state_dict()
    # one small step away from the checkpoint, far closer to it than a fresh model is
    fresh = C.create_classifier(pretrained=False, input_size=64).network.state_dict()
    w = "conv_stem.weight"
    assert (b[w] - a[w]).norm() < 0.2 * (fresh[w] - a[w]).norm()
    for bad in (["--crop-mode", "masked"], ["--margin", "0.5"]):
        assert (
            main([*args, "--init-from", str(tmp_path / "run" / "best"), *bad, "--out", str(tmp_path / "r4")])
            == 2
        )
    C.save_classifier(C.ClassifierEnsemble([start, start]), tmp_path / "ens")
    assert main([*args, "--init-from", str(tmp_path / "ens"), "--out", str(tmp_path / "r5")]) == 2
