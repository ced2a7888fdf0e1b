"""Downstream lesion classifier on crops cut with the lesion mask (stage after segmentation).

``create_classifier`` builds a timm network (offline ImageNet EfficientNet-Lite0
by default); ``load_classifier("default")`` loads the bundled ensemble;
``predict(model, image, mask)`` returns ``{label: probability}``; ``gradcam``
explains a prediction; ``fit_classifier`` trains on precomputed crops.
"""

from __future__ import annotations

from .model import (
    CLASS_NAMES,
    Classifier,
    ClassifierConfig,
    ClassifierEnsemble,
    create_classifier,
    load_classifier,
    save_classifier,
)
from .predict import (
    crops_to_tensor,
    gradcam,
    gradcam_overlay,
    predict,
    predict_proba,
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
    "predict_proba",
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
