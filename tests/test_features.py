"""Tests of skinseg.features: ABCD measurements on shapes whose answers are known."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

import skinseg
from skinseg.errors import ConfigError, InvalidImageError, MaskShapeError, MaskValueError
from skinseg.features import COLOR_MIN_FRACTION, DERMOSCOPIC_COLORS, FEATURE_NAMES, lesion_features

SKIN = (225, 180, 160)
DARK_BROWN = (70, 40, 25)
BLUE_GRAY = (90, 130, 140)


# ----------------------------------------------------------------------------- shapes


def _ellipse(a: float, b: float, theta: float = 0.0, size: int | None = None, centre=None) -> np.ndarray:
    """Pixels whose centres lie in the ellipse with semi-axes a (along theta) and b."""
    size = size or int(2 * a + 21)
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    u = (xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)
    v = -(xx - cx) * math.sin(theta) + (yy - cy) * math.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _disk(r: float, size: int | None = None, centre=None) -> np.ndarray:
    return _ellipse(r, r, 0.0, size, centre)


def _l_shape() -> np.ndarray:
    mask = np.zeros((200, 200), bool)
    mask[40:160, 40:80] = True  # long vertical arm
    mask[130:160, 40:170] = True  # longer, thinner horizontal arm: no mirror symmetry at all
    return mask


def _star(points: int = 7, outer: float = 80, inner: float = 35, size: int = 200) -> np.ndarray:
    angles = np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    poly = np.stack([size / 2 + radii * np.cos(angles), size / 2 + radii * np.sin(angles)], axis=1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def _koch_snowflake(order: int, size: int = 600) -> np.ndarray:
    def side(a: np.ndarray, b: np.ndarray, n: int) -> list[np.ndarray]:
        if n == 0:
            return [a]
        d = (b - a) / 3
        turn = np.array([[0.5, -math.sqrt(3) / 2], [math.sqrt(3) / 2, 0.5]])
        p1, p3 = a + d, a + 2 * d
        p2 = p1 + turn @ d
        return side(a, p1, n - 1) + side(p1, p2, n - 1) + side(p2, p3, n - 1) + side(p3, b, n - 1)

    length = size * 0.6
    a = np.array([size * 0.2, size * 0.3])
    b = a + [length, 0.0]
    c = a + [length / 2, length * math.sqrt(3) / 2]
    poly = side(a, c, order) + side(c, b, order) + side(b, a, order)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(np.array(poly)).astype(np.int32)], 1)
    return mask.astype(bool)


def _image(mask: np.ndarray, colour=DARK_BROWN) -> np.ndarray:
    image = np.empty((*mask.shape, 3), np.uint8)
    image[:] = SKIN
    image[mask] = colour
    return image


def _features(mask: np.ndarray, **kwargs) -> dict[str, float]:
    return lesion_features(_image(mask), mask, **kwargs)


# ----------------------------------------------------------------------------- API


def test_keys_order_and_types() -> None:
    f = _features(_disk(30, 81, (40.3, 39.6)))
    assert tuple(f) == FEATURE_NAMES
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(k.startswith(("asymmetry", "border_", "color_")) for k in FEATURE_NAMES[:15])
    assert [k for k in FEATURE_NAMES if k.startswith("color_frac_")] == [
        f"color_frac_{name}" for name in DERMOSCOPIC_COLORS
    ]
    assert type(f["area_px"]) is int and type(f["color_count"]) is int
    for name in FEATURE_NAMES:
        if name not in ("area_px", "color_count"):
            assert type(f[name]) is float, name
            assert math.isfinite(f[name]) or name in ("diameter_mm", "area_mm2"), name
    assert skinseg.lesion_features is lesion_features


def test_integer_mask_gives_the_same_features() -> None:
    mask = _ellipse(30, 18, 0.4)
    f_bool = lesion_features(_image(mask), mask)
    f_255 = lesion_features(_image(mask), mask.astype(np.uint8) * 255)
    for name in FEATURE_NAMES:
        assert f_bool[name] == pytest.approx(f_255[name], nan_ok=True), name


# ----------------------------------------------------------------------------- A, B, D on shapes


@pytest.mark.parametrize("centre", [(50.0, 50.0), (50.3, 49.6), (49.8, 50.45)])
def test_disk_is_symmetric_compact_and_convex(centre) -> None:
    f = _features(_disk(40, 101, centre))
    assert f["asymmetry"] < 0.02
    assert f["asymmetry_major"] < 0.02 and f["asymmetry_minor"] < 0.02
    assert f["border_compactness"] == pytest.approx(1.0, abs=0.05)
    assert f["border_solidity"] > 0.97
    assert f["border_convexity"] > 0.97
    assert f["border_fractal_dimension"] == pytest.approx(1.0, abs=0.05)
    assert f["diameter_px"] == pytest.approx(80, abs=2)
    assert f["major_axis_px"] == pytest.approx(80, abs=2) and f["minor_axis_px"] == pytest.approx(80, abs=2)
    assert f["area_px"] == int(_disk(40, 101, centre).sum())
    assert f["area_px"] == pytest.approx(math.pi * 40**2, rel=0.01)
    assert f["perimeter_px"] == pytest.approx(2 * math.pi * 40, rel=0.02)


def test_large_disk_uses_the_downscaled_asymmetry_and_stays_symmetric() -> None:
    f = _features(_disk(300, 611, (305.2, 304.7)))  # wider than the 512 px working size
    assert f["asymmetry"] < 0.01
    assert f["border_compactness"] == pytest.approx(1.0, abs=0.01)
    assert f["diameter_px"] == pytest.approx(600, abs=2)


@pytest.mark.parametrize("theta", [0.0, 0.6, math.pi / 4, 2.2])
def test_ellipse_diameters_and_axes(theta: float) -> None:
    a, b = 50, 20
    f = _features(_ellipse(a, b, theta))
    assert f["diameter_px"] == pytest.approx(2 * a, abs=2)
    assert f["major_axis_px"] == pytest.approx(2 * a, abs=2)
    assert f["minor_axis_px"] == pytest.approx(2 * b, abs=2)
    assert f["asymmetry"] < 0.03  # symmetric about both axes, whatever the rotation
    assert f["border_solidity"] > 0.96
    # an ellipse is less compact than a disk: P^2 / (4 pi A) ~ 1.32 for a / b = 2.5
    assert 1.2 < f["border_compactness"] < 1.45


def test_half_disk_is_symmetric_about_its_minor_axis_only() -> None:
    mask = _disk(60, 141, (70.0, 70.0))
    mask[71:] = False  # flat edge along x: the major axis; the symmetry axis is the minor one
    f = _features(mask)
    assert f["major_axis_px"] > f["minor_axis_px"]
    assert f["asymmetry_minor"] < 0.02
    assert f["asymmetry_major"] > 0.3


def test_irregular_shapes_are_more_asymmetric_and_less_compact_than_a_disk() -> None:
    disk = _features(_disk(60, 141, (70.2, 69.6)))
    lshape = _features(_l_shape())
    star = _features(_star())
    assert lshape["asymmetry"] > disk["asymmetry"] + 0.2
    assert lshape["asymmetry_major"] > 0.2 and lshape["asymmetry_minor"] > 0.2
    for irregular in (lshape, star):
        assert irregular["border_compactness"] > disk["border_compactness"] + 0.3
        assert irregular["border_solidity"] < 0.85
        assert irregular["border_convexity"] < 0.97
    # a 7-pointed star is mirror-symmetric about an axis through a point, but the principal
    # axes of a regular star are not unique: only its compactness and hull ratios are asserted


def test_fractal_dimension_of_smooth_and_jagged_boundaries() -> None:
    smooth = _features(_disk(120, 261, (130.4, 129.7)))["border_fractal_dimension"]
    size = 260
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    angle = np.arctan2(yy - size / 2, xx - size / 2)
    jagged_mask = np.hypot(yy - size / 2, xx - size / 2) <= 100 * (1 + 0.2 * np.sin(60 * angle))
    jagged = _features(jagged_mask)["border_fractal_dimension"]
    koch = _features(_koch_snowflake(5))["border_fractal_dimension"]
    assert smooth == pytest.approx(1.0, abs=0.05)
    assert jagged > smooth + 0.2
    assert koch == pytest.approx(math.log(4) / math.log(3), abs=0.05)  # 1.262


def test_tiny_masks_are_measured() -> None:
    pixel = np.zeros((9, 9), bool)
    pixel[4, 4] = True
    f = _features(pixel)
    assert f["area_px"] == 1 and f["diameter_px"] == 0.0 and f["asymmetry"] == 0.0
    assert math.isnan(f["border_fractal_dimension"])  # under 16 px across: not defined
    line = np.zeros((9, 20), bool)
    line[4, 3:14] = True
    f = _features(line)
    assert f["diameter_px"] == pytest.approx(10.0)
    assert f["minor_axis_px"] == pytest.approx(0.0) and f["border_solidity"] <= 1.0


def test_two_components_are_one_lesion() -> None:
    mask = np.zeros((60, 160), bool)
    mask[20:40, 10:30] = True
    mask[20:40, 120:140] = True
    f = _features(mask)
    assert f["area_px"] == 800
    assert f["diameter_px"] == pytest.approx(math.hypot(129, 19), abs=0.01)
    assert f["border_solidity"] < 0.5


# ----------------------------------------------------------------------------- C: colours


def _noisy(colour, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.array(colour) + rng.integers(-5, 6, (n, 3)), 0, 255).astype(np.uint8)


def test_two_colour_lesion_counts_two_colours() -> None:
    rng = np.random.default_rng(0)
    mask = _disk(40, 101)
    image = _image(mask, SKIN)  # the skin is "white"-ish but lies outside the mask
    left = mask.copy()
    left[:, 50:] = False
    right = mask & ~left
    image[left] = _noisy(DARK_BROWN, int(left.sum()), rng)
    image[right] = _noisy(BLUE_GRAY, int(right.sum()), rng)
    f = lesion_features(image, mask)
    assert f["color_count"] == 2
    assert f["color_frac_dark_brown"] == pytest.approx(left.sum() / mask.sum())
    assert f["color_frac_blue_gray"] == pytest.approx(right.sum() / mask.sum())
    assert f["color_frac_white"] == 0.0 and f["color_frac_black"] == 0.0
    assert sum(f[f"color_frac_{name}"] for name in DERMOSCOPIC_COLORS) == pytest.approx(1.0)
    assert f["color_variance"] > 10  # two distant colours: a large spread in Lab


def test_uniform_lesion_counts_one_colour() -> None:
    mask = _disk(40, 101)
    f = lesion_features(_image(mask, DARK_BROWN), mask)
    assert f["color_count"] == 1 and f["color_frac_dark_brown"] == 1.0
    assert f["color_variance"] == 0.0
    noisy = _image(mask, DARK_BROWN)
    noisy[mask] = _noisy(DARK_BROWN, int(mask.sum()), np.random.default_rng(1))
    g = lesion_features(noisy, mask)
    assert g["color_count"] == 1 and 0.0 < g["color_variance"] < 5.0


def test_colour_variance_is_the_mean_lab_standard_deviation() -> None:
    from skimage.color import rgb2lab

    rng = np.random.default_rng(2)
    mask = _disk(30, 81)
    image = rng.integers(0, 256, (81, 81, 3), dtype=np.uint8)
    f = lesion_features(image, mask)
    expected = rgb2lab(image[mask][None])[0].std(axis=0).mean()
    assert f["color_variance"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("fraction,counted", [(0.03, False), (0.10, True)])
def test_a_colour_counts_from_five_percent(fraction: float, counted: bool) -> None:
    assert COLOR_MIN_FRACTION == 0.05
    mask = np.zeros((100, 100), bool)
    mask[:, :] = True
    image = _image(mask, DARK_BROWN)
    rows = int(round(fraction * 100))
    image[:rows] = (5, 5, 5)  # black
    f = lesion_features(image, mask)
    assert f["color_frac_black"] == pytest.approx(fraction)
    assert f["color_count"] == (2 if counted else 1)


# ----------------------------------------------------------------------------- D: millimetres


def test_pixel_size_converts_to_millimetres() -> None:
    mask = _ellipse(50, 20, 0.3)
    f = _features(mask, pixel_size_mm=0.02)
    assert f["diameter_mm"] == pytest.approx(f["diameter_px"] * 0.02)
    assert f["area_mm2"] == pytest.approx(f["area_px"] * 0.02**2)
    assert f["diameter_mm"] == pytest.approx(2.0, abs=0.04)
    g = _features(mask)
    assert math.isnan(g["diameter_mm"]) and math.isnan(g["area_mm2"])
    assert {k: v for k, v in g.items() if "mm" not in k} == {k: v for k, v in f.items() if "mm" not in k}


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "0.01"])
def test_bad_pixel_size_raises(bad) -> None:
    with pytest.raises(ConfigError, match="pixel_size_mm"):
        _features(_disk(10), pixel_size_mm=bad)


# ----------------------------------------------------------------------------- bad inputs


def test_shape_mismatch_raises_mask_shape_error() -> None:
    mask = _disk(10, 31)
    with pytest.raises(MaskShapeError, match=r"\(31, 31\) and \(31, 30\)"):
        lesion_features(_image(mask), mask[:, :30])


def test_empty_mask_raises_mask_value_error() -> None:
    mask = np.zeros((20, 20), bool)
    with pytest.raises(MaskValueError, match="empty"):
        lesion_features(_image(mask), mask)


def test_non_rgb_images_and_non_binary_masks_raise() -> None:
    mask = _disk(10, 31)
    image = _image(mask)
    with pytest.raises(InvalidImageError, match="grayscale"):
        lesion_features(image[..., 0], mask)
    with pytest.raises(InvalidImageError, match="uint8"):
        lesion_features(image.astype(np.float32) / 255, mask)
    with pytest.raises(InvalidImageError):
        lesion_features(np.dstack([image, image[..., :1]]), mask)
    with pytest.raises(TypeError):
        lesion_features(image.tolist(), mask)
    with pytest.raises(MaskValueError):
        lesion_features(image, mask.astype(np.uint8) * 2)
    with pytest.raises(MaskValueError):
        lesion_features(image, mask.astype(np.float32))


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(3)
    mask = _l_shape()
    image = rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
    image_before, mask_before = image.copy(), mask.copy()
    image.setflags(write=False)
    mask.setflags(write=False)  # any write would raise
    lesion_features(image, mask, pixel_size_mm=0.01)
    mask_255 = mask_before.astype(np.uint8) * 255
    mask_255_before = mask_255.copy()
    lesion_features(image, mask_255)
    assert np.array_equal(image, image_before) and np.array_equal(mask, mask_before)
    assert np.array_equal(mask_255, mask_255_before)
