"""Shades-of-Gray colour constancy: known answers, invariants, the pipeline step and its config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skinseg.errors import ConfigError, InvalidImageError, UnknownNameError
from skinseg.preprocess import Preprocess, PreprocessConfig, normalize_color, remove_hair
from skinseg.preprocess.color import illuminant_shades_of_gray
from skinseg.testing import add_synthetic_hair, synthetic_lesion


@pytest.fixture(scope="module")
def lesion_image():
    return synthetic_lesion((96, 128), rng=0)[0]


def _cast(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.rint(np.clip(image * np.array(gains), 0, 255)).astype(np.uint8)


def test_shape_dtype_and_input_unmodified(odd_image):
    before = odd_image.copy()
    out = normalize_color(odd_image)
    assert out.shape == odd_image.shape and out.dtype == np.uint8 and out is not odd_image
    np.testing.assert_array_equal(odd_image, before)


def test_a_flat_coloured_image_becomes_grey():
    # e ∝ (200, 100, 50); every channel is scaled to ||(200, 100, 50)|| / sqrt(3) = 132.29
    image = np.empty((8, 8, 3), np.uint8)
    image[:] = (200, 100, 50)
    np.testing.assert_array_equal(normalize_color(image), np.full((8, 8, 3), 132, np.uint8))


def test_a_grey_illuminant_leaves_the_image_unchanged(rng):
    grey = np.repeat(rng.integers(0, 256, size=(32, 32, 1), dtype=np.uint8), 3, axis=2)
    np.testing.assert_array_equal(normalize_color(grey), grey)
    np.testing.assert_allclose(illuminant_shades_of_gray(grey), np.full(3, 1 / np.sqrt(3)))


@pytest.mark.parametrize("gains", [(1.0, 0.8, 0.6), (0.7, 0.9, 1.0), (0.9, 0.75, 0.85)],
                         ids=["warm", "cool", "magenta"])
def test_removes_a_colour_cast(lesion_image, gains):
    # The illuminant estimate is exact for a cast (power means are homogeneous), so the cast image
    # comes back with the original's chromaticity; only its overall intensity may differ.
    cast = _cast(lesion_image, gains)
    a, b = normalize_color(lesion_image).astype(float), normalize_color(cast).astype(float)
    chroma = lambda x: x / x.sum(axis=2, keepdims=True).clip(1)  # noqa: E731
    assert np.abs(chroma(a) - chroma(b)).mean() < 0.01
    assert np.abs(chroma(cast.astype(float)) - chroma(lesion_image.astype(float))).mean() > 0.02
    np.testing.assert_allclose(illuminant_shades_of_gray(cast) / illuminant_shades_of_gray(lesion_image),
                               np.array(gains) / np.linalg.norm(np.array(gains) * illuminant_shades_of_gray(
                                   lesion_image)), rtol=0.02)


def test_p_1_is_grey_world(lesion_image):
    out = normalize_color(_cast(lesion_image, (1.0, 0.7, 0.5)), p=1).reshape(-1, 3).mean(0)
    assert out.max() - out.min() < 1.5  # channel means equalised


def test_p_changes_the_estimate(lesion_image):
    e1, e6 = illuminant_shades_of_gray(lesion_image, p=1), illuminant_shades_of_gray(lesion_image, p=6)
    assert not np.allclose(e1, e6)


def test_black_image_is_left_black():
    black = np.zeros((4, 4, 3), np.uint8)
    np.testing.assert_array_equal(normalize_color(black), black)


@pytest.mark.parametrize("p", [0, 0.5, 100, float("nan"), True, "6"])
def test_bad_p(rgb_image, p):
    with pytest.raises(ConfigError, match="`p`"):
        normalize_color(rgb_image, p=p)


def test_bad_method_and_image(rgb_image):
    with pytest.raises(UnknownNameError, match="shades_of_gray"):
        normalize_color(rgb_image, method="shades_of_grey")
    with pytest.raises(InvalidImageError):
        normalize_color(rgb_image[..., 0])
    with pytest.raises(TypeError):
        normalize_color(rgb_image.tolist())


# --- the pipeline step -------------------------------------------------------------------------


def test_config_without_colour_keeps_the_old_dict():
    assert PreprocessConfig().to_dict() == {"hair_removal": None, "hair_params": {}, "denoise": None,
                                            "denoise_params": {}}


def test_config_round_trip_with_colour():
    cfg = PreprocessConfig(color_norm="Shades_Of_Gray", color_params={"p": 4})
    d = cfg.to_dict()
    assert d["color_norm"] == "shades_of_gray" and d["color_params"] == {"p": 4.0}
    assert PreprocessConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert hash(PreprocessConfig.from_dict(d)) == hash(cfg)
    assert PreprocessConfig(color_norm="shades_of_gray") != PreprocessConfig()


def test_config_validates_colour_params():
    with pytest.raises(ConfigError, match="color_params"):
        PreprocessConfig(color_params={"p": 6})
    with pytest.raises(ConfigError, match="not a parameter"):
        PreprocessConfig(color_norm="shades_of_gray", color_params={"power": 6})
    with pytest.raises(ConfigError, match="`p`"):
        PreprocessConfig(color_norm="shades_of_gray", color_params={"p": 0})
    with pytest.raises(UnknownNameError, match="Available"):
        PreprocessConfig(color_norm="grey_world")


def test_pipeline_normalises_colour_before_hair_removal(lesion_image):
    hairy = add_synthetic_hair(_cast(lesion_image, (1.0, 0.85, 0.7)), n_hairs=5, rng=1)[0]
    before = hairy.copy()
    only = Preprocess(color_norm="shades_of_gray")
    np.testing.assert_array_equal(only(hairy), normalize_color(hairy))
    both = Preprocess(color_norm="shades_of_gray", color_params={"p": 6}, hair_removal="blackhat")
    np.testing.assert_array_equal(both(hairy), remove_hair(normalize_color(hairy), method="blackhat"))
    np.testing.assert_array_equal(hairy, before)
    assert "color_norm='shades_of_gray'" in repr(both)
    assert Preprocess.from_dict(both.to_dict()) == both


def test_a_large_image_is_estimated_in_chunks_bitwise_as_the_plain_formula():
    """The chunked power mean (memory) adds the rows in np.mean's order: the same bits, so the same images."""
    image = np.random.default_rng(1).integers(0, 256, (701, 500, 3), dtype=np.uint8)  # 350,500 px: several chunks
    x = image.reshape(-1, 3).astype(np.float64) / 255.0
    e = np.power(np.mean(np.power(x, 6), axis=0), 1.0 / 6)
    assert np.array_equal(illuminant_shades_of_gray(image, p=6), e / np.linalg.norm(e))
    gains = (1.0 / (np.sqrt(3.0) * e / np.linalg.norm(e))).astype(np.float32)
    plain = np.rint(np.clip(image.astype(np.float32) * gains, 0.0, 255.0)).astype(np.uint8)
    assert np.array_equal(normalize_color(image), plain)
