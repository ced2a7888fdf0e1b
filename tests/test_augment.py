"""Failure-kind augmentations: ink marks, pale halos, hair; the mask is never changed."""

from __future__ import annotations

import numpy as np
import pytest

from skinseg.augment import FailureAugmentation, add_ink_marks, add_pale_halo
from skinseg.errors import ConfigError, MaskShapeError
from skinseg.testing import synthetic_lesion


@pytest.fixture(scope="module")
def lesion():
    return synthetic_lesion((96, 128), rng=0)


def test_ink_never_touches_the_lesion_and_marks_the_skin(lesion):
    image, mask = lesion
    before = image.copy()
    out = add_ink_marks(image, mask, ring_p=1.0, rng=0)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(out[mask], image[mask])
    changed = np.abs(out.astype(int) - image).max(axis=2) > 30
    assert 20 < changed.sum() < 0.25 * (~mask).sum()  # a thin ring, not a wash
    ys, xs = np.nonzero(changed)
    cy, cx = np.argwhere(mask).mean(0)
    # the ring lies around the lesion: marked pixels on both sides of its centre
    assert (xs < cx).any() and (xs > cx).any() and (ys < cy).any() and (ys > cy).any()


def test_ink_is_darker_than_skin(lesion):
    image, mask = lesion
    out = add_ink_marks(image, mask, ring_p=1.0, rng=3)
    changed = np.abs(out.astype(int) - image).max(axis=2) > 30
    assert out[changed].mean() < image[changed].mean()


def test_ink_same_seed_same_marks_and_dots_only(lesion):
    image, mask = lesion
    np.testing.assert_array_equal(add_ink_marks(image, mask, rng=5), add_ink_marks(image, mask, rng=5))
    dots = [add_ink_marks(image, mask, ring_p=0.0, max_dots=3, rng=s) for s in range(6)]
    assert any((d != image).any() for d in dots)
    np.testing.assert_array_equal(add_ink_marks(image, mask, ring_p=0.0, max_dots=0, rng=1), image)


def test_ink_on_an_empty_mask_still_draws(lesion):
    image, _ = lesion
    out = add_ink_marks(image, np.zeros(image.shape[:2], bool), ring_p=1.0, rng=0)
    assert (out != image).any()


def test_halo_fades_the_border_towards_skin_inside_the_lesion_only(lesion):
    image, mask = lesion
    before = image.copy()
    out = add_pale_halo(image, mask, strength=(0.6, 0.6), rng=2)
    np.testing.assert_array_equal(image, before)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    skin = np.median(image[~mask].astype(float), axis=0)
    changed = np.abs(out.astype(int) - image).max(axis=2) > 3
    assert changed.any() and not (changed & ~mask).any()
    d_before = np.linalg.norm(image[changed].astype(float) - skin, axis=1).mean()
    d_after = np.linalg.norm(out[changed].astype(float) - skin, axis=1).mean()
    assert d_after < 0.7 * d_before


def test_halo_is_strongest_at_the_border(lesion):
    import cv2

    image, mask = lesion
    out = add_pale_halo(image, mask, strength=(0.7, 0.7), rng=4)
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    diff = np.abs(out.astype(float) - image).sum(axis=2)
    assert diff[(depth > 0) & (depth <= 2)].mean() > diff[depth > 0.6 * depth.max()].mean()


def test_halo_leaves_tiny_lesions_alone(lesion):
    image, _ = lesion
    tiny = np.zeros(image.shape[:2], bool)
    tiny[10:15, 10:15] = True
    np.testing.assert_array_equal(add_pale_halo(image, tiny, rng=0), image)


def test_argument_errors(lesion):
    image, mask = lesion
    with pytest.raises(MaskShapeError):
        add_ink_marks(image, mask[:-1])
    with pytest.raises(ConfigError, match="ring_p"):
        add_ink_marks(image, mask, ring_p=1.5)
    with pytest.raises(ConfigError, match="max_dots"):
        add_ink_marks(image, mask, max_dots=-1)
    with pytest.raises(ConfigError, match="strength"):
        add_pale_halo(image, mask, strength=(0.8, 0.2))
    with pytest.raises(ConfigError, match="hair_p"):
        FailureAugmentation(hair_p=2)


def test_failure_augmentation_keeps_the_mask_and_is_reseedable(lesion):
    image, mask = lesion
    m8 = mask.astype(np.uint8)
    aug = FailureAugmentation(ink_p=1.0, halo_p=1.0, hair_p=1.0, seed=0)
    a = aug(image=image, mask=m8)
    assert a["mask"] is m8 and (a["image"] != image).any()
    aug.set_random_seed(7)
    b1 = aug(image=image, mask=m8)["image"]
    aug.set_random_seed(7)
    b2 = aug(image=image, mask=m8)["image"]
    np.testing.assert_array_equal(b1, b2)
    off = FailureAugmentation(ink_p=0.0, halo_p=0.0, hair_p=0.0)
    np.testing.assert_array_equal(off(image=image, mask=m8)["image"], image)
    assert off.to_dict() == {"ink_p": 0.0, "halo_p": 0.0, "hair_p": 0.0}


def test_failure_augmentation_runs_and_reseeds_the_inner_pipeline(lesion):
    image, mask = lesion
    seen = {}

    class Inner:
        def __call__(self, *, image, mask):
            seen["called"] = True
            return {"image": image[::2], "mask": mask[::2]}

        def set_random_seed(self, seed):
            seen["seed"] = seed

    aug = FailureAugmentation(Inner(), ink_p=0.0, halo_p=0.0, hair_p=0.0)
    aug.set_random_seed(11)
    out = aug(image=image, mask=mask)
    assert seen == {"called": True, "seed": 11} and out["image"].shape[0] == image.shape[0] // 2
