"""Hair detection and removal for dermoscopy images: DullRazor and the black-hat recipe.

Two methods share one API (``method=``):

``"dullrazor"`` (default)
    Lee et al. (1997): per-channel generalised grey-scale closing with linear structuring
    elements at 0, 45 and 90 degrees, a threshold, a shape test that keeps only thin and
    long structures (so dots and globules survive), a small dilation, replacement of every
    hair pixel by linear interpolation between the nearest non-hair pixels across the
    hair, and a median filter over the replaced pixels.
``"blackhat"``
    The common fast recipe and the benchmark baseline: grey-scale black-hat with a cross
    kernel, a threshold, a small dilation and :func:`cv2.inpaint` (Telea or Navier-Stokes).

:func:`detect_hair` returns the hair pixels; :func:`remove_hair` dilates that mask by
``dilation`` pixels (to catch the faint antialiased fringe) before replacing it.

Scale rule
----------
Hair has a fixed physical width and dermoscopes a roughly fixed field of view, so hair
width in pixels grows with the image. Parameters left at ``None`` are set from
``s = max(H, W) / 1024`` (``s = 1`` for ISIC images resized to 1024x768); ``odd(x)`` is
the odd integer nearest to ``x`` (ties up):

==================  ============================  =======  ======  ======
parameter           rule                          1024 px  512 px  256 px
==================  ============================  =======  ======  ======
``kernel_size``     odd(3 + 16 s), at least 7     19       11      7
``min_length``      round(60 s), >= 3 kernel_size 60       33      21
``max_width``       round(12 s), at least 8       12       8       8
``dilation``        round(s), at least 1          1        1       1
``median_size``     odd(2 + s), at least 3        3        3       3
``inpaint_radius``  round(3 s), at least 1        3        2       1
==================  ============================  =======  ======  ======

Intensity thresholds are in uint8 levels and do not scale (24 for dullrazor, 10 for
blackhat). Any parameter can be given explicitly, in pixels of the image at hand. The
defaults were tuned on ISIC 2017 train/val images with simulated hair
(``benchmarks/hair_removal.py``).
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import cv2
import numpy as np
from scipy import ndimage

from .._checks import (
    as_bool_mask,
    check_odd_int,
    check_positive_int,
    check_rgb_image,
    check_same_hw,
    did_you_mean,
)
from .._types import BinaryMask, RGBImage
from ..errors import ConfigError, UnknownNameError

__all__ = ["detect_hair", "remove_hair", "HAIR_METHODS", "HAIR_COLORS", "INPAINT_METHODS"]

HairMethod = Literal["dullrazor", "blackhat"]
HairColor = Literal["dark", "light", "both"]
InpaintMethod = Literal["telea", "ns"]

HAIR_METHODS: tuple[str, ...] = ("blackhat", "dullrazor")
HAIR_COLORS: tuple[str, ...] = ("dark", "light", "both")
INPAINT_METHODS: tuple[str, ...] = ("telea", "ns")

_REFERENCE_SIDE = 1024.0
_DEFAULT_THRESHOLD = {"dullrazor": 24.0, "blackhat": 10.0}  # uint8 levels

# Which keyword applies to which method (used to reject parameters that would be ignored).
_DETECT_PARAMS = {
    "dullrazor": ("hair_color", "kernel_size", "threshold", "min_length", "max_width"),
    "blackhat": ("hair_color", "kernel_size", "threshold"),
}
_REMOVE_PARAMS = {
    "dullrazor": ("dilation", "median_size"),
    "blackhat": ("dilation", "inpaint_radius", "inpaint_method"),
}


# --------------------------------------------------------------------------- parameters
def _odd(x: float, minimum: int) -> int:
    k = int(np.floor(x / 2.0)) * 2 + 1  # nearest odd integer
    return max(minimum, k)


def _auto(name: str, long_side: int) -> int:
    s = long_side / _REFERENCE_SIDE
    if name == "kernel_size":
        return _odd(3 + 16 * s, 7)
    if name == "min_length":  # and at least 3 * kernel_size, see _resolve
        return int(round(60 * s))
    if name == "max_width":
        return max(8, int(round(12 * s)))
    if name == "dilation":
        return max(1, int(round(s)))
    if name == "median_size":
        return _odd(2 + s, 3)
    if name == "inpaint_radius":
        return max(1, int(round(3 * s)))
    raise KeyError(name)  # pragma: no cover - internal


def _check_name(value: object, name: str, valid: tuple[str, ...], what: str) -> str:
    if isinstance(value, str) and value.lower() in valid:
        return value.lower()
    extra = did_you_mean(str(value).lower(), valid)
    raise UnknownNameError(f"Unknown {what} {value!r}. Available: {', '.join(valid)}.{extra}")


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= 255:
        raise ConfigError(f"`threshold` must be a number of uint8 levels in [0, 255]; got {value!r}.")
    return float(value)


def _validate_params(
    method: object, params: dict[str, Any], *, removing: bool, has_mask: bool = False
) -> tuple[str, dict[str, Any]]:
    """Validate method name and explicit (non-None) keyword values, without an image.

    Returns the canonical method name and the validated parameters. Parameters that the
    method would ignore raise :class:`ConfigError`. Used by the public functions and by
    :class:`skinseg.preprocess.PreprocessConfig`.
    """
    m = _check_name(method, "method", HAIR_METHODS, "hair-removal method")
    allowed = set(_DETECT_PARAMS[m]) | (set(_REMOVE_PARAMS[m]) if removing else set())
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key not in allowed:
            owners = [mm for mm in HAIR_METHODS if key in _DETECT_PARAMS[mm] + _REMOVE_PARAMS[mm]]
            if owners and owners != list(HAIR_METHODS):
                raise ConfigError(
                    f"`{key}` applies only to method={owners[0]!r}; got it with method={m!r}. "
                    f"Drop it or use method={owners[0]!r}."
                )
            extra = did_you_mean(key, sorted(allowed))
            raise ConfigError(
                f"`{key}` is not a parameter of {'remove_hair' if removing else 'detect_hair'}"
                f"(method={m!r}); valid: {', '.join(sorted(allowed))}.{extra}"
            )
        if has_mask and key in _DETECT_PARAMS[m]:
            raise ConfigError(
                f"`{key}` is a detection parameter and must be None when `hair_mask` is given; "
                f"got {value!r}. Pass it to detect_hair() instead."
            )
        if key == "hair_color":
            out[key] = _check_name(value, key, HAIR_COLORS, "hair colour")
        elif key == "inpaint_method":
            out[key] = _check_name(value, key, INPAINT_METHODS, "inpaint method")
        elif key == "threshold":
            out[key] = _check_threshold(value)
        elif key == "kernel_size":
            out[key] = check_odd_int(value, key, minimum=3)
        elif key == "median_size":
            out[key] = check_odd_int(value, key, minimum=1)
        elif key == "dilation":
            out[key] = check_positive_int(value, key, minimum=0)
        else:  # min_length, max_width, inpaint_radius
            out[key] = check_positive_int(value, key, minimum=1)
    return m, out


def _resolve(
    method: str, params: dict[str, Any], shape: tuple[int, ...], *, removing: bool
) -> dict[str, Any]:
    """Fill the parameters left at None with the scale-rule defaults for ``shape``."""
    long_side = max(shape[0], shape[1])
    names = _DETECT_PARAMS[method] + (_REMOVE_PARAMS[method] if removing else ())
    out = {}
    for name in names:
        if name in params:
            out[name] = params[name]
        elif name == "hair_color":
            out[name] = "dark"
        elif name == "threshold":
            out[name] = _DEFAULT_THRESHOLD[method]
        elif name == "inpaint_method":
            out[name] = "telea"
        elif name == "min_length":  # blobs the closing fills are about kernel_size wide
            out[name] = max(_auto(name, long_side), 3 * out["kernel_size"])
        else:
            out[name] = _auto(name, long_side)
    return out


# --------------------------------------------------------------------------- detection
def _line_kernels(length: int) -> list[np.ndarray]:
    """Linear structuring elements of ``length`` pixels at 0, 45 and 90 degrees."""
    horizontal = np.ones((1, length), np.uint8)
    vertical = np.ones((length, 1), np.uint8)
    # a digital 45-degree line of ``length`` pixels spans length / sqrt(2) rows and columns
    n = _odd(length / np.sqrt(2.0), 3)
    diagonal = np.ascontiguousarray(np.eye(n, dtype=np.uint8)[::-1])
    return [horizontal, diagonal, vertical]


def _max3(img: np.ndarray) -> np.ndarray:
    c0, c1, c2 = cv2.split(img)
    return cv2.max(cv2.max(c0, c1), c2)


def _dullrazor_response(image: np.ndarray, kernel_size: int, hair_color: str) -> np.ndarray:
    """Generalised grey-scale closing residue, max over RGB channels, uint8 (H, W)."""
    kernels = _line_kernels(kernel_size)
    responses = []
    if hair_color in ("dark", "both"):
        closed = cv2.morphologyEx(image, cv2.MORPH_CLOSE, kernels[0])
        for k in kernels[1:]:
            closed = cv2.max(closed, cv2.morphologyEx(image, cv2.MORPH_CLOSE, k))
        responses.append(_max3(cv2.subtract(closed, image)))  # closing >= image: |I - G| = G - I
    if hair_color in ("light", "both"):
        opened = cv2.morphologyEx(image, cv2.MORPH_OPEN, kernels[0])
        for k in kernels[1:]:
            opened = cv2.min(opened, cv2.morphologyEx(image, cv2.MORPH_OPEN, k))
        responses.append(_max3(cv2.subtract(image, opened)))
    return responses[0] if len(responses) == 1 else cv2.max(responses[0], responses[1])


def _keep_thin_long(candidates: np.ndarray, min_length: int, max_width: int) -> np.ndarray:
    """Keep the 8-connected components that are long (bounding-box diagonal >= min_length)
    and thin (mean width 2 * area / boundary-pixel count <= max_width), as uint8 {0, 1}."""
    n, labels = cv2.connectedComponents(candidates, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros_like(candidates)
    # (connectedComponentsWithStats is ~7x slower than this on 1024x768 masks)
    cand = candidates.view(bool)
    area = np.bincount(labels[cand], minlength=n).astype(np.float64)
    inner = cv2.erode(candidates, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    boundary = np.bincount(labels[cand & (inner == 0)], minlength=n).astype(np.float64)
    width = 2.0 * area / np.maximum(boundary, 1.0)  # a ribbon's width; d / 2 for a disc of diameter d
    keep = (width <= max_width) & (area >= min_length / 2)  # a line L px long has >= L / sqrt(2) px
    keep[0] = False
    if keep.any():
        diag = np.zeros(n)
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is not None and keep[i]:
                diag[i] = np.hypot(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
        keep &= diag >= min_length
    return np.take(keep.astype(np.uint8), np.asarray(labels))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, k)


def _detect(image: np.ndarray, method: str, p: dict[str, Any]) -> np.ndarray:
    """Hair mask as uint8 {0, 1} (internal; trusts its inputs)."""
    thr = p["threshold"]
    if method == "dullrazor":
        response = _dullrazor_response(image, p["kernel_size"], p["hair_color"])
        candidates = (response > thr).astype(np.uint8)
        mask = _keep_thin_long(candidates, p["min_length"], p["max_width"])
    else:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (p["kernel_size"], p["kernel_size"]))
        response = None
        if p["hair_color"] in ("dark", "both"):
            response = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
        if p["hair_color"] in ("light", "both"):
            top = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel)
            response = top if response is None else cv2.max(response, top)
        mask = (response > thr).astype(np.uint8)
    return mask


# --------------------------------------------------------------------------- replacement
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # (dy, dx): 0, 90, 135 (down-right), 45 degrees


def _interpolate_across(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace each masked pixel by linear interpolation between the two nearest unmasked
    pixels along the line (0, 45, 90 or 135 degrees) that crosses the mask over the
    shortest distance; ``mask`` is uint8 {0, 1}.

    Vectorised over the masked pixels: in a padded copy of the mask (0 clear, 1 hair,
    2 outside the image) the masked pixels are sorted along each direction (a stable
    radix sort by line index keeps them in order along the line), so each run of
    consecutive masked pixels is a contiguous slice whose ends give the gap.
    """
    h, w = mask.shape
    out = image.copy()
    f = np.flatnonzero(mask.view(bool))
    n = f.size
    if n == 0:
        return out
    wp = w + 2
    padded = np.full((h + 2, wp), 2, np.uint8)
    padded[1:-1, 1:-1] = mask
    pf = padded.ravel()
    y = f // w
    x = f - y * w
    y += 1
    x += 1
    q = y * wp + x  # padded flat index
    key_type = np.int16 if h + w + 4 < 32767 else np.int32  # int16: numpy uses a radix sort
    idx = np.arange(n, dtype=np.int32)
    # steps back / forward to the first non-hair pixel; negative when that pixel is outside
    before = np.empty((4, n), np.int32)
    after = np.empty((4, n), np.int32)
    offsets = np.array([dy * wp + dx for dy, dx in _DIRECTIONS])
    for k, (_, dx) in enumerate(_DIRECTIONS):
        order: np.ndarray
        if k == 0:
            order = idx  # flatnonzero is row-major: already sorted along rows
            qs = q
        else:
            line = x if dx == 0 else (x - y + h + 2 if dx == 1 else x + y)
            order = np.argsort(line.astype(key_type), kind="stable")
            qs = q[order]
        prev = pf[qs - offsets[k]]
        nxt = pf[qs + offsets[k]]
        is_start = prev != 1
        starts = np.flatnonzero(is_start)
        ends = np.flatnonzero(nxt != 1)
        run = np.cumsum(is_start, dtype=np.int32)
        run -= 1
        sign_a = np.where(prev[starts] == 0, 1, -1).astype(np.int32)
        sign_b = np.where(nxt[ends] == 0, 1, -1).astype(np.int32)
        a = idx - starts[run]
        a += 1
        a *= sign_a[run]
        b = ends[run] - idx
        b += 1
        b *= sign_b[run]
        if k == 0:
            before[0], after[0] = a, b
        else:
            row_b, row_a = before[k], after[k]
            row_b[order] = a
            row_a[order] = b
    factor = np.array([1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0)], np.float32)[:, None]
    gaps = (before + after).astype(np.float32) * factor
    gaps[(before < 0) | (after < 0)] = np.inf
    best = np.argmin(gaps, axis=0)
    cols = np.arange(n)
    two = np.isfinite(gaps[best, cols])
    flat_img = image.reshape(-1)
    flat_out = out.reshape(-1)

    def to_image(qq: np.ndarray) -> np.ndarray:  # padded flat index -> 3 * image flat index
        r = qq // wp
        return ((r - 1) * w + (qq - r * wp - 1)) * 3

    sel = np.flatnonzero(two)
    if sel.size:
        k = best[sel]
        a = before[k, sel]
        b = after[k, sel]
        off = offsets[k]
        i0 = to_image(q[sel] - a * off)
        i1 = to_image(q[sel] + b * off)
        dst = f[sel] * 3
        t = a.astype(np.float32) / (a + b).astype(np.float32)
        for c in range(3):
            v0 = flat_img[i0 + c].astype(np.float32)
            v1 = flat_img[i1 + c].astype(np.float32)
            flat_out[dst + c] = np.rint(v0 + (v1 - v0) * t).astype(np.uint8)
    rest = np.flatnonzero(~two)
    if rest.size:  # every line through the pixel meets the border: nearest clear pixel on one side
        b4, a4 = before[:, rest], after[:, rest]
        dist = np.concatenate([np.where(b4 > 0, b4 * factor, np.inf), np.where(a4 > 0, a4 * factor, np.inf)])
        j = np.argmin(dist, axis=0)
        found = np.isfinite(dist[j, np.arange(rest.size)])
        rest, j = rest[found], j[found]
        k = j % 4
        steps = np.where(j < 4, -before[k, rest], after[k, rest])
        src = to_image(q[rest] + steps * offsets[k])
        for c in range(3):
            flat_out[f[rest] * 3 + c] = flat_img[src + c]
    return out  # pixels with no clear pixel on any of the 8 rays keep their value


