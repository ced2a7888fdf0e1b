"""Median and local adaptive Wiener denoising."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from skinseg.errors import ConfigError, InvalidImageError
from skinseg.preprocess import denoise_median, denoise_wiener
from skinseg.testing import synthetic_lesion

FILTERS = [denoise_median, denoise_wiener]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()))


@pytest.fixture(scope="module")
def clean():
    return synthetic_lesion((192, 256), rng=0)[0]


@pytest.fixture(scope="module")
def gaussian_noisy(clean):
    noise = np.random.default_rng(1).normal(0, 15, clean.shape)
    return np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def salt_pepper(clean):
    rng = np.random.default_rng(2)
    noisy = clean.copy()
    u = rng.random(clean.shape[:2])
    noisy[u < 0.025] = 0
    noisy[u > 0.975] = 255
    return noisy


def _scipy_wiener_rgb(image: np.ndarray, window: int, noise: float | None) -> np.ndarray:
    out = np.stack(
        [signal.wiener(image[..., c].astype(np.float64), (window, window), noise) for c in range(3)], axis=-1
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fn", FILTERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(192, 256), (768, 1024), (5, 5), (1, 1), (2, 7)], ids=str)
def test_shape_dtype_and_input_unmodified(fn, shape, rng):
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    before = image.copy()
    out = fn(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out is not image
    np.testing.assert_array_equal(image, before)


def test_median_removes_salt_and_pepper(clean, salt_pepper):
    out = denoise_median(salt_pepper, kernel_size=3)
    assert _psnr(out, clean) > _psnr(salt_pepper, clean) + 10
    assert ((out == 0) | (out == 255)).all(axis=2).mean() < 0.001


@pytest.mark.parametrize("window", [3, 5, 7])
def test_wiener_matches_scipy_on_interior_pixels(gaussian_noisy, window):
    noise = 225.0  # scipy's own noise estimate is biased by its zero padding: compare at a fixed noise
    ours = denoise_wiener(gaussian_noisy, window=window, noise=noise).astype(int)
    ref = _scipy_wiener_rgb(gaussian_noisy, window, noise).astype(int)
    r = window // 2
    diff = np.abs(ours[r:-r, r:-r] - ref[r:-r, r:-r])
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.99


@pytest.mark.parametrize("window", [3, 5])
def test_wiener_noise_estimate_is_mean_local_variance(gaussian_noisy, window):
    # float64 reference with the same mirrored border (scipy.ndimage "mirror" == BORDER_REFLECT_101)
    x = gaussian_noisy.astype(np.float64)
    mean = ndimage.uniform_filter(x, size=(window, window, 1), mode="mirror")
    var = np.maximum(ndimage.uniform_filter(x * x, size=(window, window, 1), mode="mirror") - mean**2, 0)
    noise = var.reshape(-1, 3).mean(axis=0)
    ref = mean + np.maximum(var - noise, 0) / np.maximum(var, noise) * (x - mean)
    ref = np.clip(np.rint(ref), 0, 255)
    assert np.abs(denoise_wiener(gaussian_noisy, window=window) - ref).max() <= 1


def test_wiener_reduces_gaussian_noise(clean, gaussian_noisy):
    assert _psnr(denoise_wiener(gaussian_noisy, window=5), clean) > _psnr(gaussian_noisy, clean) + 3


def test_wiener_keeps_constant_image_and_zero_noise_is_identity(rng):
    flat = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(denoise_wiener(flat), flat)
    np.testing.assert_array_equal(denoise_wiener(flat, noise=0), flat)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(denoise_wiener(image, noise=0.0), image)


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (denoise_median, dict(kernel_size=4), r"`kernel_size` must be an odd integer >= 3; got 4"),
        (denoise_median, dict(kernel_size=1), r"`kernel_size` must be an odd integer >= 3; got 1"),
        (denoise_median, dict(kernel_size=5.0), r"`kernel_size` must be an odd integer >= 3; got 5.0"),
        (denoise_median, dict(kernel_size=True), r"`kernel_size` must be an odd integer >= 3; got True"),
        (denoise_wiener, dict(window=2), r"`window` must be an odd integer >= 3; got 2"),
        (denoise_wiener, dict(noise=-1), r"`noise` must be None or a finite variance >= 0 .*; got -1"),
        (denoise_wiener, dict(noise=float("nan")), r"`noise` must be None or a finite variance"),
        (denoise_wiener, dict(noise="15"), r"`noise` must be None or a finite variance"),
    ],
    ids=lambda v: v.__name__ if callable(v) else str(v) if isinstance(v, dict) else "",
)
def test_invalid_parameters_raise_config_error(clean, fn, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fn(clean, **kwargs)


@pytest.mark.parametrize("fn", FILTERS, ids=lambda f: f.__name__)
def test_invalid_images_are_rejected(fn):
    with pytest.raises(InvalidImageError, match="uint8"):
        fn(np.zeros((8, 8, 3), np.float64))
    with pytest.raises(InvalidImageError, match="grayscale"):
        fn(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="numpy array"):
        fn([[1, 2, 3]])
