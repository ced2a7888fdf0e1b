"""Bootstrap resampling of images, optionally grouped (several images of one lesion resampled together).

A dataset that holds several images of one lesion (HAM10000: 8528 images of 6350 lesions)
must be resampled by lesion: resampling images treats near-copies as independent and
makes the intervals too narrow. :func:`bootstrap_indices` draws whole groups with
replacement (the cluster bootstrap) and returns the image indices of the drawn groups;
without groups every image is its own group (the ordinary bootstrap).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .._checks import check_positive_int
from ..errors import ConfigError

__all__ = ["bootstrap_indices", "group_codes"]


def group_codes(groups: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray | None:
    """``groups`` (one label per sample, any hashable values) as integer codes 0..G-1, or None.

    Raises
    ------
    ConfigError
        ``groups`` does not hold one label per sample.
    """
    if groups is None:
        return None
    labels = list(groups)
    if len(labels) != n:
        raise ConfigError(f"`groups` must hold one label per sample ({n}); got {len(labels)}.")
    codes: dict[object, int] = {}
    return np.array([codes.setdefault(g, len(codes)) for g in labels], dtype=np.int64)


def bootstrap_indices(
    n: int, n_boot: int, rng: np.random.Generator | int | None = 0, *, groups: Sequence[object] | None = None
) -> Iterator[np.ndarray]:
    """Yield ``n_boot`` bootstrap resamples of ``n`` samples as index arrays.

    Without ``groups``: ``n`` indices drawn with replacement. With ``groups`` (one label per
    sample, e.g. a lesion id): as many groups as there are drawn with replacement, and every
    sample of each drawn group taken, so a resample's size varies around ``n``.

    Examples
    --------
    >>> idx = next(bootstrap_indices(4, 1, 0, groups=["a", "a", "b", "c"]))
    >>> sorted(set(idx.tolist())) in ([0, 1], [0, 1, 2], [0, 1, 3], [0, 1, 2, 3], [2], [3], [2, 3])
    True
    """
    n = check_positive_int(n, "n")
    n_boot = check_positive_int(n_boot, "n_boot", minimum=0)
    gen = np.random.default_rng(rng)
    codes = group_codes(groups, n)
    if codes is None:
        for _ in range(n_boot):
            yield gen.integers(0, n, n)
        return
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    members = [order[s : s + c] for s, c in zip(starts, counts, strict=True)]
    for _ in range(n_boot):
        drawn = gen.integers(0, len(members), len(members))
        yield np.concatenate([members[g] for g in drawn])
