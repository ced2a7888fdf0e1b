"""Downstream lesion classifier on crops cut with the lesion mask (stage after segmentation).

The networks, their config and checkpoints are in :mod:`skinseg.models` (re-exported
here): ``create_classifier`` builds a timm network (offline ImageNet EfficientNet-Lite0
by default) and ``load_classifier("default")`` loads the bundled ensemble. This package
runs them: ``predict_proba(model, image, mask)`` -> (K,), ``predict_proba_batch`` ->
(N, K), ``predict_label`` -> class name, ``predict`` -> ``{label: probability}``;
``gradcam`` explains a prediction; ``fit_classifier`` trains on precomputed crops.
Folders are classified by :func:`skinseg.runs.classify_folder` (``skinseg classify``).
"""

from __future__ import annotations

from ..models.checkpoint import load_classifier, save_classifier
from ..models.classifiers import Classifier, ClassifierEnsemble, create_classifier
from ..models.config import CLASS_NAMES, ClassifierConfig
from .gradcam import gradcam, gradcam_overlay
from .predict import (
    crops_to_tensor,
    predict,
    predict_label,
    predict_proba,
    predict_proba_batch,
    predict_proba_crops,
    prepare_crop,
)
from .train import (
    ClassifierTrainConfig,
    LabelledItem,
    build_crops,
    class_weights,
    classifier_augmentation,
    fit_classifier,
    read_labelled_manifest,
)

__all__ = [
    "CLASS_NAMES",
    "Classifier",
    "ClassifierConfig",
    "ClassifierEnsemble",
    "create_classifier",
    "load_classifier",
    "save_classifier",
    "crops_to_tensor",
    "gradcam",
    "gradcam_overlay",
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
