"""Colour constancy for dermoscopy images: Shades-of-Gray normalisation (uint8 in/out).

Dermoscopes differ in light source, optics and white balance, so the same skin can
come out reddish, yellowish or bluish. Shades of Gray estimates the illuminant colour
as the Minkowski p-norm mean of each channel and divides it out, so that the estimated
illuminant becomes neutral grey. Several ISIC challenge winners used it with p = 6
(e.g. Barata et al. 2015; Matsunaga et al., ISIC 2017 Part 3).
"""

from __future__ import annotations

import numbers

import numpy as np

from .._checks import check_rgb_image, did_you_mean
from .._types import RGBImage
from ..errors import ConfigError, UnknownNameError

__all__ = ["normalize_color", "illuminant_shades_of_gray", "COLOR_METHODS"]

COLOR_METHODS: tuple[str, ...] = ("shades_of_gray",)
"""Colour-normalisation methods of :func:`normalize_color`."""

_PARAMS = {"shades_of_gray": ("p",)}
_CHUNK_PIXELS = 1 << 16


def _check_p(p: object) -> float:
    ok = isinstance(p, numbers.Real) and not isinstance(p, bool) and np.isfinite(float(p)) and 1 <= p <= 64
    if not ok:
        raise ConfigError(f"`p` must be a finite number in [1, 64] (1: grey world; 6: usual); got {p!r}.")
    return float(p)


def _check_method(method: object) -> str:
    if isinstance(method, str) and method.lower() in COLOR_METHODS:
        return method.lower()
    extra = did_you_mean(str(method).lower(), COLOR_METHODS)
    valid = ", ".join(COLOR_METHODS)
    raise UnknownNameError(f"Unknown colour-normalisation method {method!r}. Available: {valid}.{extra}")


def _validate_params(method: str, params: dict[str, object]) -> dict[str, object]:
    """Validate the keyword arguments of ``normalize_color(method=...)`` without an image; drop Nones.

    Used by :class:`skinseg.preprocess.PreprocessConfig`.
    """
    allowed = _PARAMS[method]
    out: dict[str, object] = {}
    for key, value in params.items():
        if key not in allowed:
            raise ConfigError(
                f"`{key}` is not a parameter of normalize_color(method={method!r}); "
                f"valid: {', '.join(allowed)}.{did_you_mean(str(key), allowed)}"
            )
        if value is not None:
            out[key] = _check_p(value)
    return out


def illuminant_shades_of_gray(image: RGBImage, *, p: float = 6) -> np.ndarray:
    """The Shades-of-Gray illuminant estimate of ``image``: (3,) float64, unit Euclidean norm.

    ``e_c = (mean over pixels of I_c ** p) ** (1 / p)`` per channel, then ``e / ||e||``.
    A neutral (grey) illuminant is ``(1, 1, 1) / sqrt(3)``.
    """
    check_rgb_image(image)
    p = _check_p(p)
    x = image.reshape(-1, 3)
    # the mean of x**p over the pixels, in chunks (a whole float64 copy of a large image is several
    # copies of the image in memory); each chunk is reduced after the running sum, row by row, which is
    # the order np.mean(axis=0) adds the rows in, so the result is bitwise the same
    total = np.zeros((1, 3))
    for start in range(0, x.shape[0], _CHUNK_PIXELS):
        part = x[start:start + _CHUNK_PIXELS].astype(np.float64)
        part /= 255.0
        np.power(part, p, out=part)
        total = np.add.reduce(np.concatenate([total, part]), axis=0, keepdims=True)
    e = np.power(total[0] / x.shape[0], 1.0 / p)
    norm = float(np.linalg.norm(e))
    if norm == 0.0:  # an all-black image: nothing to estimate
        return np.full(3, 1.0 / np.sqrt(3.0))
    return e / norm


def normalize_color(image: RGBImage, *, method: str = "shades_of_gray", p: float = 6) -> RGBImage:
    """Remove the colour cast of the light source (colour constancy).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    method : {"shades_of_gray"}
        The illuminant estimate. ``"shades_of_gray"``: Minkowski p-norm mean of each
        channel (Finlayson & Trezzi 2004).
    p : float
        Norm order in [1, 64]: 1 is grey world, large p approaches max-RGB (white
        patch). 6 is the common choice for dermoscopy.

    Returns
    -------
    (H, W, 3) uint8 ndarray
        A new image: each channel multiplied by ``1 / (sqrt(3) * e_c)``, where ``e`` is
        the unit-norm illuminant estimate (:func:`illuminant_shades_of_gray`), then
        clipped to [0, 255] and rounded. A grey illuminant leaves the image unchanged.

    Raises
    ------
    TypeError, InvalidImageError
        If ``image`` is not an (H, W, 3) uint8 array.
    UnknownNameError
        For an unknown ``method``.
    ConfigError
        For ``p`` outside [1, 64].

    Notes
    -----
    The gains are per image, so the same lesion photographed under two light sources
    maps to (nearly) the same colours. Gains above 1 can clip bright pixels; that is
    part of the method as the ISIC entries used it. Black vignette corners contribute
    almost nothing to the p = 6 mean.

    References
    ----------
    G. D. Finlayson and E. Trezzi, "Shades of Gray and Colour Constancy", Color and
    Imaging Conference, 2004. C. Barata, M. E. Celebi and J. S. Marques, "Improving
    dermoscopy image classification using color constancy", IEEE JBHI 19(3), 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skinseg.testing import synthetic_lesion
    >>> image, _ = synthetic_lesion(rng=0)
    >>> cast = np.clip(image * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)
    >>> out = normalize_color(cast)
    >>> out.shape, out.dtype
    ((256, 256, 3), dtype('uint8'))
    """
    check_rgb_image(image)
    _check_method(method)
    e = illuminant_shades_of_gray(image, p=p)
    gains = 1.0 / (np.sqrt(3.0) * np.maximum(e, 1e-6))
    out = image.astype(np.float32)
    out *= gains.astype(np.float32)  # in place: one float32 copy of the image, not three
    np.clip(out, 0.0, 255.0, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint8)
