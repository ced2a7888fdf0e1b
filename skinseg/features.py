"""ABCD lesion measurements (asymmetry, border, colour, diameter) from an image and its mask.

:func:`lesion_features` returns one flat dict of numbers per lesion (the keys are
:data:`FEATURE_NAMES`, suitable as CSV columns). All lengths are in pixels unless a key
ends in ``_mm``/``_mm2``; pixels are unit squares with their centres on the integer grid.
The mask is measured as a whole: several components (and holes) are one lesion.
This module is numpy/scipy/scikit-image/OpenCV only; it does not import torch.

The measurements follow the dermoscopic ABCD rule (Stolz et al. 1994) with the
computer-vision definitions that are usual in the literature:

**A -- asymmetry** (Stoecker et al. 1992). The mask is aligned with its principal axes:
centroid ``c`` and second central moments ``mu20, mu02, mu11`` give the orientation
``theta = 0.5 * atan2(2 mu11, mu20 - mu02)`` of the major axis (the eigenvector of the
largest eigenvalue of the covariance of the pixel coordinates). The aligned mask ``M`` is
flipped about the major axis (through ``c``) and, separately, about the minor axis, and

    asymmetry_major = area(M XOR flip_major(M)) / area(M)
    asymmetry_minor = area(M XOR flip_minor(M)) / area(M)
    asymmetry       = (asymmetry_major + asymmetry_minor) / 2

(0 for a shape symmetric about both axes; at most 2). ``area(XOR)`` is computed on a
soft mask, ``sum |M - flip(M)|``: before the rotation the mask is smoothed with a
Gaussian of sigma 1 px (anti-aliasing of the resampling; lesions wider than 512 px are
first area-averaged down to 512 px, which leaves the ratio unchanged). Digitisation
still leaves a floor: up to 0.006 / 0.012 / 0.03 for digital disks of radius
60 / 30 / 10 px, and 0.01 / 0.02 / 0.07 for rotated 2.5:1 ellipses of those semi-major
axes, so compare lesions imaged at similar sizes.

**B -- border irregularity** (Golston et al. 1992; measures reviewed by Lee et al. 2003).
With area ``A`` (pixel count) and perimeter ``P`` (Crofton estimate with 4 directions,
:func:`skimage.measure.perimeter_crofton`; Lehmann & Legland 2012):

    border_compactness = P**2 / (4 pi A)            1 for a circle, larger when irregular
    border_solidity    = min(1, A / A_hull)
    border_convexity   = min(1, P_hull / P)

The hull is that of the smooth shape the pixels sample: the convex hull of the pixel
centres (area ``A_c``, perimeter ``P_c``) grown by half a pixel, so by Steiner's formula
``A_hull = A_c + P_c / 2 + pi / 4`` and ``P_hull = P_c + pi``. Both ratios are clamped to
1 because digitisation can push them slightly above 1 for convex shapes. Digitisation
also keeps a digital disk from being a circle: its compactness is 0.98-1.07 at radius
10 px, 0.99-1.03 at 20-30 px and 0.996-1.006 at 60 px; its solidity is 0.94-0.97 at
radius 10 px, 0.98 at 30 px and 0.99 at 60 px.

``border_fractal_dimension`` is the box-counting dimension of the boundary (Mandelbrot
1982; Falconer 1990; used for lesion borders by Claridge et al. 1992): the boundary
polylines through the centres of the boundary pixels (outer and hole boundaries,
:func:`cv2.findContours`) are sampled every 0.25 px; ``N(s)`` is the number of grid boxes
of side ``s`` holding a sample, averaged over 16 grid positions (shifted by 0, 1/4, 1/2
and 3/4 of a box in x and y), for ``s = 2, 4, 8, ...`` up to a quarter of the boundary's
larger extent (1 px boxes would measure the pixel grid); the dimension is the
least-squares slope of ``log N(s)`` against ``log(1 / s)``. It is about 1 for smooth
boundaries (0.99-1.01 for digital disks of radius 15-120 px) and larger for jagged ones
(1.26 for a digitised Koch snowflake of order 5; theory log 4 / log 3 = 1.262). It is NaN
when the boundary spans fewer than 16 px (fewer than two box sizes).

**C -- colour variegation** (Stolz et al. 1994; Seidenari et al. 2003). Each lesion pixel
is assigned to the nearest of the six dermoscopic colours of the ABCD rule by Euclidean
distance in CIELab (:func:`skimage.color.rgb2lab`, sRGB, D65). The reference colours
(:data:`DERMOSCOPIC_COLORS`) are the normalised-RGB values tabulated by Kasmi &
Mokrani (2016) for their automatic ABCD rule:

    white (1, 1, 1)        red (0.8, 0.2, 0.2)      light brown (0.6, 0.4, 0)
    dark brown (0.2, 0, 0) blue-gray (0.2, 0.6, 0.6) black (0, 0, 0)

    color_frac_<name> = (lesion pixels nearest to <name>) / A
    color_count       = number of colours with color_frac >= COLOR_MIN_FRACTION (0.05)
    color_variance    = mean over L*, a*, b* of the standard deviation of that channel
                        over the lesion pixels (CIELab units; a spread, despite the name)

Every lesion pixel gets one of the six colours; there is no "none" class, so pale skin
inside the mask counts as white or light brown and hair as black or dark brown (remove
hair first, e.g. :func:`skinseg.preprocess.remove_hair`).

**D -- diameter.**

    diameter_px   = maximum Feret diameter: the largest distance between two boundary
                    pixel centres (vertices of their convex hull)
    major_axis_px = 4 sqrt(lambda_1),  minor_axis_px = 4 sqrt(lambda_2), the axes of the
                    ellipse with the same second moments (lambda: eigenvalues of the
                    covariance of the pixel coordinates; as skimage's regionprops)
    area_px       = A,   perimeter_px = P
    diameter_mm   = diameter_px * pixel_size_mm,   area_mm2 = A * pixel_size_mm**2
                    (NaN when no pixel size is given, so the keys never change)

For an ellipse with semi-axes ``a > b`` these give about ``2a`` (Feret and major axis)
and ``2b`` (minor axis).

References
----------
- Stolz W, Riemann A, Cognetta AB, et al. ABCD rule of dermatoscopy: a new practical
  method for early recognition of malignant melanoma. Eur J Dermatol 1994;4:521-527.
- Stoecker WV, Li WW, Moss RH. Automatic detection of asymmetry in skin tumors. Comput
  Med Imaging Graph 1992;16(3):191-197.
- Golston JE, Stoecker WV, Moss RH, Dhillon IPS. Automatic detection of irregular
  borders in melanoma and other skin tumors. Comput Med Imaging Graph 1992;16(3):199-203.
- Lee TK, McLean DI, Atkins MS. Irregularity index: a new border irregularity measure for
  cutaneous melanocytic lesions. Med Image Anal 2003;7(1):47-64.
- Claridge E, Hall PN, Keefe M, Allen JP. Shape analysis for classification of malignant
  melanoma. J Biomed Eng 1992;14(3):229-234.
- Mandelbrot BB. The Fractal Geometry of Nature. Freeman, 1982.
- Falconer K. Fractal Geometry: Mathematical Foundations and Applications. Wiley, 1990
  (box-counting dimension).
- Lehmann G, Legland D. Efficient N-dimensional surface estimation using Crofton formula
  and run-length encoding. Insight Journal, 2012.
- Seidenari S, Pellacani G, Grana C. Computer description of colours in dermoscopic
  melanocytic lesion images reproducing clinical assessment. Br J Dermatol
  2003;149(3):523-529.
- Kasmi R, Mokrani K. Classification of malignant melanoma and benign skin lesions:
  implementation of automatic ABCD rule. IET Image Process 2016;10(6):448-455.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np
from scipy.spatial.distance import pdist
from skimage.color import rgb2lab
from skimage.measure import perimeter_crofton

from ._checks import as_bool_mask, check_rgb_image, check_same_hw
from ._types import BinaryMask, RGBImage
from .errors import ConfigError, MaskValueError

__all__ = [
    "FEATURE_NAMES",
    "DERMOSCOPIC_COLORS",
    "COLOR_MIN_FRACTION",
    "check_pixel_size",
    "lesion_features",
]

DERMOSCOPIC_COLORS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "red": (0.8, 0.2, 0.2),
    "light_brown": (0.6, 0.4, 0.0),
    "dark_brown": (0.2, 0.0, 0.0),
    "blue_gray": (0.2, 0.6, 0.6),
    "black": (0.0, 0.0, 0.0),
}
"""The six colours of the ABCD rule as normalised sRGB (Kasmi & Mokrani 2016); pixels are
classified to the nearest one in CIELab."""
COLOR_MIN_FRACTION = 0.05
"""A colour counts in ``color_count`` when at least this fraction of the lesion is nearest to it."""

FEATURE_NAMES: tuple[str, ...] = (
    "asymmetry",
    "asymmetry_major",
    "asymmetry_minor",
    "border_compactness",
    "border_solidity",
    "border_convexity",
    "border_fractal_dimension",
    "color_count",
    "color_variance",
    *(f"color_frac_{name}" for name in DERMOSCOPIC_COLORS),
    "diameter_px",
    "major_axis_px",
    "minor_axis_px",
    "area_px",
    "perimeter_px",
    "diameter_mm",
    "area_mm2",
)
"""Keys of :func:`lesion_features`, in order (see the module docstring for each formula)."""

_REFERENCE_LAB = rgb2lab(np.array([list(DERMOSCOPIC_COLORS.values())], dtype=np.float64))[0]
_ASYMMETRY_MAX_SIDE = 512  # lesions wider than this are area-averaged down for the asymmetry
_ASYMMETRY_SIGMA = 1.0  # px, Gaussian anti-aliasing before the rotation
_CONTOUR_STEP = 0.25  # px between boundary samples for the box counting
_MIN_BOX = 2  # px, smallest box of the box counting (1 px boxes see the pixel grid)
_BOX_OFFSETS = 4  # box grids shifted by 0, 1/4, 1/2, 3/4 of a box in x and y; counts are averaged
_COLOUR_CHUNK = 1 << 18  # distinct colours converted to Lab at a time


def check_pixel_size(value: object) -> float | None:
    """``value`` as a float millimetres-per-pixel (> 0, finite), or None; else :class:`ConfigError`."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or float(value) <= 0
    ):
        raise ConfigError(
            f"`pixel_size_mm` must be a positive number (millimetres per pixel) or None; got {value!r}. "
            "For a dermoscope with a 20 mm field of view imaged at 2000 px, it is 0.01."
        )
    return float(value)


