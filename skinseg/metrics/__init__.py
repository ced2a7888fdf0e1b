"""Metrics: lesion segmentation (ISIC challenge conventions) and lesion classification.

- :mod:`skinseg.metrics.segmentation`: per-image Dice, IoU, thresholded Jaccard, sensitivity,
  specificity, accuracy and HD95 of binary masks, their aggregation, and folder evaluation
  exactly as the official ISIC scorer;
- :mod:`skinseg.metrics.classification`: confusion matrix, (balanced) accuracy, per-class
  precision/recall/specificity/F1, ROC curves and AUC, sensitivity at fixed specificity and
  bootstrap intervals for class labels and class probabilities, in numpy (checked against
  scikit-learn in the tests; scikit-learn is not needed at run time).

Every public name of both modules is importable from ``skinseg.metrics``. This stage is
numpy/scipy only: it imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from .classification import (
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    check_probs,
    classification_metrics,
    confusion_matrix,
    one_vs_rest_auc,
    operating_point_at_specificity,
    per_class_report,
    positive_class_index,
    resolve_class_names,
    roc_auc,
    roc_curve,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from .folders import EvaluationResult, evaluate_folders, quality_estimates
from .resample import bootstrap_indices, group_codes
from .review import FAILURE_IOU, review_curve, review_table
from .segmentation import (
    ISIC_BINARY_LEVEL,
    ISIC_JACCARD_THRESHOLD,
    METRIC_NAMES,
    POOLED_METRIC_NAMES,
    SegmentationMeter,
    accuracy_score,
    confusion_counts,
    dice_score,
    hd95,
    iou_score,
    segmentation_metrics,
    sensitivity_score,
    specificity_score,
    summarize,
    thresholded_jaccard,
)

# every public name of segmentation, then of classification, then of resample and review (tests check this stays complete)
__all__ = [
    "METRIC_NAMES",
    "POOLED_METRIC_NAMES",
    "ISIC_JACCARD_THRESHOLD",
    "ISIC_BINARY_LEVEL",
    "confusion_counts",
    "dice_score",
    "iou_score",
    "thresholded_jaccard",
    "sensitivity_score",
    "specificity_score",
    "accuracy_score",
    "hd95",
    "segmentation_metrics",
    "summarize",
    "SegmentationMeter",
    "EvaluationResult",
    "evaluate_folders",
    "quality_estimates",
    "confusion_matrix",
    "accuracy",
    "balanced_accuracy",
    "per_class_report",
    "roc_curve",
    "roc_auc",
    "one_vs_rest_auc",
    "sensitivity_at_specificity",
    "specificity_at_sensitivity",
    "classification_metrics",
    "bootstrap_ci",
    "check_probs",
    "resolve_class_names",
    "positive_class_index",
    "operating_point_at_specificity",
    "bootstrap_indices",
    "group_codes",
    "FAILURE_IOU",
    "review_table",
    "review_curve",
]
