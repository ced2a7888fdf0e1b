"""Downstream lesion classifier on crops cut with the lesion mask (stage after segmentation).

The networks, their config and checkpoints are in :mod:`skinseg.models` (re-exported
here): ``create_classifier`` builds a timm network (offline ImageNet EfficientNet-Lite0
by default) and ``load_classifier("default")`` loads the bundled ensemble. This package
runs them: :class:`ClassifierPredictor` is the classifier's inference core (crops, flips,
ensembles, temperature; ONNX Runtime or torch behind the segmenter's backend protocol;
torch-free), ``predict_proba(model, image, mask)`` -> (K,), ``predict_proba_batch`` ->
(N, K), ``predict_label`` -> class code, ``predict`` -> ``{code: probability}`` for torch
models; ``gradcam`` explains a prediction; ``fit_classifier`` trains on precomputed crops.
Each model's classes (codes, full names, malignancy, the melanoma class) are in its config
(:attr:`ClassifierConfig.classes`). Folders are classified by
:func:`skinseg.runs.classify_folder` (``skinseg classify``).

Importing the package does not import torch; the torch-backed names (the networks,
training) are resolved on first use (PEP 562).
"""

from __future__ import annotations

from .._lazy import lazy_attributes
from ..models.checkpoint import load_classifier, save_classifier
from ..models.config import CLASS_NAMES, KNOWN_CLASSES, ClassifierConfig, ClassInfo
from ..models.metadata import METADATA_FIELDS, MetadataModel
from .gradcam import gradcam, gradcam_overlay
from .predict import (
    crops_to_tensor,
    predict,
    predict_label,
    predict_proba,
    predict_proba_batch,
    predict_proba_crops,
)
from .predictor import ClassifierPredictor, member_proba, normalize_crops, prepare_crop

_LAZY = {
    # torch: the networks (skinseg.models.classifiers) and training
    "Classifier": ".models.classifiers",
    "ClassifierEnsemble": ".models.classifiers",
    "create_classifier": ".models.classifiers",
    "ClassifierTrainConfig": "train",
    "LabelledItem": "train",
    "build_crops": "train",
    "class_weights": "train",
    "classifier_augmentation": "train",
    "fit_classifier": "train",
    "read_labelled_manifest": "train",
}

__all__ = [
    "CLASS_NAMES",
    "KNOWN_CLASSES",
    "ClassInfo",
    "Classifier",
    "ClassifierConfig",
    "ClassifierEnsemble",
    "ClassifierPredictor",
    "METADATA_FIELDS",
    "MetadataModel",
    "create_classifier",
    "load_classifier",
    "save_classifier",
    "crops_to_tensor",
    "gradcam",
    "gradcam_overlay",
    "member_proba",
    "normalize_crops",
    "predict",
    "predict_label",
    "predict_proba",
    "predict_proba_batch",
    "predict_proba_crops",
    "prepare_crop",
    "ClassifierTrainConfig",
    "LabelledItem",
    "build_crops",
    "class_weights",
    "classifier_augmentation",
    "fit_classifier",
    "read_labelled_manifest",
]

# ".models.classifiers" is relative to skinseg.classify's parent (one dot more: skinseg.models.classifiers)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
