"""Hair detection and removal: invariants, behaviour on synthetic hair, errors."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from skinseg.errors import ConfigError, InvalidImageError, MaskShapeError, MaskValueError, UnknownNameError
from skinseg.preprocess import detect_hair, remove_hair
from skinseg.preprocess import hair as hair_module
from skinseg.testing import add_synthetic_hair, synthetic_lesion

METHODS = ["dullrazor", "blackhat"]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[region].mean()
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def hairy_lesion():
    image, _ = synthetic_lesion((192, 256), rng=0)
    hairy, truth = add_synthetic_hair(image, rng=1)
    return image, hairy, truth


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(192, 256), (768, 1024)], ids=["256x192", "1024x768"])
def test_shape_dtype_and_input_unmodified(method, shape):
    image, _ = synthetic_lesion(shape, rng=3)
    hairy, _ = add_synthetic_hair(image, n_hairs=6, rng=4)
    before = hairy.copy()
    mask = detect_hair(hairy, method=method)
    clean = remove_hair(hairy, method=method)
    assert mask.shape == shape and mask.dtype == np.bool_
    assert clean.shape == hairy.shape and clean.dtype == np.uint8
    assert clean is not hairy
    np.testing.assert_array_equal(hairy, before)


def test_remove_hair_with_mask_leaves_image_and_mask_unmodified(hairy_lesion):
    _, hairy, truth = hairy_lesion
    image, mask = hairy.copy(), truth.copy()
    remove_hair(hairy, hair_mask=truth)
    np.testing.assert_array_equal(hairy, image)
    np.testing.assert_array_equal(truth, mask)


def test_dullrazor_mask_matches_simulated_hair(hairy_lesion):
    _, hairy, truth = hairy_lesion
    assert _dice(detect_hair(hairy), truth) > 0.85


def test_dullrazor_lowers_blackhat_response_at_hair(hairy_lesion):
    image, hairy, truth = hairy_lesion
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (9, 9))

    def response(img):
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)[truth].mean()

    clean = remove_hair(hairy)
    assert response(clean) < 0.25 * response(hairy)
    assert response(clean) < response(image) + 5


@pytest.mark.parametrize("method", METHODS)
def test_removal_restores_hair_region(hairy_lesion, method):
    image, hairy, truth = hairy_lesion
    region = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    gain = _psnr(remove_hair(hairy, method=method), image, region) - _psnr(hairy, image, region)
    assert gain > 8.0


def test_remove_hair_equals_removal_of_detected_mask(hairy_lesion):
    _, hairy, _ = hairy_lesion
    np.testing.assert_array_equal(remove_hair(hairy), remove_hair(hairy, hair_mask=detect_hair(hairy)))


def test_dots_and_globules_are_not_hair():
    image, lesion = synthetic_lesion((256, 256), rng=5)  # lesion with dark dots, no hair
    assert detect_hair(image).mean() < 0.002
    # hand-built: dark discs of radius 1..12 px and one dark line on a flat skin background
    img = np.full((256, 256, 3), (210, 160, 140), np.uint8)
    for i, r in enumerate(range(1, 13)):
        cv2.circle(img, (20 + (i % 6) * 40, 40 + (i // 6) * 60), r, (60, 40, 30), -1, cv2.LINE_AA)
    cv2.line(img, (10, 200), (245, 230), (40, 30, 25), 2, cv2.LINE_AA)
    mask = detect_hair(img)
    assert not mask[:150].any()  # no disc
    assert mask[190:245].sum() > 200  # the line


def test_remove_hair_keeps_dots(hairy_lesion):
    image, _ = synthetic_lesion((256, 256), rng=5)
    clean = remove_hair(image)
    assert np.abs(clean.astype(int) - image).max(axis=2).mean() < 0.5


def test_light_hair_needs_hair_color_light():
    image, _ = synthetic_lesion((192, 256), rng=6)
    hairy, truth = add_synthetic_hair(image, color="light", rng=7)
    assert _dice(detect_hair(hairy, hair_color="light"), truth) > 0.65
    assert _dice(detect_hair(hairy, hair_color="both"), truth) > 0.6
    assert detect_hair(hairy).sum() < 0.1 * truth.sum()  # default: dark hair only
    assert _dice(detect_hair(hairy, method="blackhat", hair_color="light"), truth) > 0.6


def test_interpolation_is_exact_on_a_linear_ramp():
    ramp = np.tile((np.arange(40) * 5)[None, :, None], (30, 1, 3)).astype(np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[:, 10:14] = True  # a vertical 4-px "hair" crossing the whole image
    out = remove_hair(ramp, hair_mask=mask, dilation=0, median_size=1)
    np.testing.assert_array_equal(out, ramp)


def test_border_hair_takes_nearest_clear_pixel():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, 3:] = 100
    mask = np.zeros((10, 10), bool)
    mask[:, :3] = True  # touches the left border: only one side is inside the image
    out = remove_hair(image, hair_mask=mask, dilation=0, median_size=1)
    assert (out[:, :3] == 100).all()


@pytest.mark.parametrize("method", METHODS)
def test_no_hair_returns_equal_copy(method):
    image = np.full((64, 64, 3), 180, np.uint8)
    out = remove_hair(image, method=method)
    assert out is not image
    np.testing.assert_array_equal(out, image)
    assert not detect_hair(image, method=method).any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (2, 7), (1, 40), (40, 1)], ids=str)
def test_tiny_images_work(method, shape, rng):
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    assert detect_hair(image, method=method).shape == shape
    assert remove_hair(image, method=method).shape == image.shape
    everything = remove_hair(image, method=method, hair_mask=np.ones(shape, bool))
    np.testing.assert_array_equal(everything, image)  # nothing to replace the hair with


def test_hair_mask_formats_and_errors(hairy_lesion):
    _, hairy, truth = hairy_lesion
    expected = remove_hair(hairy, hair_mask=truth)
    np.testing.assert_array_equal(remove_hair(hairy, hair_mask=truth.astype(np.uint8) * 255), expected)
    with pytest.raises(MaskShapeError, match="same"):
        remove_hair(hairy, hair_mask=truth[:-1])
    with pytest.raises(MaskValueError, match="only"):
        remove_hair(hairy, hair_mask=truth.astype(np.uint8) * 7)


def test_method_names_are_case_insensitive(hairy_lesion):
    _, hairy, _ = hairy_lesion
    np.testing.assert_array_equal(detect_hair(hairy, method="DullRazor"), detect_hair(hairy))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(method="dulrazor"), UnknownNameError,
         "Available: blackhat, dullrazor. Did you mean 'dullrazor'"),
        (dict(hair_color="blond"), UnknownNameError, "Available: dark, light, both"),
        (dict(kernel_size=4), ConfigError, r"`kernel_size` must be an odd integer >= 3; got 4"),
        (dict(kernel_size=1), ConfigError, r"`kernel_size` must be an odd integer >= 3; got 1"),
        (dict(threshold=300), ConfigError,
         r"`threshold` must be a number of uint8 levels in \[0, 255\]; got 300"),
        (dict(threshold="10"), ConfigError, r"`threshold` must be"),
        (dict(min_length=0), ConfigError, r"`min_length` must be an integer >= 1; got 0"),
        (dict(max_width=2.5), ConfigError, r"`max_width` must be an integer >= 1; got 2.5"),
        (dict(method="blackhat", min_length=10), ConfigError,
         "`min_length` applies only to method='dullrazor'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_detect_hair_rejects_bad_parameters(hairy_lesion, kwargs, error, match):
    with pytest.raises(error, match=match):
        detect_hair(hairy_lesion[1], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(dilation=-1), ConfigError, r"`dilation` must be an integer >= 0; got -1"),
        (dict(median_size=4), ConfigError, r"`median_size` must be an odd integer >= 1; got 4"),
        (dict(inpaint_radius=3), ConfigError, "`inpaint_radius` applies only to method='blackhat'"),
        (dict(method="blackhat", inpaint_method="fast"), UnknownNameError, "Available: telea, ns"),
        (dict(method="blackhat", inpaint_radius=0), ConfigError, r"`inpaint_radius` must be an integer >= 1"),
        (dict(method="blackhat", median_size=3), ConfigError,
         "`median_size` applies only to method='dullrazor'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_remove_hair_rejects_bad_parameters(hairy_lesion, kwargs, error, match):
    with pytest.raises(error, match=match):
        remove_hair(hairy_lesion[1], **kwargs)


def test_detection_parameters_are_rejected_with_a_mask(hairy_lesion):
    _, hairy, truth = hairy_lesion
    with pytest.raises(ConfigError, match="`threshold` is a detection parameter"):
        remove_hair(hairy, hair_mask=truth, threshold=10)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((8, 8), np.uint8), InvalidImageError, "grayscale"),
        (np.zeros((8, 8, 4), np.uint8), InvalidImageError, "alpha"),
        (np.zeros((8, 8, 3), np.float32), InvalidImageError, "uint8"),
        ([[0, 0, 0]], TypeError, "numpy array"),
    ],
    ids=["gray", "rgba", "float", "list"],
)
def test_invalid_images_are_rejected(image, error, match):
    with pytest.raises(error, match=match):
        detect_hair(image)
    with pytest.raises(error, match=match):
        remove_hair(image)


@pytest.mark.parametrize(
    ("long_side", "expected"),
    [
        (1024, dict(kernel_size=19, min_length=60, max_width=12, dilation=1, median_size=3,
                    inpaint_radius=3)),
        (512, dict(kernel_size=11, min_length=33, max_width=8, dilation=1, median_size=3, inpaint_radius=2)),
        (256, dict(kernel_size=7, min_length=21, max_width=8, dilation=1, median_size=3, inpaint_radius=1)),
    ],
)
def test_scale_rule_matches_documented_table(long_side, expected):
    got = hair_module._resolve("dullrazor", {}, (long_side // 2, long_side), removing=True)
    got.update(hair_module._resolve("blackhat", {}, (long_side // 2, long_side), removing=True))
    got = {name: got[name] for name in expected}
    assert got == expected
    for name, value in expected.items():  # the module docstring shows the same numbers
        row = re.search(rf"^``{name}``.*\s(\d+)\s+(\d+)\s+(\d+)$", hair_module.__doc__, re.MULTILINE)
        assert row is not None and row.group(1 + [1024, 512, 256].index(long_side)) == str(value)