# ----------------------------------------------------------------------------- A: asymmetry


def _asymmetry(crop: np.ndarray) -> tuple[float, float]:
    """(about the major axis, about the minor axis) of a bool crop with a background margin."""
    soft: np.ndarray = np.pad(crop, 3).astype(np.float32)
    h, w = soft.shape
    if max(h, w) > _ASYMMETRY_MAX_SIDE:
        scale = _ASYMMETRY_MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        soft = cv2.resize(soft, size, interpolation=cv2.INTER_AREA)
        h, w = soft.shape
    soft = cv2.GaussianBlur(soft, (0, 0), _ASYMMETRY_SIGMA, borderType=cv2.BORDER_CONSTANT)
    mom = cv2.moments(soft, binaryImage=False)
    cx, cy = mom["m10"] / mom["m00"], mom["m01"] / mom["m00"]
    theta = 0.5 * math.atan2(2.0 * mom["mu11"], mom["mu20"] - mom["mu02"])
    # canvas centred on the centroid, large enough for every rotation of the crop
    radius = max(math.hypot(x - cx, y - cy) for x in (0, w - 1) for y in (0, h - 1))
    half = int(math.ceil(radius)) + 2
    cos, sin = math.cos(theta), math.sin(theta)
    # q = R(-theta) (p - c) + (half, half): the major axis becomes the canvas row `half`
    warp = np.array(
        [[cos, sin, half - (cos * cx + sin * cy)], [-sin, cos, half - (-sin * cx + cos * cy)]],
        dtype=np.float64,
    )
    aligned = cv2.warpAffine(
        soft, warp, (2 * half + 1, 2 * half + 1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    ).astype(np.float64)
    total = aligned.sum()
    # flipping the rows mirrors in the major axis (canvas row `half`), the columns in the minor one
    about_major = float(np.abs(aligned - aligned[::-1, :]).sum() / total)
    about_minor = float(np.abs(aligned - aligned[:, ::-1]).sum() / total)
    return about_major, about_minor


# ----------------------------------------------------------------------------- B and D: shape


def _boundary_samples(contours: list[np.ndarray]) -> np.ndarray:
    """(n, 2) x, y points every <= _CONTOUR_STEP px along the closed contour polylines."""
    parts = []
    for c in contours:
        p = c[:, 0, :].astype(np.float64)
        q = np.roll(p, -1, axis=0)
        steps = np.maximum(1, np.ceil(np.hypot(*(q - p).T) / _CONTOUR_STEP)).astype(np.int64)
        idx = np.repeat(np.arange(len(p)), steps)
        t = np.arange(idx.size) - np.repeat(np.cumsum(steps) - steps, steps)  # 0 .. steps-1 per segment
        parts.append(p[idx] + (q[idx] - p[idx]) * (t / steps[idx])[:, None])
    return np.concatenate(parts)


def _box_counting_dimension(points: np.ndarray) -> float:
    points = points - points.min(axis=0)
    extent = float(points.max())
    sizes = []
    s = _MIN_BOX
    while s <= extent / 4:
        sizes.append(s)
        s *= 2
    if len(sizes) < 2:
        return math.nan
    counts = []
    for s in sizes:
        side = int(extent // s) + 2  # boxes per row, offsets included
        total = 0
        for i in range(_BOX_OFFSETS):
            for j in range(_BOX_OFFSETS):
                offset = (s * i / _BOX_OFFSETS, s * j / _BOX_OFFSETS)
                boxes = np.floor((points + offset) / s).astype(np.int64)
                occupied = np.zeros(side * side, dtype=bool)
                occupied[boxes[:, 1] * side + boxes[:, 0]] = True
                total += int(np.count_nonzero(occupied))
        counts.append(total / _BOX_OFFSETS**2)
    x = np.log(1.0 / np.asarray(sizes, dtype=np.float64))
    y = np.log(np.asarray(counts, dtype=np.float64))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _shape(crop: np.ndarray, area: int) -> dict[str, float]:
    u8 = crop.astype(np.uint8)
    mom = cv2.moments(u8, binaryImage=True)
    a, b, c = mom["mu20"] / area, mom["mu11"] / area, mom["mu02"] / area
    root = math.sqrt(((a - c) / 2) ** 2 + b * b)
    lam1, lam2 = (a + c) / 2 + root, max((a + c) / 2 - root, 0.0)

    perim = float(perimeter_crofton(crop, directions=4))
    outer, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(np.concatenate(outer))  # pixel centres, (k, 1, 2) int32
    hull_xy = hull[:, 0, :].astype(np.float64)
    feret = float(pdist(hull_xy).max()) if len(hull_xy) > 1 else 0.0
    hull_f = hull.astype(np.float32)
    hull_area = cv2.contourArea(hull_f) + cv2.arcLength(hull_f, True) / 2 + math.pi / 4  # Steiner, r = 0.5
    hull_perim = cv2.arcLength(hull_f, True) + math.pi
    every, _ = cv2.findContours(u8, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)

    return {
        "border_compactness": perim * perim / (4.0 * math.pi * area),
        "border_solidity": min(1.0, area / hull_area),
        "border_convexity": min(1.0, hull_perim / perim),
        "border_fractal_dimension": _box_counting_dimension(_boundary_samples(list(every))),
        "diameter_px": feret,
        "major_axis_px": 4.0 * math.sqrt(lam1),
        "minor_axis_px": 4.0 * math.sqrt(lam2),
        "perimeter_px": perim,
    }


# ----------------------------------------------------------------------------- C: colour


def _colour(pixels: np.ndarray) -> dict[str, float]:
    """Colour features of (N, 3) uint8 RGB lesion pixels.

    Each distinct colour is converted and classified once, in chunks (memory stays bounded
    however many distinct colours there are). The Lab moments are accumulated about the
    most frequent colour, so a uniform lesion has a spread of exactly 0.
    """
    n = pixels.shape[0]
    packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
    colours, counts = np.unique(packed, return_counts=True)
    del packed
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.uint8)
    shift = rgb2lab(rgb[None, [int(np.argmax(counts))]])[0, 0]
    per_colour = np.zeros(len(DERMOSCOPIC_COLORS), dtype=np.float64)
    s1 = np.zeros(3, dtype=np.float64)
    s2 = np.zeros(3, dtype=np.float64)
    for start in range(0, len(colours), _COLOUR_CHUNK):
        lab = rgb2lab(rgb[None, start : start + _COLOUR_CHUNK])[0]  # (k, 3) float64
        w = counts[start : start + _COLOUR_CHUNK].astype(np.float64)
        best = np.full(len(lab), np.inf)
        nearest = np.zeros(len(lab), dtype=np.intp)
        for i, ref in enumerate(_REFERENCE_LAB):
            d = ((lab - ref) ** 2).sum(axis=1)
            closer = d < best
            best[closer], nearest[closer] = d[closer], i
        per_colour += np.bincount(nearest, weights=w, minlength=len(DERMOSCOPIC_COLORS))
        dev = lab - shift
        s1 += w @ dev
        s2 += w @ (dev * dev)
    fractions = per_colour / n
    mean_dev = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean_dev * mean_dev, 0.0))
    out: dict[str, float] = {
        "color_count": int(np.count_nonzero(fractions >= COLOR_MIN_FRACTION)),
        "color_variance": float(std.mean()),
    }
    out.update(
        {f"color_frac_{name}": float(f) for name, f in zip(DERMOSCOPIC_COLORS, fractions, strict=True)}
    )
    return out


