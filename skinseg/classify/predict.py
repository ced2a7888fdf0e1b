"""Classifier inference on (image, mask) pairs with a torch classifier: class probabilities, optional flip TTA.

Symmetric with the segmenter's API: :func:`predict_proba` takes one image (and its
mask) and returns (K,) probabilities, :func:`predict_proba_batch` takes lists and
returns (N, K), :func:`predict_label` returns the class code and :func:`predict` a
``{code: probability}`` dict. They run through the classifier's inference core,
:class:`~skinseg.classify.ClassifierPredictor` (each member of an ensemble cuts its own
crop, the members' softmax probabilities are averaged, then the ensemble's temperature),
with the model's torch backend; ``ClassifierPredictor.load`` runs the ONNX export instead.

Importing this module does not import torch (the functions do, through the model).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_rgb_image
from ..errors import ConfigError
from ..inference import TorchBackend
from .predictor import ClassifierPredictor, member_proba, prepare_crop

if TYPE_CHECKING:
    import torch

    from ..models.classifiers import Classifier, ClassifierEnsemble
    from ..models.config import ClassifierConfig

__all__ = [
    "prepare_crop",
    "crops_to_tensor",
    "predict_proba",
    "predict_proba_batch",
    "predict_proba_crops",
    "predict_label",
    "predict",
]


def crops_to_tensor(crops: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    """(N, S, S, C) uint8 crops -> normalised (N, C, S, S) float32 tensor (the mask channel maps to [-1, 1])."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(list(config.mean) + [0.5] * (x.shape[1] - 3)).view(1, -1, 1, 1)
    std = torch.tensor(list(config.std) + [0.5] * (x.shape[1] - 3)).view(1, -1, 1, 1)
    return (x - mean) / std


def _check_classifier(model: Any, single: bool = False) -> None:
    from ..models.classifiers import Classifier, ClassifierEnsemble

    kinds = Classifier if single else Classifier | ClassifierEnsemble
    if not isinstance(model, kinds):
        if single:
            raise ConfigError(
                "predict_proba_crops takes one Classifier (ensemble members cut different crops); "
                "use predict_proba_batch(model, images, masks) for an ensemble."
            )
        raise ConfigError(
            f"`model` must be a skinseg Classifier or ClassifierEnsemble (load_classifier / create_classifier); "
            f"got {type(model).__name__}."
        )


def predict_proba_crops(
    model: Classifier, crops: np.ndarray, *, tta: bool = False, batch_size: int = 32
) -> np.ndarray:
    """Probabilities (N, K) for crops already cut by :func:`prepare_crop` for this (single) model's config."""
    _check_classifier(model, single=True)
    return member_proba(TorchBackend(model), np.asarray(crops), tta=tta, batch_size=batch_size)


def predict_proba_batch(
    model: Classifier | ClassifierEnsemble,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    *,
    tta: bool | None = None,
    batch_size: int = 16,
    metadata: Sequence[Any] | None = None,
) -> np.ndarray:
    """Class probabilities (N, K) for lists of images and their lesion masks (None: no mask).

    Parameters
    ----------
    model : Classifier or ClassifierEnsemble
    images : list of (H, W, 3) uint8 RGB
    masks : list of (H, W) bool masks or None, optional
        An empty or missing mask falls back to the whole image as the lesion box.
    tta : bool or None
        Also average over horizontal and vertical flips; None (default): the model's own default
        (an ensemble's stored ``tta``; False for a single classifier).
    batch_size : int
        Crops per forward pass.
    metadata : list of mappings or None, optional
        The patients' ``{"age": years, "sex": "male"/"female", "site": body site}``, one per
        image (None, or a missing field: unknown), for a classifier with a metadata model
        (:class:`~skinseg.models.metadata.MetadataModel`; ``classifier-ham10000-7class``). An
        image without metadata gets the image-only probabilities.
    """
    _check_classifier(model)
    predictor = ClassifierPredictor.of(model, tta=tta)
    predictor.batch_size = batch_size
    return predictor.predict_proba_batch(images, masks, metadata)


def predict_proba(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tta: bool | None = None,
    batch_size: int = 16,
    metadata: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Class probabilities (K,) of one image and its lesion mask (None: no mask); they sum to 1.

    ``metadata``: the patient's ``{"age": ..., "sex": ..., "site": ...}`` for a classifier with a
    metadata model (see :func:`predict_proba_batch`), or None.

    Passing a list of images still works but is deprecated: use :func:`predict_proba_batch`.
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3):
        if isinstance(image, list | tuple) or (isinstance(image, np.ndarray) and image.ndim == 4):
            warnings.warn("predict_proba() with a list of images is deprecated; use predict_proba_batch().",
                          FutureWarning, stacklevel=2)
            return predict_proba_batch(model, list(image), mask, tta=tta, batch_size=batch_size,
                                       metadata=metadata)  # type: ignore[arg-type]
        check_rgb_image(image, "image")
    return predict_proba_batch(model, [image], [mask], tta=tta, batch_size=batch_size,
                               metadata=None if metadata is None else [metadata])[0]


def predict_label(
    model: Classifier | ClassifierEnsemble, image: np.ndarray, mask: np.ndarray | None = None, *,
    tta: bool | None = None, metadata: Mapping[str, Any] | None = None
) -> str:
    """The predicted class code of one image and its lesion mask: the most probable one, or with an ensemble's
    ``decision_weights`` the class of ``argmax(p * w)`` (:func:`skinseg.models.config.decide`)."""
    from ..models.config import decide

    p = predict_proba(model, image, mask, tta=tta, metadata=metadata)
    return str(model.class_names[int(decide(p, getattr(model, "decision_weights", None)))])


def predict(
    model: Classifier | ClassifierEnsemble,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    tta: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """``{code: probability}`` of every class for one image and its lesion mask (probabilities sum to 1)."""
    p = predict_proba(model, image, mask, tta=tta, metadata=metadata)
    return {name: float(v) for name, v in zip(model.class_names, p, strict=True)}
