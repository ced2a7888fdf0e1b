"""Tests of skinseg.postprocess."""

from __future__ import annotations

import numpy as np
import pytest

from skinseg.errors import ConfigError, MaskValueError
from skinseg.postprocess import (
    fill_holes,
    keep_largest_component,
    postprocess_mask,
    remove_small_components,
    threshold,
)

PROB = np.array(
    [[0.1, 0.5, 0.9, 0.0], [0.49, 0.51, 1.0, 0.2], [0.0, 0.0, 0.0, 0.0], [0.7, 0.0, 0.0, 0.0]],
    dtype=np.float32,
)
# 8-connected components: the 2x2 block + its diagonal neighbour (2, 2) (5 px),
# a vertical pair (2 px), one pixel.
MASK = np.array(
    [[1, 1, 0, 0, 0], [1, 1, 0, 0, 1], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=bool
)


def test_threshold_known_answer() -> None:
    out = threshold(PROB)
    expected = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    assert out.dtype == bool and out.shape == PROB.shape
    np.testing.assert_array_equal(out, expected)
    assert threshold(PROB, 0.0).all()
    np.testing.assert_array_equal(threshold(PROB, 1.0), PROB == 1.0)
    np.testing.assert_array_equal(threshold(PROB.astype(np.float64), threshold=0.95), PROB >= 0.95)


def test_threshold_bad_input() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        threshold(PROB, 1.5)
    with pytest.raises(ConfigError, match="sigmoid"):
        threshold(PROB * 3)
    with pytest.raises(ConfigError, match="float"):
        threshold((PROB > 0.5).astype(np.uint8))
    with pytest.raises(TypeError):
        threshold(PROB.tolist())


def test_keep_largest_component_connectivity() -> None:
    out8 = keep_largest_component(MASK)
    expected8 = np.zeros_like(MASK)
    expected8[:2, :2] = True
    expected8[2, 2] = True  # diagonal neighbour joins with 8-connectivity
    np.testing.assert_array_equal(out8, expected8)
    out4 = keep_largest_component(MASK, connectivity=4)
    expected4 = np.zeros_like(MASK)
    expected4[:2, :2] = True
    np.testing.assert_array_equal(out4, expected4)
    with pytest.raises(ConfigError, match="connectivity"):
        keep_largest_component(MASK, connectivity=6)


def test_keep_largest_component_uint8_and_tie() -> None:
    m = np.zeros((3, 5), dtype=np.uint8)
    m[0, 0] = m[0, 4] = 255
    out = keep_largest_component(m)
    assert out.dtype == bool and out.sum() == 1 and out[0, 0]  # tie: first in raster order


def test_remove_small_components() -> None:
    out = remove_small_components(MASK, min_size=2)
    expected = MASK.copy()
    expected[4, 0] = False
    np.testing.assert_array_equal(out, expected)
    assert not remove_small_components(MASK, min_size=100).any()
    with pytest.raises(ConfigError, match="min_size"):
        remove_small_components(MASK, min_size=0)


def test_fill_holes() -> None:
    ring = np.ones((5, 5), dtype=bool)
    ring[1:4, 1:4] = False
    ring[2, 2] = True
    assert fill_holes(ring).all()
    open_ring = ring.copy()
    open_ring[0, 2] = False  # background connected to the border: not a hole
    out = fill_holes(open_ring)
    np.testing.assert_array_equal(out, open_ring)


@pytest.mark.parametrize(
    "fn", [keep_largest_component, fill_holes, remove_small_components], ids=lambda f: f.__name__
)
def test_empty_masks_stay_empty(fn) -> None:
    empty = np.zeros((6, 7), dtype=bool)
    out = fn(empty)
    assert out.shape == empty.shape and out.dtype == bool and not out.any()


def test_postprocess_mask_chain() -> None:
    prob = np.zeros((12, 12), dtype=np.float32)
    prob[2:9, 2:9] = 0.8
    prob[4:6, 4:6] = 0.3  # hole
    prob[11, 11] = 0.99  # speck
    out = postprocess_mask(prob)
    expected = np.zeros((12, 12), dtype=bool)
    expected[2:9, 2:9] = True
    np.testing.assert_array_equal(out, expected)
    raw = postprocess_mask(prob, largest_component=False, fill_holes=False)
    np.testing.assert_array_equal(raw, threshold(prob))
    assert postprocess_mask(prob, threshold=0.9).sum() == 1
    assert not postprocess_mask(np.zeros((5, 5), dtype=np.float32)).any()


def test_bad_masks() -> None:
    with pytest.raises(MaskValueError):
        keep_largest_component(MASK.astype(np.uint8) * 3)
    with pytest.raises(MaskValueError):
        fill_holes(MASK.astype(np.float32))


def test_inputs_never_mutated() -> None:
    prob, mask = PROB.copy(), MASK.copy()
    threshold(prob)
    postprocess_mask(prob)
    for fn in (keep_largest_component, fill_holes, remove_small_components):
        out = fn(mask)
        out[...] = True  # the result never aliases the input
    np.testing.assert_array_equal(prob, PROB)
    np.testing.assert_array_equal(mask, MASK)
