"""Inference maps back exactly, TTA inverses are exact, batching equals single images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import skinseg as ss
from skinseg._geometry import box_hw, fit_size
from skinseg.errors import ConfigError, InvalidImageError
from skinseg.inference import Predictor


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ss.create_segmenter("unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8),
                               input_size=64)


def test_fit_size_keeps_aspect_and_fits_box():
    assert box_hw(256) == (192, 256)
    for h, w in [(768, 1024), (1024, 768), (512, 512), (100, 3000), (1, 1)]:
        fh, fw = fit_size(h, w, 256)
        assert max(fh, fw) <= 256 and min(fh, fw) <= 192
        assert abs(fh / fw - h / w) < 0.05 * (h / w) + 2 / min(fw, fh) or (fh, fw) in [(1, 1)] or min(fh, fw) <= 9


@pytest.mark.parametrize("hw", [(301, 457), (457, 301), (47, 65)], ids=str)
def test_predict_proba_exact_size(model, hw):
    image = np.random.default_rng(0).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    before = image.copy()
    prob = ss.predict_proba(model, image)
    assert prob.shape == hw and prob.dtype == np.float32
    assert np.array_equal(image, before)


def test_constant_probability_maps_back_unchanged(model):
    """A model whose output is a known pattern at model resolution maps back by crop + resize only."""
    from skinseg.inference import probabilities_to_image_size

    small = np.zeros((64, 64), np.float32)
    small[:48, :64] = 0.25  # valid region (48, 64); padding below is ignored
    out = probabilities_to_image_size(small, (48, 64), (301, 401))
    assert out.shape == (301, 401)
    assert np.allclose(out, 0.25)


def test_tta_inverse_is_exact(model):
    """TTA of a flip-equivariant check: TTA prob of a flipped image equals the flipped TTA prob."""
    image = np.random.default_rng(2).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    p = ss.predict_proba(model, image, tta=True)
    pf = ss.predict_proba(model, np.ascontiguousarray(image[:, ::-1]), tta=True)
    np.testing.assert_allclose(pf, p[:, ::-1], atol=1e-5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        single = torch.sigmoid(model(x))[:, 0].numpy()
    prepared = Predictor(model).prepare_preprocessed(np.zeros((64, 64, 3), np.uint8))
    prepared = type(prepared)(x[0].numpy(), (64, 64), (64, 64))
    # without TTA the core returns the plain forward; with TTA the mean of the four flips, each undone
    np.testing.assert_allclose(Predictor(model, tta=False).predict_prepared([prepared])[0], single[0], atol=1e-6)
    with torch.no_grad():
        flips = [torch.flip(torch.sigmoid(model(torch.flip(x, d))), d)[0, 0].numpy() for d in ((), (3,), (2,), (2, 3))]
    np.testing.assert_allclose(Predictor(model, tta=True).predict_prepared([prepared])[0], np.mean(flips, 0),
                               atol=1e-6)


def test_stored_tta_default_is_used_and_can_be_overridden(model, tmp_path):
    image = np.random.default_rng(5).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    plain, flipped = ss.predict_proba(model, image, tta=False), ss.predict_proba(model, image, tta=True)
    assert not np.allclose(plain, flipped, atol=1e-4)  # a random net is not flip-invariant
    np.testing.assert_array_equal(ss.predict_proba(model, image), plain)  # config.tta is False by default
    on = copy.deepcopy(model)
    on.config = on.config.replace(tta=True)
    np.testing.assert_allclose(ss.predict_proba(on, image), flipped, atol=1e-6)
    np.testing.assert_allclose(ss.predict_proba(on, image, tta=False), plain, atol=1e-6)
    np.testing.assert_array_equal(ss.segment(on, image), ss.segment(on, image, tta=True))
    # the stored default survives a save/load round trip
    ss.save_checkpoint(on, tmp_path / "m")
    back = ss.load_segmenter(tmp_path / "m")
    assert back.config.tta is True
    np.testing.assert_allclose(ss.predict_proba(back, image), flipped, atol=1e-5)
    with pytest.raises(ConfigError, match="tta"):
        ss.predict_proba(model, image, tta="yes")
    with pytest.raises(ConfigError, match="tta"):
        on.config.replace(tta=1)


def test_batch_equals_single(model):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(60, 80, 3), (80, 60, 3), (60, 80, 3), (33, 33, 3)]]
    batch = ss.predict_proba_batch(model, images, batch_size=3)
    for im, p in zip(images, batch, strict=True):
        np.testing.assert_allclose(p, ss.predict_proba(model, im), atol=1e-5)


def test_segment_returns_bool_mask(model):
    image = np.random.default_rng(4).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    mask = ss.segment(model, image, threshold=0.5)
    assert mask.shape == (70, 90) and mask.dtype == bool
    prob = ss.predict_proba(model, image)
    loose = ss.segment(model, image, threshold=0.01, largest_component=False, fill_holes=False)
    assert np.array_equal(loose, prob >= 0.01)


def test_bad_inputs(model):
    with pytest.raises(InvalidImageError, match="alpha"):
        ss.predict_proba(model, np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(InvalidImageError, match="uint8"):
        ss.predict_proba(model, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError):
        ss.predict_proba(model, [[1, 2, 3]])
    with pytest.raises(ConfigError, match="list"):
        ss.predict_proba_batch(model, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="Segmenter"):
        ss.predict_proba(torch.nn.Conv2d(3, 1, 1), np.zeros((8, 8, 3), np.uint8))


def test_predictor_of_keeps_a_predictor_and_wraps_a_model(model):
    ready = ss.Predictor(model, tta=True, batch_size=8)
    assert ss.Predictor.of(ready) is ready
    assert ss.Predictor.of(ready, tta=True, batch_size=8) is ready  # nothing to change
    other = ss.Predictor.of(ready, threshold=0.3)
    assert (other.backend, other.tta, other.batch_size, other.threshold) == (ready.backend, True, 8, 0.3)
    no_tta = ss.Predictor.of(ready, tta=False)  # what a function's tta= asks for replaces the Predictor's own
    assert (no_tta.backend, no_tta.tta, no_tta.batch_size) == (ready.backend, False, 8)
    wrapped = ss.Predictor.of(model, tta=False, batch_size=2)
    assert isinstance(wrapped, ss.Predictor) and (wrapped.tta, wrapped.batch_size) == (False, 2)
    with pytest.raises(ConfigError, match="checkpoint path or name"):
        ss.Predictor.of(model, backend="onnx")
    with pytest.raises(ConfigError, match="ready Predictor"):
        ss.Predictor.of(ready, precision="fp32")


def test_predictor_of_a_name_loads_it_with_the_loaders_defaults():
    """One way to make a Predictor: a bundled name gets the same backend as Predictor.load and load_backend."""
    from skinseg.inference import DEFAULT_BACKEND, DEFAULT_PRECISION, load_backend

    by_name = ss.Predictor.of("default", tta=False)
    loaded = ss.Predictor.load("default", tta=False)
    backend = load_backend("default")
    assert (DEFAULT_BACKEND, DEFAULT_PRECISION) == ("auto", "auto")
    assert by_name.settings() == loaded.settings()
    assert (backend.name, backend.precision) == (loaded.backend.name, loaded.backend.precision) == ("onnx", "int8")


def test_the_former_preprocess_spellings_warn_and_still_work(model):
    image = np.random.default_rng(5).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    expected = ss.predict_proba(model, image, preprocess="model")
    with pytest.warns(FutureWarning, match="preprocess='model'"):
        np.testing.assert_array_equal(ss.predict_proba(model, image, preprocess=True), expected)
    with pytest.warns(FutureWarning, match="preprocess=None"):
        np.testing.assert_array_equal(ss.predict_proba(model, image, preprocess=False), expected)


def test_a_predictor_refuses_a_classifier():
    import skinseg.classify as C

    with pytest.raises(ConfigError, match="A Predictor runs a segmenter; got a classifier"):
        ss.Predictor(C.create_classifier(pretrained=False, input_size=64))


def test_every_backend_declares_what_its_users_read(model):
    """concurrency, threads and path are part of the Backend protocol (the stream and the Ray driver read them)."""
    from skinseg.inference import Backend, OnnxBackend, TorchBackend
    from skinseg.models.checkpoint import resolve_checkpoint

    onnx = OnnxBackend(resolve_checkpoint("default") / "model-int8.onnx")
    for backend in (TorchBackend(model), onnx, OnnxBackend(onnx.path.read_bytes(), threads=1)):
        assert isinstance(backend, Backend)
        assert isinstance(backend.concurrency, int) and backend.concurrency >= 1
        assert backend.threads is None or backend.threads >= 1
    assert (TorchBackend(model).path, onnx.path.name) == (None, "model-int8.onnx")
    assert "concurrency" in Backend.__annotations__ and "path" in Backend.__annotations__
