"""Folder runs: a job (what is computed and written per image) on an engine (where it runs), resumably.

One skeleton, :func:`run_folder` (:mod:`~skinseg.runs.skeleton`), owns the steps of every run
(options check, listing, lock, journal, resume, progress, error rows, CSV, summary); jobs and
engines plug into it:

- jobs (:mod:`~skinseg.runs.jobs`: the protocol and what they share): :class:`SegmentJob`
  with its entry point :func:`segment_folder` (``skinseg segment``, :mod:`~skinseg.runs.segment`),
  :class:`ClassifyJob` with :func:`classify_folder` (``skinseg classify``, :mod:`~skinseg.runs.classify`);
- engines: :class:`~skinseg.runs.engines.LocalEngine` (threads in this process) and
  :class:`~skinseg.runs.ray_engine.RayEngine` (Ray Data on a cluster, :class:`RayOptions`;
  its workers in :mod:`~skinseg.runs.ray_worker`);
- shared: :mod:`~skinseg.runs.journal` (run.json, the journal, the results CSV, timings,
  resume), :mod:`~skinseg.runs.outdir` (output-folder rules: never inside the input, a lock,
  stale temporary files, foreign files), :mod:`~skinseg.runs.inputs` (listing, one read per
  file), :mod:`~skinseg.runs.storage` (local folders and pyarrow URIs: ``s3://``, ``gs://``,
  ...), :mod:`~skinseg.runs.models` (the jobs' models, sent to Ray workers by value).

The runners use only the public inference cores (:class:`skinseg.inference.Predictor`,
:class:`skinseg.classify.ClassifierPredictor`).
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY = {
    "run_folder": "skeleton",
    "segment_folder": "segment",
    "SegmentJob": "segment",
    "draw_contour_overlay": "segment",
    "RESULT_COLUMNS": "segment",
    "result_columns": "segment",
    "classify_folder": "classify",
    "ClassifyJob": "classify",
    "classification_columns": "classify",
    "FolderRunResult": "journal",
    "OutputLockedError": "outdir",
    "check_output_dir": "outdir",
    "LocalEngine": "engines",
    "RayEngine": "ray_engine",
    "RayOptions": "ray_engine",
}

__all__ = sorted(_LAZY)


# lazy, so importing skinseg.runs stays cheap (and the ONNX paths never import torch)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