# --------------------------------------------------------------------------- public API
def detect_hair(
    image: RGBImage,
    *,
    method: HairMethod = "dullrazor",
    hair_color: HairColor = "dark",
    kernel_size: int | None = None,
    threshold: float | None = None,
    min_length: int | None = None,
    max_width: int | None = None,
) -> BinaryMask:
    """Detect hair in a dermoscopy image.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    method : {"dullrazor", "blackhat"}
        Detector; see the module docstring. Case-insensitive.
    hair_color : {"dark", "light", "both"}
        Dark hair (closings / black-hat), light blond or white hair (openings / top-hat),
        or both. Default "dark": most hair in dermoscopy images is dark, and light-hair
        detection doubles the cost and flags bright structures (reflections, bubbles).
    kernel_size : int or None
        dullrazor: length in pixels of the linear structuring elements; blackhat: side
        of the cross kernel. Odd, >= 3, and wider than the widest hair. None: scale rule.
    threshold : float or None
        A pixel is a hair candidate where the morphological response exceeds this many
        uint8 levels. None: 24 for dullrazor (response = maximum over the RGB channels),
        10 for blackhat (grey-level response).
    min_length : int or None
        dullrazor only: a candidate 8-connected component is hair only if its
        bounding-box diagonal is at least this many pixels. None: scale rule (at least
        3 * ``kernel_size``: the closing fills dark blobs up to about ``kernel_size`` wide).
    max_width : int or None
        dullrazor only: ... and its mean width (2 * area / number of boundary pixels)
        is at most this many pixels. None: scale rule.

    Returns
    -------
    hair_mask : (H, W) bool ndarray
        The hair pixels, not dilated (:func:`remove_hair` dilates before replacing).

    Raises
    ------
    TypeError, InvalidImageError
        If ``image`` is not an (H, W, 3) uint8 array.
    UnknownNameError
        For an unknown ``method`` or ``hair_color``.
    ConfigError
        For an invalid parameter value, or a parameter that ``method`` does not use.

    Notes
    -----
    DullRazor (Lee et al. 1997): for each channel ``I_c`` the generalised grey-scale
    closing residue is ``G_c = |I_c - max(C_0(I_c), C_45(I_c), C_90(I_c))|`` with closings
    ``C_theta`` by lines of ``kernel_size`` pixels; a pixel is a candidate where
    ``max_c G_c > threshold`` (the union of the per-channel binary masks). Light hair
    uses openings symmetrically. The paper verifies candidates per pixel with runs in
    8 directions, which misses hair at angles between those directions; this
    implementation tests each 8-connected component instead (long: bounding-box
    diagonal >= ``min_length``; thin: mean width <= ``max_width``), which does not depend
    on the hair angle and rejects dots and globules (short) and dark areas (wide).

    References
    ----------
    T. Lee, V. Ng, R. Gallagher, A. Coldman, D. McLean, "DullRazor: A software approach
    to hair removal from images", Comput. Biol. Med. 27(6):533-543, 1997.

    Examples
    --------
    >>> from skinseg.testing import add_synthetic_hair, synthetic_lesion
    >>> image, _ = synthetic_lesion(rng=0)
    >>> hairy, truth = add_synthetic_hair(image, rng=1)
    >>> hair = detect_hair(hairy)
    >>> hair.shape, hair.dtype, bool(hair[truth].mean() > 0.8)
    ((256, 256), dtype('bool'), True)
    """
    check_rgb_image(image)
    params = dict(hair_color=hair_color, kernel_size=kernel_size, threshold=threshold,
                  min_length=min_length, max_width=max_width)
    m, checked = _validate_params(method, params, removing=False)
    p = _resolve(m, checked, image.shape, removing=False)
    return _detect(image, m, p).view(bool)


