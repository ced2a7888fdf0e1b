"""Lesion crops for the classifier: geometry of each mode, filling, and input checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from skinseg.crops import CROP_MODES, crop_box, crop_lesion
from skinseg.errors import ConfigError, InvalidImageError, MaskShapeError, MaskValueError


def _scene(h=120, w=160):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[40:60, 50:90] = True  # 20 x 40 box, centre (50, 70)
    return image, mask


def test_crop_box_is_square_centred_and_enlarged():
    _, mask = _scene()
    y0, x0, y1, x1 = crop_box(mask, margin=0.25)
    assert y1 - y0 == x1 - x0 == 60  # 40 * (1 + 2 * 0.25)
    assert (y0 + y1) / 2 == 50 and (x0 + x1) / 2 == 70
    assert crop_box(mask, margin=0.0) == (30, 50, 70, 90)


def test_dilated_bbox_equals_the_resized_box():
    image, mask = _scene()
    y0, x0, y1, x1 = crop_box(mask, margin=0.25)
    out = crop_lesion(image, mask, mode="dilated_bbox", size=60, margin=0.25)
    np.testing.assert_array_equal(out, image[y0:y1, x0:x1])  # same size: no resampling
    assert crop_lesion(image, mask, size=32).shape == (32, 32, 3)


def test_box_outside_the_image_is_filled():
    image, _ = _scene()
    mask = np.zeros(image.shape[:2], bool)
    mask[0:10, 0:10] = True
    out = crop_lesion(image, mask, mode="dilated_bbox", size=20, margin=0.5, fill=7)
    # box = (-5,-5)-(15,15): the first 5 rows / cols lie outside the image
    assert (out[:5] == 7).all() and (out[:, :5] == 7).all()
    np.testing.assert_array_equal(out[5:, 5:], image[:15, :15])


def test_masked_sets_background_to_fill_and_keeps_lesion():
    image, mask = _scene()
    out = crop_lesion(image, mask, mode="masked", size=60, margin=0.25, fill=0)
    y0, x0, _, _ = crop_box(mask, margin=0.25)
    inside = mask[y0 : y0 + 60, x0 : x0 + 60]
    np.testing.assert_array_equal(out[inside], image[y0 : y0 + 60, x0 : x0 + 60][inside])
    assert (out[~inside] == 0).all()


def test_mask_channel_adds_a_binary_fourth_channel():
    image, mask = _scene()
    out = crop_lesion(image, mask, mode="mask_channel", size=48)
    assert out.shape == (48, 48, 4) and out.dtype == np.uint8
    assert set(np.unique(out[..., 3])) == {0, 255}
    assert out[24, 24, 3] == 255 and out[0, 0, 3] == 0
    np.testing.assert_array_equal(out[..., :3], crop_lesion(image, mask, mode="dilated_bbox", size=48))


def test_full_is_the_resized_image_and_needs_no_mask():
    image, _ = _scene()
    out = crop_lesion(image, None, mode="full", size=64)
    np.testing.assert_array_equal(out, cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("mode", CROP_MODES)
def test_inputs_are_not_modified(mode):
    image, mask = _scene()
    i0, m0 = image.copy(), mask.copy()
    crop_lesion(image, mask, mode=mode, size=32)
    np.testing.assert_array_equal(image, i0)
    np.testing.assert_array_equal(mask, m0)


def test_errors_name_the_problem():
    image, mask = _scene()
    with pytest.raises(MaskValueError, match="empty"):
        crop_lesion(image, np.zeros_like(mask))
    with pytest.raises(MaskShapeError, match="must match"):
        crop_lesion(image, mask[:-1])
    with pytest.raises(ConfigError, match="Did you mean 'masked'"):
        crop_lesion(image, mask, mode="maskd")
    with pytest.raises(ConfigError, match="needs a lesion mask"):
        crop_lesion(image, None, mode="dilated_bbox")
    with pytest.raises(ConfigError, match="margin"):
        crop_box(mask, margin=-1)
    with pytest.raises(InvalidImageError):
        crop_lesion(image[..., 0], mask)
