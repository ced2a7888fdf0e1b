"""Turn a lesion probability map into a clean binary mask.

``threshold`` -> ``keep_largest_component`` -> ``fill_holes``, chained by
:func:`postprocess_mask`. Every function returns a new (H, W) bool array; inputs are
never modified and an empty mask stays empty.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._checks import as_bool_mask, check_fraction, check_positive_int, check_prob_map
from ._types import BinaryMask, ProbMap
from .errors import ConfigError

__all__ = [
    "threshold",
    "keep_largest_component",
    "remove_small_components",
    "fill_holes",
    "postprocess_mask",
]


def _structure(connectivity: object) -> np.ndarray:
    if isinstance(connectivity, bool) or connectivity not in (4, 8):
        raise ConfigError(f"`connectivity` must be 4 or 8; got {connectivity!r}.")
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def threshold(prob: ProbMap, threshold: float = 0.5) -> BinaryMask:
    """Binarise a probability map: lesion where ``prob >= threshold``.

    Parameters
    ----------
    prob : (H, W) float array in [0, 1]
        Lesion probabilities (after the sigmoid).
    threshold : float in [0, 1], default 0.5
        A pixel whose probability equals the threshold counts as lesion, so ``threshold=0``
        marks every pixel.

    Returns
    -------
    mask : (H, W) bool

    Raises
    ------
    TypeError
        If ``prob`` is not a numpy array.
    ConfigError
        If ``prob`` is not a 2-D float array in [0, 1] (apply a sigmoid to logits first), or
        ``threshold`` is outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> threshold(np.array([[0.2, 0.5], [0.7, 0.49]], dtype=np.float32))
    array([[False,  True],
           [ True, False]])
    """
    check_prob_map(prob, "prob")
    t = check_fraction(threshold, "threshold")
    return np.asarray(prob >= t, dtype=bool)


def keep_largest_component(mask: BinaryMask, *, connectivity: int = 8) -> BinaryMask:
    """Keep only the largest connected lesion region.

    Parameters
    ----------
    mask : (H, W) bool, or integer array with values {0, 1} or {0, 255}
    connectivity : {4, 8}, default 8
        Pixel neighbourhood that connects lesion pixels (8 includes diagonals).

    Returns
    -------
    mask : (H, W) bool
        The largest component; on a tie, the one met first in raster order. An empty
        mask gives an empty mask.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    >>> keep_largest_component(m).astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    """
    m = as_bool_mask(mask, "mask")
    structure = _structure(connectivity)
    labels, n = ndimage.label(m, structure=structure)
    if n <= 1:
        return m.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def remove_small_components(mask: BinaryMask, *, min_size: int = 64, connectivity: int = 8) -> BinaryMask:
    """Remove lesion regions with fewer than ``min_size`` pixels.

    Parameters
    ----------
    mask : (H, W) bool, or integer array with values {0, 1} or {0, 255}
    min_size : int >= 1, default 64
        Smallest region (in pixels) that is kept.
    connectivity : {4, 8}, default 8

    Returns
    -------
    mask : (H, W) bool
    """
    m = as_bool_mask(mask, "mask")
    min_size = check_positive_int(min_size, "min_size")
    labels, n = ndimage.label(m, structure=_structure(connectivity))
    if n == 0:
        return m.copy()
    keep = np.bincount(labels.ravel()) >= min_size
    keep[0] = False
    return keep[labels]


def fill_holes(mask: BinaryMask) -> BinaryMask:
    """Fill background regions that the lesion encloses completely.

    A hole is a background region not 4-connected to the image border
    (``scipy.ndimage.binary_fill_holes``); background touching the border is kept.

    Parameters
    ----------
    mask : (H, W) bool, or integer array with values {0, 1} or {0, 255}

    Returns
    -------
    mask : (H, W) bool

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.ones((3, 3), dtype=bool); ring[1, 1] = False
    >>> bool(fill_holes(ring).all())
    True
    """
    m = as_bool_mask(mask, "mask")
    return ndimage.binary_fill_holes(m)


def postprocess_mask(
    prob: ProbMap,
    *,
    threshold: float = 0.5,
    largest_component: bool = True,
    fill_holes: bool = True,
) -> BinaryMask:
    """Threshold a probability map, keep the largest region (8-connected), then fill its holes.

    Parameters
    ----------
    prob : (H, W) float array in [0, 1]
    threshold : float in [0, 1], default 0.5
        ``prob >= threshold`` is lesion (see :func:`threshold`).
    largest_component : bool, default True
        Apply :func:`keep_largest_component`.
    fill_holes : bool, default True
        Apply :func:`fill_holes` (module function of the same name).

    Returns
    -------
    mask : (H, W) bool
        Empty when no pixel reaches the threshold.

    Examples
    --------
    >>> import numpy as np
    >>> prob = np.zeros((5, 5), dtype=np.float32); prob[1:4, 1:4] = 0.9; prob[2, 2] = 0.1
    >>> postprocess_mask(prob).sum()
    np.int64(9)
    """
    mask = _threshold(prob, threshold)
    if largest_component:
        mask = keep_largest_component(mask)
    if fill_holes:
        mask = _fill_holes(mask)
    return mask


_threshold = threshold
_fill_holes = fill_holes

