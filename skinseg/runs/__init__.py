"""Folder runs: segment or classify every image of a folder, resumably, with one shared journal.

- :mod:`~skinseg.runs.segment` -- :func:`segment_folder` (``skinseg segment``);
- :mod:`~skinseg.runs.classify` -- :func:`classify_folder` (``skinseg classify``);
- :mod:`~skinseg.runs.journal` -- run.json, the append-only journal, the results CSV,
  timings and resume (shared);
- :mod:`~skinseg.runs.outdir` -- output-folder rules: never inside the input, a lock,
  stale temporary files, foreign files (shared);
- :mod:`~skinseg.runs.inputs` -- listing the inputs and their output paths (shared);
- :mod:`~skinseg.runs.ray_engine` -- ``segment_folder(..., engine="ray")``: the same run on a
  Ray cluster with Ray Data (:class:`RayOptions`), its workers in
  :mod:`~skinseg.runs.ray_worker`; :mod:`~skinseg.runs.storage` -- local folders and pyarrow
  URIs (``s3://``, ``gs://``, ...) for it.

The runners use only the public inference core (:class:`skinseg.inference.Predictor`).
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "segment_folder": "segment",
    "draw_contour_overlay": "segment",
    "RESULT_COLUMNS": "segment",
    "result_columns": "segment",
    "classify_folder": "classify",
    "FolderRunResult": "journal",
    "OutputLockedError": "outdir",
    "check_output_dir": "outdir",
    "RayOptions": "ray_engine",
}

__all__ = sorted(_LAZY)


# lazy, so the segment runner's ONNX path never imports torch (the classify runner does)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
