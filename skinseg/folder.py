"""Deprecated: moved to :mod:`skinseg.runs` (``segment_folder`` and friends).

Importing this module warns (FutureWarning); it will be removed in a later release.
"""

from __future__ import annotations

import warnings

from .models.checkpoint import model_fingerprint
from .runs.journal import TIMING_COLUMNS, FolderRunResult
from .runs.outdir import check_output_dir
from .runs.segment import RESULT_COLUMNS, draw_contour_overlay, result_columns, segment_folder

warnings.warn(
    "skinseg.folder is deprecated: use skinseg.runs (segment_folder, FolderRunResult, ...) and "
    "skinseg.models.model_fingerprint.",
    FutureWarning,
    stacklevel=2,
)

__all__ = [
    "segment_folder",
    "FolderRunResult",
    "draw_contour_overlay",
    "check_output_dir",
    "model_fingerprint",
    "RESULT_COLUMNS",
    "TIMING_COLUMNS",
    "result_columns",
]
