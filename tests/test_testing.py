"""Synthetic dermoscopy data: shapes, seeding, ground truth of the simulated hair."""

from __future__ import annotations

import numpy as np
import pytest

from skinseg.errors import ConfigError, InvalidImageError
from skinseg.testing import HAIR_VISIBLE_LEVELS, add_synthetic_hair, synthetic_lesion


@pytest.mark.parametrize("shape", [(256, 256), (192, 256), (65, 47), (8, 8), (768, 1024)], ids=str)
def test_synthetic_lesion_shapes_and_dtypes(shape):
    image, mask = synthetic_lesion(shape, rng=0)
    assert image.shape == (*shape, 3) and image.dtype == np.uint8
    assert mask.shape == shape and mask.dtype == np.bool_
    assert 0.02 < mask.mean() < 0.5


def test_synthetic_lesion_is_seeded_and_leaves_global_rng_alone():
    state = np.random.get_state()  # noqa: NPY002 - checking that the legacy global RNG is untouched
    a, ma = synthetic_lesion(rng=3)
    b, mb = synthetic_lesion(rng=np.random.default_rng(3))
    c, _ = synthetic_lesion(rng=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a, c)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_lesion_is_darker_than_skin_and_has_dark_dots():
    image, mask = synthetic_lesion(rng=0)
    gray = image.astype(float).mean(axis=2)
    assert gray[mask].mean() < gray[~mask].mean() - 40
    lesion = gray[mask]
    assert (lesion < np.percentile(lesion, 50) - 25).mean() > 0.01  # dots/globules


@pytest.mark.parametrize("shape", [(7, 100), (100,), (10.0, 10)], ids=str)
def test_synthetic_lesion_rejects_bad_shapes(shape):
    with pytest.raises(ConfigError, match="`shape` must be a pair of integers"):
        synthetic_lesion(shape)  # type: ignore[arg-type]


def test_rng_type_is_checked():
    with pytest.raises(TypeError, match="`rng` must be"):
        synthetic_lesion(rng="seed")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lesion():
    return synthetic_lesion((192, 256), rng=0)[0]


def test_add_synthetic_hair_ground_truth_and_input(lesion):
    before = lesion.copy()
    hairy, mask = add_synthetic_hair(lesion, rng=1)
    np.testing.assert_array_equal(lesion, before)
    assert hairy.shape == lesion.shape and hairy.dtype == np.uint8
    assert mask.shape == lesion.shape[:2] and mask.dtype == np.bool_
    change = np.abs(hairy.astype(int) - lesion).max(axis=2)
    np.testing.assert_array_equal(mask, change >= HAIR_VISIBLE_LEVELS)
    assert 0.01 < mask.mean() < 0.3


def test_dark_hair_is_dark_and_light_hair_is_light(lesion):
    dark, dmask = add_synthetic_hair(lesion, color="dark", rng=2)
    light, lmask = add_synthetic_hair(lesion, color="light", rng=2)
    assert (dark.astype(int) - lesion)[dmask].mean() < -40
    assert (light.astype(int) - lesion)[lmask].mean() > 30
    mixed, mmask = add_synthetic_hair(lesion, color="mixed", n_hairs=30, rng=3)
    delta = (mixed.astype(int) - lesion).mean(axis=2)[mmask]
    assert (delta < -20).any() and (delta > 20).any()


def test_hairs_are_long_thin_and_width_follows_width_range(lesion):
    _, thin = add_synthetic_hair(lesion, n_hairs=8, width_range=(1, 1.5), rng=4)
    _, thick = add_synthetic_hair(lesion, n_hairs=8, width_range=(4, 4.5), rng=4)
    assert thick.sum() > 2 * thin.sum()
    ys, xs = np.nonzero(thin)
    assert max(np.ptp(ys), np.ptp(xs)) > 0.5 * max(lesion.shape)  # long relative to the image


def test_add_synthetic_hair_is_seeded_and_zero_hairs_is_identity(lesion):
    a = add_synthetic_hair(lesion, rng=5)
    b = add_synthetic_hair(lesion, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    hairy, mask = add_synthetic_hair(lesion, n_hairs=0, rng=5)
    np.testing.assert_array_equal(hairy, lesion)
    assert hairy is not lesion and not mask.any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_hairs=-1), r"`n_hairs` must be an integer >= 0; got -1"),
        (dict(width_range=(4, 1)), r"`width_range` must be a pair \(min, max\)"),
        (dict(width_range=(0, 1)), r"`width_range` must be a pair"),
        (dict(width_range=3), r"`width_range` must be a pair"),
        (dict(color="red"), r"`color` must be one of 'dark', 'light', 'mixed'; got 'red'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_add_synthetic_hair_rejects_bad_parameters(lesion, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        add_synthetic_hair(lesion, **kwargs)


def test_add_synthetic_hair_checks_the_image():
    with pytest.raises(InvalidImageError):
        add_synthetic_hair(np.zeros((8, 8), np.uint8))