# ----------------------------------------------------------------------------- public


def lesion_features(
    image: RGBImage, mask: BinaryMask, *, pixel_size_mm: float | None = None
) -> dict[str, float]:
    """ABCD measurements of the lesion ``mask`` in ``image``.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
        The colours are read from it (only under the mask).
    mask : (H, W) bool, or integer {0, 1} / {0, 255}
        The lesion; every foreground pixel counts, all components together.
    pixel_size_mm : float > 0, optional
        Millimetres per pixel, for ``diameter_mm`` and ``area_mm2`` (NaN without it).

    Returns
    -------
    dict[str, float]
        The keys of :data:`FEATURE_NAMES`, in that order: ``asymmetry*``, ``border_*``,
        ``color_*``, ``diameter_px``, ``major_axis_px``, ``minor_axis_px``, ``area_px``,
        ``perimeter_px``, ``diameter_mm``, ``area_mm2``. ``area_px`` and ``color_count``
        are ints, the rest floats. See the module docstring for every formula.
        ``border_fractal_dimension`` is NaN for a boundary under 16 px across.

    Raises
    ------
    TypeError, InvalidImageError
        ``image`` is not an (H, W, 3) uint8 array.
    InvalidMaskError, MaskValueError
        ``mask`` is not a binary (H, W) mask, or it is empty (nothing to measure).
    MaskShapeError
        ``mask`` and ``image`` differ in (H, W).
    ConfigError
        ``pixel_size_mm`` is not a positive number.

    Notes
    -----
    The inputs are not modified. The asymmetry of a digitised symmetric shape is not
    exactly 0, nor is the compactness of a digital disk exactly 1 (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:101, :101]
    >>> disk = (yy - 50) ** 2 + (xx - 50) ** 2 <= 40**2
    >>> image = np.zeros((101, 101, 3), np.uint8)
    >>> f = lesion_features(image, disk, pixel_size_mm=0.05)
    >>> round(f["diameter_px"]), round(f["diameter_mm"], 1), f["color_count"]
    (80, 4.0, 1)
    """
    image = check_rgb_image(image)
    m = as_bool_mask(mask)
    check_same_hw(image, m, ("image", "mask"))
    px = check_pixel_size(pixel_size_mm)
    area = int(np.count_nonzero(m))
    if area == 0:
        raise MaskValueError(
            f"`mask` is empty (no lesion pixel in {m.shape[0]}x{m.shape[1]}), so the lesion has no "
            "asymmetry, border, colour or diameter. Skip images without a lesion before measuring."
        )
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    crop = np.pad(m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)  # a copy with a background margin

    asym_major, asym_minor = _asymmetry(crop)
    shape = _shape(crop, area)
    colour = _colour(image[m])
    values: dict[str, float] = {
        "asymmetry": (asym_major + asym_minor) / 2.0,
        "asymmetry_major": asym_major,
        "asymmetry_minor": asym_minor,
        **shape,
        **colour,
        "area_px": area,
        "diameter_mm": shape["diameter_px"] * px if px is not None else math.nan,
        "area_mm2": area * px * px if px is not None else math.nan,
    }
    return {name: values[name] for name in FEATURE_NAMES}
