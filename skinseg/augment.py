"""Training augmentations that simulate what the segmenter gets wrong (numpy/OpenCV; no torch).

The bundled segmenter's failures on ``val`` are disagreements about where a lesion ends:
masks that stop inside a faint halo or a pale part of the lesion, and masks that spread
into ink marks drawn around the lesion. These functions draw such cases onto training
images while keeping the expert mask unchanged, so the model sees them with the right
answer:

- :func:`add_ink_marks`: a thin coloured ring or arc around the lesion and marker dots
  near it (surgical-marker violet, blue, black, green), never over the lesion itself;
- :func:`add_pale_halo`: a band along the lesion border (all around, or a sector)
  faded towards the surrounding skin, so faint lesion parts still count as lesion;
- hair (2-10 hairs, dark or mixed), from :func:`skinseg.testing.add_synthetic_hair`.

:class:`FailureAugmentation` applies them at random, then an inner (albumentations)
pipeline; it takes ``image=`` / ``mask=`` keywords like albumentations and is seeded per
epoch through ``set_random_seed`` (as :func:`skinseg.training.fit` does), so a resumed run
draws the same augmentations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from ._checks import as_bool_mask, check_fraction, check_rgb_image, check_same_hw
from ._types import BinaryMask, RGBImage
from .errors import ConfigError
from .testing import add_synthetic_hair

__all__ = ["add_ink_marks", "add_pale_halo", "FailureAugmentation", "INK_COLORS"]

INK_COLORS = {
    "violet": (105, 45, 140),  # gentian-violet surgical marker, the most common in ISIC images
    "blue": (45, 65, 150),
    "black": (35, 32, 40),
    "green": (40, 95, 65),
}
"""RGB colours of the simulated skin markers (each jittered by up to 20 levels per channel)."""


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _lesion_geometry(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(cy, cx, half-height, half-width) of the lesion's bounding box, or a central default when empty."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return h / 2, w / 2, 0.15 * h, 0.15 * w
    half_h, half_w = (np.ptp(ys) + 1) / 2, (np.ptp(xs) + 1) / 2
    return (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2, max(2.0, half_h), max(2.0, half_w)


def add_ink_marks(
    image: RGBImage,
    mask: BinaryMask,
    *,
    ring_p: float = 0.7,
    max_dots: int = 3,
    rng: np.random.Generator | int | None = None,
) -> RGBImage:
    """Draw a marker ring (or arc) around the lesion and a few marker dots near it.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    mask : (H, W) bool (or {0, 1} / {0, 255}) ndarray
        The lesion; ink is never drawn on it, so the mask stays the right answer.
    ring_p : float
        Probability in [0, 1] of the ring; otherwise only dots are drawn.
    max_dots : int
        At most this many dots (0 to ``max_dots``, uniformly).
    rng : numpy.random.Generator or int or None
        Source of randomness (keyword-only).

    Returns
    -------
    (H, W, 3) uint8 ndarray
        A new image.

    Notes
    -----
    The ring is an ellipse 1.15-1.8x the lesion's bounding box, centred near the lesion,
    with a slow radial wobble, a random gap (a 100-360 degree arc), a line width of
    0.4-1.2 % of the image diagonal and 50-95 % opacity; dots have a radius of
    0.6-2 % of the diagonal and lie 1.1-2.2 lesion radii from the centre. Marker colours
    are :data:`INK_COLORS`.
    """
    check_rgb_image(image)
    m = as_bool_mask(mask)
    check_same_hw(image, m, ("image", "mask"))
    ring_p = check_fraction(ring_p, "ring_p")
    if not isinstance(max_dots, int) or isinstance(max_dots, bool) or max_dots < 0:
        raise ConfigError(f"`max_dots` must be an integer >= 0; got {max_dots!r}.")
    gen = _rng(rng)
    h, w = m.shape
    diag = float(np.hypot(h, w))
    cy, cx, ry, rx = _lesion_geometry(m)
    colors = list(INK_COLORS.values())
    color = np.clip(np.array(colors[gen.integers(len(colors))], np.float32) + gen.uniform(-20, 20, 3), 0, 255)
    scale = 4  # rasterise at 4x for antialiasing
    alpha = np.zeros((h * scale, w * scale), np.float32)
    if gen.random() < ring_p:
        f = gen.uniform(1.15, 1.8)
        oy, ox = gen.normal(0, 0.08, 2) * (ry, rx)
        start = gen.uniform(0, 2 * np.pi)
        span = 2 * np.pi if gen.random() < 0.5 else gen.uniform(np.deg2rad(100), 2 * np.pi)
        t = start + np.linspace(0, span, 180)
        k = gen.integers(2, 5)
        wobble = 1 + gen.uniform(0.02, 0.07) * np.sin(k * t + gen.uniform(0, 2 * np.pi))
        ys = (cy + oy + f * ry * wobble * np.sin(t)) * scale
        xs = (cx + ox + f * rx * wobble * np.cos(t)) * scale
        pts = np.round(np.stack([xs, ys], 1)).astype(np.int32)[:, None, :]
        width = max(1, int(round(diag * gen.uniform(0.004, 0.012) * scale)))
        cv2.polylines(alpha, [pts], isClosed=bool(span >= 2 * np.pi), color=1.0, thickness=width,
                      lineType=cv2.LINE_AA)
    radius_lesion = float(np.hypot(ry, rx))
    for _ in range(int(gen.integers(0, max_dots + 1))):
        ang, dist = gen.uniform(0, 2 * np.pi), radius_lesion * gen.uniform(1.1, 2.2)
        px, py = (cx + dist * np.cos(ang)) * scale, (cy + dist * np.sin(ang)) * scale
        center = (int(round(px)), int(round(py)))
        cv2.circle(alpha, center, max(1, int(round(diag * gen.uniform(0.006, 0.02) * scale))), 1.0, -1,
                   lineType=cv2.LINE_AA)
    alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
    alpha *= gen.uniform(0.5, 0.95) * (~m)
    out = image.astype(np.float32) * (1 - alpha[..., None]) + color * alpha[..., None]
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


def add_pale_halo(
    image: RGBImage,
    mask: BinaryMask,
    *,
    strength: tuple[float, float] = (0.3, 0.7),
    rng: np.random.Generator | int | None = None,
) -> RGBImage:
    """Fade a band along the lesion border towards the surrounding skin colour.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    mask : (H, W) bool (or {0, 1} / {0, 255}) ndarray
        The lesion. Only pixels inside it change; it stays the right answer.
    strength : (float, float)
        Range in [0, 1] of the fade at the border (0: unchanged, 1: skin colour).
    rng : numpy.random.Generator or int or None
        Source of randomness (keyword-only).

    Returns
    -------
    (H, W, 3) uint8 ndarray
        A new image; an unchanged copy when the lesion is under 50 pixels or there is
        no skin around it.

    Notes
    -----
    The fade is 1 at the border and falls linearly to 0 at a depth of 15-45 % of the
    lesion's inscribed radius (the maximum of its distance transform). With probability
    0.5 it covers only a sector of 120-300 degrees around the lesion centre, with soft
    edges: a lesion with one pale side. The skin colour is the median of a ring of
    pixels just outside the lesion.
    """
    check_rgb_image(image)
    m = as_bool_mask(mask)
    check_same_hw(image, m, ("image", "mask"))
    lo, hi = (check_fraction(v, "strength") for v in strength)
    if lo > hi:
        raise ConfigError(f"`strength` must be (low, high) with low <= high; got {strength!r}.")
    gen = _rng(rng)
    if m.sum() < 50:
        return image.copy()
    m8 = m.astype(np.uint8)
    depth = cv2.distanceTransform(m8, cv2.DIST_L2, 5)
    radius = float(depth.max())
    ring_px = max(2, int(round(0.15 * radius)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring_px + 1,) * 2)
    ring = cv2.dilate(m8, disk).astype(bool) & ~m
    if ring.sum() < 10:
        return image.copy()
    skin = np.median(image[ring].astype(np.float32), axis=0)
    band = max(1.0, radius * gen.uniform(0.15, 0.45))
    weight = np.clip(1 - (depth - 1) / band, 0, 1) * m
    if gen.random() < 0.5:
        ys, xs = np.nonzero(m)
        cy, cx = ys.mean(), xs.mean()
        yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
        ang = np.arctan2(yy - cy, xx - cx)
        centre, half = gen.uniform(-np.pi, np.pi), np.deg2rad(gen.uniform(60, 150))
        off = np.abs((ang - centre + np.pi) % (2 * np.pi) - np.pi)  # angular distance to the sector centre
        weight = weight * np.clip((half - off) / np.deg2rad(30) + 0.5, 0, 1)
    weight = (weight * gen.uniform(lo, hi)).astype(np.float32)[..., None]
    out = image.astype(np.float32) * (1 - weight) + skin * weight
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


class FailureAugmentation:
    """Ink marks, pale halos and hair at random, then an inner (albumentations) pipeline.

    Parameters
    ----------
    inner : callable or None
        Called as ``inner(image=..., mask=...)`` after the simulators (e.g.
        :func:`skinseg.data.train_augmentation`); None returns their output as is.
    ink_p, halo_p, hair_p : float
        Probability of each simulator per image, in [0, 1].
    seed : int or None
        Seed of the simulators; :meth:`set_random_seed` re-seeds them (and ``inner``).

    Examples
    --------
    >>> from skinseg.testing import synthetic_lesion
    >>> image, mask = synthetic_lesion(rng=0)
    >>> aug = FailureAugmentation(ink_p=1.0, halo_p=1.0, hair_p=0.0, seed=0)
    >>> out = aug(image=image, mask=mask)
    >>> out["image"].shape, bool((out["mask"] == mask).all())
    ((256, 256, 3), True)
    """

    def __init__(self, inner: Callable[..., dict[str, Any]] | None = None, *, ink_p: float = 0.25,
                 halo_p: float = 0.25, hair_p: float = 0.2, seed: int | None = None) -> None:
        self.inner = inner
        self.ink_p = check_fraction(ink_p, "ink_p")
        self.halo_p = check_fraction(halo_p, "halo_p")
        self.hair_p = check_fraction(hair_p, "hair_p")
        self._rng = np.random.default_rng(seed)

    def set_random_seed(self, seed: int) -> None:
        """Re-seed the simulators and, if it has ``set_random_seed``, the inner pipeline."""
        self._rng = np.random.default_rng(seed)
        if hasattr(self.inner, "set_random_seed"):
            self.inner.set_random_seed(seed)

    def to_dict(self) -> dict[str, float]:
        """The probabilities, for the training record."""
        return {"ink_p": self.ink_p, "halo_p": self.halo_p, "hair_p": self.hair_p}

    def __call__(self, *, image: RGBImage, mask: np.ndarray) -> dict[str, Any]:
        gen = self._rng
        lesion = np.asarray(mask) > 0
        if gen.random() < self.halo_p:
            image = add_pale_halo(image, lesion, rng=gen)
        if gen.random() < self.ink_p:
            image = add_ink_marks(image, lesion, rng=gen)
        if gen.random() < self.hair_p:
            diag = float(np.hypot(*image.shape[:2]))
            image = add_synthetic_hair(image, n_hairs=int(gen.integers(2, 11)),
                                       width_range=(0.8, max(0.8, diag / 160)),
                                       color="dark" if gen.random() < 0.75 else "mixed", rng=gen)[0]
        if self.inner is None:
            return {"image": image, "mask": mask}
        return self.inner(image=image, mask=mask)
