"""Synthetic dermoscopy data for tests, examples and benchmarks (numpy + OpenCV only).

Everything here is seeded through a keyword-only ``rng`` (a ``numpy.random.Generator``,
an ``int`` seed, or ``None`` for fresh entropy); the global numpy RNG is never touched.
The images are plausible, not realistic: they exist so that hair detectors, filters and
segmenters can be tested offline against a known ground truth.
"""

from __future__ import annotations

import numbers
from typing import Literal

import cv2
import numpy as np

from ._checks import check_positive_int, check_rgb_image
from ._types import BinaryMask, RGBImage
from .errors import ArgumentTypeError, ConfigError

__all__ = ["synthetic_lesion", "add_synthetic_hair", "HAIR_VISIBLE_LEVELS"]

HAIR_VISIBLE_LEVELS = 10
"""A pixel belongs to the ground-truth hair mask of :func:`add_synthetic_hair` when the
hair changed at least one of its channels by this many uint8 levels."""

_MIN_SIDE = 8
_SUPERSAMPLE = 4  # hairs are rasterised at 4x and area-averaged, i.e. antialiased to 1/16 px^2

_DARK_HAIR = (15.0, 70.0)  # red level of black .. dark-brown hair; G and B follow a brown hue
_LIGHT_HAIR = (np.array([215.0, 190.0, 140.0]), np.array([235.0, 232.0, 225.0]))  # blond .. white


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ArgumentTypeError(f"`rng` must be a numpy.random.Generator, an int seed or None; got "
                            f"{type(rng).__name__}.")


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field with features of about ``scale`` pixels (float32)."""
    gh, gw = max(2, int(round(h / scale)) + 2), max(2, int(round(w / scale)) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(field.std())
    return (field - field.mean()) / (std if std > 1e-6 else 1.0)


def synthetic_lesion(
    shape: tuple[int, int] = (256, 256), *, rng: np.random.Generator | int | None = None
) -> tuple[RGBImage, BinaryMask]:
    """Draw a synthetic dermoscopy image of one pigmented lesion.

    The background is skin-coloured with low-frequency shading, a dermoscope-like dark
    vignette and fine texture; the lesion is a brownish irregular blob (soft border,
    darker centre) holding a few dark dots/globules, so hair detectors are tested against
    blob-like structures. All sizes are relative to the image, so any shape works.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` in pixels, each at least 8.
    rng : numpy.random.Generator or int or None
        Source of randomness (keyword-only); an int is a seed.

    Returns
    -------
    image : (H, W, 3) uint8 ndarray
        RGB image.
    mask : (H, W) bool ndarray
        Lesion mask (the dots lie inside it).

    Raises
    ------
    ConfigError
        If ``shape`` is not two integers >= 8.

    Examples
    --------
    >>> from skinseg.testing import synthetic_lesion
    >>> image, mask = synthetic_lesion((192, 256), rng=0)
    >>> image.shape, image.dtype, mask.shape, mask.dtype
    ((192, 256, 3), dtype('uint8'), (192, 256), dtype('bool'))
    """
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)
        or min(shape) < _MIN_SIDE
    ):
        raise ConfigError(f"`shape` must be a pair of integers (H, W), each >= {_MIN_SIDE}; got {shape!r}.")
    gen = _as_rng(rng)
    h, w = int(shape[0]), int(shape[1])
    side = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # --- skin background: base colour, shading, vignette, texture
    skin = np.array([gen.uniform(200, 235), gen.uniform(150, 185), gen.uniform(130, 165)], np.float32)
    shade = 1.0 + 0.05 * _smooth_field(gen, h, w, side / 2.0)
    rr = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    vignette = 1.0 - 0.25 * np.clip(rr - 0.75, 0, None) ** 2
    texture = 0.03 * _smooth_field(gen, h, w, max(2.0, side / 40.0))
    img = skin[None, None, :] * (shade * vignette + texture)[..., None]

    # --- irregular lesion: radius r(theta) = r0 (1 + sum_k a_k cos(k theta + phi_k))
    cy = h / 2 + gen.uniform(-0.1, 0.1) * h
    cx = w / 2 + gen.uniform(-0.1, 0.1) * w
    r0 = side * gen.uniform(0.2, 0.3)
    theta = np.arctan2(yy - cy, xx - cx)
    radius = np.full_like(theta, r0)
    for k in range(2, 7):
        radius += r0 * gen.uniform(0.02, 0.12) / k**0.5 * np.cos(k * theta + gen.uniform(0, 2 * np.pi))
    dist = np.hypot(yy - cy, xx - cx) / radius  # < 1 inside
    mask = dist < 1.0
    edge = max(1.0, side / 80.0) / r0  # soft border, about side/80 px wide
    alpha = np.clip((1.0 - dist) / edge + 0.5, 0.0, 1.0)
    brown = np.array([gen.uniform(110, 150), gen.uniform(65, 95), gen.uniform(40, 70)], np.float32)
    darkening = 1.0 - 0.35 * np.clip(1.0 - dist, 0, 1) + 0.06 * _smooth_field(gen, h, w, side / 10.0)
    lesion_rgb = brown[None, None, :] * darkening[..., None]
    img = img * (1 - alpha[..., None]) + lesion_rgb * alpha[..., None]

    # --- dots and globules (round, dark, 1-4 % of the image side in radius) inside the lesion
    n_dots = int(gen.integers(6, 14))
    dot_colour = brown * gen.uniform(0.35, 0.55)
    for _ in range(n_dots):
        ang, rad = gen.uniform(0, 2 * np.pi), gen.uniform(0.1, 0.75)
        dy, dx = cy + rad * r0 * np.sin(ang), cx + rad * r0 * np.cos(ang)
        dr = side * gen.uniform(0.01, 0.04)
        strength = gen.uniform(0.7, 1.0)
        y0, y1 = max(0, int(dy - dr - 2)), min(h, int(dy + dr + 3))
        x0, x1 = max(0, int(dx - dr - 2)), min(w, int(dx + dr + 3))
        if y1 <= y0 or x1 <= x0:
            continue
        d = np.hypot(yy[y0:y1, x0:x1] - dy, xx[y0:y1, x0:x1] - dx)
        a = (np.clip(dr + 0.5 - d, 0, 1) * strength)[..., None]  # antialiased disc
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + dot_colour * a

    img += gen.normal(0.0, 2.0, size=img.shape).astype(np.float32)  # sensor noise
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return image, mask


def _bezier(p: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (
        (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    )


def add_synthetic_hair(
    image: RGBImage,
    *,
    n_hairs: int = 12,
    width_range: tuple[float, float] = (1.0, 4.0),
    color: Literal["dark", "light", "mixed"] = "dark",
    rng: np.random.Generator | int | None = None,
) -> tuple[RGBImage, BinaryMask]:
    """Draw curved, antialiased hairs over ``image``.

    Each hair is a cubic Bezier curve whose chord is 30-80 % of the image diagonal, with a
    random bend, a constant width drawn uniformly from ``width_range`` and a colour that
    varies slowly along the hair (about +-10 %). Hairs are rasterised at 4x and
    area-averaged, so their edges are antialiased.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    n_hairs : int
        Number of hairs, >= 0.
    width_range : tuple of float
        ``(min, max)`` hair width in pixels, ``0.5 <= min <= max``.
    color : {"dark", "light", "mixed"}
        Dark brown/black hairs, light (blond/white) hairs, or each hair dark with
        probability 0.6 and light otherwise.
    rng : numpy.random.Generator or int or None
        Source of randomness (keyword-only); an int is a seed.

    Returns
    -------
    hairy : (H, W, 3) uint8 ndarray
        A new image with the hairs.
    hair_mask : (H, W) bool ndarray
        Ground truth: pixels where the hairs changed some channel by at least
        ``HAIR_VISIBLE_LEVELS`` (10) uint8 levels.

    Raises
    ------
    ConfigError
        For an invalid ``n_hairs``, ``width_range`` or ``color``.

    Examples
    --------
    >>> from skinseg.testing import add_synthetic_hair, synthetic_lesion
    >>> image, _ = synthetic_lesion(rng=0)
    >>> hairy, hair = add_synthetic_hair(image, n_hairs=5, rng=1)
    >>> bool(hair.any()), hairy.shape == image.shape
    (True, True)
    """
    check_rgb_image(image)
    n_hairs = check_positive_int(n_hairs, "n_hairs", minimum=0)
    if (
        not isinstance(width_range, (tuple, list))
        or len(width_range) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in width_range)
        or not 0.5 <= float(width_range[0]) <= float(width_range[1])
    ):
        raise ConfigError(
            "`width_range` must be a pair (min, max) of pixel widths with 0.5 <= min <= max; "
            f"got {width_range!r}."
        )
    if color not in ("dark", "light", "mixed"):
        raise ConfigError(f"`color` must be one of 'dark', 'light', 'mixed'; got {color!r}.")
    gen = _as_rng(rng)
    h, w = image.shape[:2]
    out = image.astype(np.float32)
    diag = float(np.hypot(h, w))
    s = _SUPERSAMPLE
    for _ in range(n_hairs):
        width = gen.uniform(float(width_range[0]), float(width_range[1]))
        light = color == "light" or (color == "mixed" and gen.random() >= 0.6)
        if light:
            base = (_LIGHT_HAIR[0] + gen.random() * (_LIGHT_HAIR[1] - _LIGHT_HAIR[0])).astype(np.float32)
        else:
            red = gen.uniform(*_DARK_HAIR)
            base = np.array([red, red * gen.uniform(0.65, 0.85), red * gen.uniform(0.5, 0.7)], np.float32)
        # geometry: chord of random direction through a random point, bent control points
        length = diag * gen.uniform(0.3, 0.8)
        ang = gen.uniform(0, np.pi)
        centre = np.array([gen.uniform(0, w), gen.uniform(0, h)])
        u = np.array([np.cos(ang), np.sin(ang)])
        nrm = np.array([-u[1], u[0]])
        p0, p3 = centre - u * length / 2, centre + u * length / 2
        p1 = p0 + u * length / 3 + nrm * length * gen.uniform(-0.25, 0.25)
        p2 = p0 + 2 * u * length / 3 + nrm * length * gen.uniform(-0.25, 0.25)
        pts = _bezier(np.stack([p0, p1, p2, p3]), max(16, int(length / 2)))
        pad = width + 2
        x0, y0 = max(0, int(np.floor(pts[:, 0].min() - pad))), max(0, int(np.floor(pts[:, 1].min() - pad)))
        x1, y1 = min(w, int(np.ceil(pts[:, 0].max() + pad))), min(h, int(np.ceil(pts[:, 1].max() + pad)))
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.uint8)
        poly = np.rint((pts - [x0, y0]) * s * 16 + (s * 16) / 2 - 8).astype(np.int32)  # 4 fractional bits
        cv2.polylines(canvas, [poly], False, 255, thickness=max(1, int(round(width * s))),
                      lineType=cv2.LINE_8, shift=4)
        cov = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        if not cov.any():
            continue
        vary = 1.0 + 0.1 * np.clip(_smooth_field(gen, y1 - y0, x1 - x0, max(4.0, length / 6)), -2, 2)
        opacity = gen.uniform(0.85, 1.0)
        colour = base[None, None, :] * vary[..., None]
        a = (cov * opacity)[..., None]
        region = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = region * (1 - a) + colour * a
    hairy = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    diff = np.abs(hairy.astype(np.int16) - image.astype(np.int16)).max(axis=2)
    return hairy, diff >= HAIR_VISIBLE_LEVELS
