"""skinseg: dermoscopy lesion segmentation, measurement and classification.

Numpy arrays at the boundary: images are (H, W, 3) uint8 RGB, masks (H, W) bool,
probability maps (H, W) float32. Names are imported lazily from the table below
(PEP 562), so ``import skinseg`` and the numpy-only stages (io, preprocess,
postprocess, metrics) do not import torch, and neither does the ONNX inference path.

Pipeline stages, each a module or package, importing only from earlier ones
(``tests/test_architecture.py`` keeps it so)::

    io -> preprocess, postprocess -> models -> inference -> training
       -> metrics, crops, features -> report, classify -> runs -> cli
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.1.0"

# public name -> submodule that defines it (resolved lazily, PEP 562)
_LAZY: dict[str, str] = {
    # io
    "read_image": "io",
    "read_mask": "io",
    "write_mask": "io",
    "write_image": "io",
    "list_images": "io",
    "pair_images_and_masks": "io",
    # preprocess
    "detect_hair": "preprocess",
    "remove_hair": "preprocess",
    "denoise_median": "preprocess",
    "denoise_wiener": "preprocess",
    "Preprocess": "preprocess",
    "PreprocessConfig": "preprocess",
    # models
    "create_segmenter": "models",
    "list_segmenters": "models",
    "SegmenterConfig": "models",
    "SegmenterEnsemble": "models",
    "save_checkpoint": "models",
    "load_segmenter": "models",
    "bundled_models": "models",
    # inference
    "Predictor": "inference",
    "predict_proba": "inference",
    "predict_proba_batch": "inference",
    "segment": "inference",
    # postprocess
    "threshold": "postprocess",
    "keep_largest_component": "postprocess",
    "fill_holes": "postprocess",
    "postprocess_mask": "postprocess",
    # features
    "lesion_features": "features",
    # crops and classifier
    "crop_lesion": "crops",
    "create_classifier": "classify",
    "load_classifier": "classify",
    "save_classifier": "classify",
    # folder runs
    "segment_folder": "runs",
    "classify_folder": "runs",
}

_SUBMODULES = {
    "io", "preprocess", "models", "losses", "data", "training", "inference", "runs",
    "postprocess", "metrics", "features", "report", "testing", "errors", "cli", "crops", "classify",
    "onnx_backend",  # deprecated alias of inference (it warns on import)
}

__all__ = ["__version__", *sorted(_LAZY)]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, _SUBMODULES)