def remove_hair(
    image: RGBImage,
    *,
    method: HairMethod = "dullrazor",
    hair_mask: BinaryMask | None = None,
    hair_color: HairColor | None = None,
    kernel_size: int | None = None,
    threshold: float | None = None,
    min_length: int | None = None,
    max_width: int | None = None,
    dilation: int | None = None,
    median_size: int | None = None,
    inpaint_radius: int | None = None,
    inpaint_method: InpaintMethod | None = None,
) -> RGBImage:
    """Remove hair from a dermoscopy image.

    ``remove_hair(image)`` equals ``remove_hair(image, hair_mask=detect_hair(image))``.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        RGB image; not modified.
    method : {"dullrazor", "blackhat"}
        Detector and replacement; see the module docstring. Case-insensitive.
    hair_mask : (H, W) bool ndarray or None
        Hair pixels (bool, or integers {0, 1} / {0, 255}), e.g. from
        :func:`detect_hair`. None: detect them with the detection parameters below,
        which must be None when a mask is given.
    hair_color, kernel_size, threshold, min_length, max_width
        Detection parameters, as in :func:`detect_hair` (``hair_color`` None: "dark").
    dilation : int or None
        Radius in pixels by which the hair mask (detected or given) is dilated before
        replacement, to also replace the faint antialiased fringe of each hair; 0
        replaces exactly the mask. None: scale rule.
    median_size : int or None
        dullrazor only: odd side in pixels of the median filter applied to the replaced
        pixels; 1 disables it. None: scale rule.
    inpaint_radius : int or None
        blackhat only: radius in pixels of the neighbourhood :func:`cv2.inpaint` uses.
        None: scale rule.
    inpaint_method : {"telea", "ns"} or None
        blackhat only: Telea's fast marching method or Navier-Stokes. None: "telea".

    Returns
    -------
    clean : (H, W, 3) uint8 ndarray
        A new image; pixels outside the dilated hair mask are unchanged.

    Raises
    ------
    TypeError, InvalidImageError
        If ``image`` is not an (H, W, 3) uint8 array.
    InvalidMaskError
        If ``hair_mask`` is not a binary mask of the image's (H, W).
    UnknownNameError
        For an unknown ``method``, ``hair_color`` or ``inpaint_method``.
    ConfigError
        For an invalid parameter value, or a parameter that ``method`` does not use.

    Notes
    -----
    dullrazor replaces each hair pixel by linear interpolation between the two nearest
    non-hair pixels on either side of it along whichever of the 0, 45, 90 and 135 degree
    lines crosses the hair over the shortest distance (diagonal steps count sqrt(2)); a
    pixel whose every line reaches the image border takes the nearest non-hair pixel on
    one side. If the whole (dilated) mask covers the image, the image is returned
    unchanged, for both methods. The replaced pixels then
    take the value of a ``median_size`` median filter of the result (Lee et al. 1997).
    Images of any size, down to 1x1, are accepted.

    References
    ----------
    T. Lee et al., "DullRazor", Comput. Biol. Med. 27(6):533-543, 1997.
    A. Telea, "An image inpainting technique based on the fast marching method",
    J. Graphics Tools 9(1):23-34, 2004.

    Examples
    --------
    >>> from skinseg.testing import add_synthetic_hair, synthetic_lesion
    >>> image, _ = synthetic_lesion(rng=0)
    >>> hairy, truth = add_synthetic_hair(image, rng=1)
    >>> clean = remove_hair(hairy)
    >>> clean.shape == hairy.shape, clean.dtype
    (True, dtype('uint8'))
    """
    check_rgb_image(image)
    params = dict(hair_color=hair_color, kernel_size=kernel_size, threshold=threshold,
                  min_length=min_length, max_width=max_width, dilation=dilation,
                  median_size=median_size, inpaint_radius=inpaint_radius, inpaint_method=inpaint_method)
    m, checked = _validate_params(method, params, removing=True, has_mask=hair_mask is not None)
    p = _resolve(m, checked, image.shape, removing=True)
    if hair_mask is None:
        mask = _detect(image, m, p)
    else:
        mask = as_bool_mask(hair_mask, "hair_mask")
        check_same_hw(mask, image, ("hair_mask", "image"))
        mask = mask.astype(np.uint8)
    mask = _dilate(mask, p["dilation"])
    if not mask.any() or mask.all():  # nothing to replace / nothing to replace it with
        return image.copy()
    if m == "blackhat":
        flag = cv2.INPAINT_TELEA if p["inpaint_method"] == "telea" else cv2.INPAINT_NS
        return np.asarray(cv2.inpaint(image, mask, p["inpaint_radius"], flag), dtype=np.uint8)
    out = _interpolate_across(image, mask)
    if p["median_size"] > 1:
        smoothed = cv2.medianBlur(out, p["median_size"]).reshape(-1)
        f3 = np.flatnonzero(mask.view(bool)) * 3  # (much faster than out[mask] = ...)
        flat = out.reshape(-1)
        for c in range(3):
            flat[f3 + c] = smoothed[f3 + c]
    return out
