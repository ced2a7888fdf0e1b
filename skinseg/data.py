"""Datasets and augmentation for training segmenters.

Items are (image path, mask path) pairs, from a folder pair or from a manifest CSV
(the layout of the shared ISIC dev sets: ``images/<id>.jpg``, ``masks/<id>.png``
and a ``manifest.csv`` with ``id`` and ``split`` columns). Images are read once,
preprocessed with the model's :class:`~skinseg.preprocess.Preprocess`, scaled to
the model's box (:func:`skinseg._geometry.fit_size`) and cached in memory; the
augmentation (albumentations) then runs per epoch on the small cached copies.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import import_albumentations
from ._geometry import box_hw, fit_size, resize_image, resize_mask
from .errors import ConfigError, PathNotFoundError

__all__ = [
    "ManifestItem",
    "read_manifest",
    "collect_items",
    "find_pairs",
    "train_augmentation",
    "val_transform",
    "LesionSegDataset",
    "AUGMENTATIONS",
    "sampling_weights",
]

AUGMENTATIONS = (
    "rotation", "horizontal flip", "vertical flip", "translation", "scaling", "shear",
    "brightness/contrast", "colour jitter", "hue shift", "gaussian noise", "coarse dropout",
    "random resized crop",
)
"""What :func:`train_augmentation` applies (jointly to image and mask; nearest for masks)."""


@dataclass(frozen=True)
class ManifestItem:
    """One row of a dev-set manifest: image path, mask path (None if the file is absent), label, id."""

    image: Path
    mask: Path | None
    label: str | None = None
    id: str = ""


def read_manifest(
    source: str | os.PathLike, splits: str | Sequence[str] | None = None, *, label_column: str | None = None
) -> list[ManifestItem]:
    """The items listed in a dev-set ``manifest.csv`` (or a folder holding one), optionally only some splits.

    The manifest needs an ``id`` column, ``split`` when ``splits`` is given and
    ``label_column`` when given (its value becomes ``item.label``); images are
    ``images/<id>.jpg`` and masks ``masks/<id>.png`` beside it (``item.mask`` is None
    when that file does not exist). The one manifest reader of skinseg: segmentation
    training (:func:`collect_items`) and classifier training both use it.

    Raises
    ------
    FileNotFoundError
        No manifest at ``source``.
    ConfigError
        A needed column is missing, or no row matches ``splits``.
    """
    src = Path(source)
    path = src / "manifest.csv" if src.is_dir() else src
    if not path.is_file():
        raise PathNotFoundError(f"Manifest '{path}' not found. Pass a manifest.csv, a folder holding one, "
                                "or an image folder.")
    wanted = {splits} if isinstance(splits, str) else (set(splits) if splits is not None else None)
    root = path.parent
    items = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"id"} | ({"split"} if wanted is not None else set()) | ({label_column} if label_column else set())
        missing = sorted(need - set(reader.fieldnames or []))
        if missing:
            raise ConfigError(f"Manifest '{path}' lacks the column(s) {missing}; it has {reader.fieldnames}.")
        for row in reader:
            if wanted is not None and row["split"] not in wanted:
                continue
            mask = root / "masks" / f"{row['id']}.png"
            items.append(ManifestItem(root / "images" / f"{row['id']}.jpg", mask if mask.is_file() else None,
                                      row[label_column] if label_column else None, row["id"]))
    if not items:
        raise ConfigError(f"Manifest '{path}' lists no images for splits {sorted(wanted or [])}.")
    return items


def find_pairs(
    source: str | os.PathLike, *, splits: str | Sequence[str] | None = None, mask_suffix: str = "_segmentation"
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, mask) pairs of a manifest CSV, a folder with ``manifest.csv``, or an image folder, and the
    images that have no mask.

    An image folder is paired with masks by stem (``<stem><mask_suffix>``), looking in
    a ``masks/`` subfolder if present, else beside the images; a manifest row's mask is
    ``masks/<id>.png``.
    """
    src = Path(source)
    if src.is_file() or (src / "manifest.csv").is_file():
        items = read_manifest(src, splits)
        return [(it.image, it.mask) for it in items if it.mask is not None], [it.image for it in items if it.mask is None]
    if splits is not None:
        raise ConfigError(f"splits={splits!r} needs a manifest.csv, and '{src}' has none.")
    from .io import pair_images_and_masks

    image_dir = src / "images" if (src / "images").is_dir() else src
    mask_dir = src / "masks" if (src / "masks").is_dir() else None
    pairs, unmatched, _ = pair_images_and_masks(image_dir, mask_dir, mask_suffix=mask_suffix)
    if not pairs:
        raise ConfigError(
            f"No image/mask pairs found in '{src}' (masks named <stem>{mask_suffix}.png). "
            f"{len(unmatched)} images had no mask. Set mask_suffix to your masks' naming."
        )
    return pairs, unmatched


def collect_items(
    source: str | os.PathLike, *, splits: str | Sequence[str] | None = None, mask_suffix: str = "_segmentation",
    skip_unlabelled: bool = False,
) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of :func:`find_pairs`; an image without a mask is an error naming it,
    unless ``skip_unlabelled`` (then it is left out: :func:`find_pairs` says which)."""
    pairs, unlabelled = find_pairs(source, splits=splits, mask_suffix=mask_suffix)
    if unlabelled and not skip_unlabelled:
        shown = ", ".join(p.name for p in unlabelled[:3]) + (" ..." if len(unlabelled) > 3 else "")
        raise ConfigError(
            f"{len(unlabelled)} image(s) of '{source}' have no mask ({shown}; expected e.g. "
            f"'{unlabelled[0].stem}{mask_suffix}.png', or masks/<id>.png beside a manifest). Add their masks, move "
            "them out, or skip them explicitly (skip_unlabelled=True, --skip-unlabelled)."
        )
    return pairs


def sampling_weights(
    sources: Sequence[int],
    labels: Sequence[str | None],
    *,
    set_weights: Sequence[float] | None = None,
    diagnosis_weights: dict[str, float] | None = None,
) -> np.ndarray:
    """Per-image sampling weights of a training set drawn from several sources.

    An image's weight is ``set_weights[source] * diagnosis_weights.get(label, 1)``: with
    ``set_weights=(2, 1)`` each image of the first source is drawn twice as often as one
    of the second. Used with a weighted sampler (:func:`skinseg.training.fit`'s
    ``sample_weights``), which draws ``len(images)`` images per epoch with replacement.

    Parameters
    ----------
    sources : sequence of int
        Index of each image's source (0-based, into ``set_weights``).
    labels : sequence of str or None
        Each image's diagnosis (a manifest's ``label``), None when unknown (weight 1).
    set_weights : sequence of float, optional
        One weight > 0 per source (default: all 1).
    diagnosis_weights : dict, optional
        Weight > 0 per diagnosis label (others: 1). Every key must be the label of at least
        one image.

    Returns
    -------
    numpy.ndarray
        float64, one weight per image.

    Raises
    ------
    ConfigError
        A weight that is not a finite number > 0, one set weight too many or too few, or a
        diagnosis that no image has (the labels present are named).
    """
    src = np.asarray(sources, dtype=np.int64)
    if len(src) != len(labels):
        raise ConfigError(f"`sources` and `labels` differ in length ({len(src)} vs {len(labels)}).")
    n_sources = int(src.max()) + 1 if len(src) else 0  # at least: a last source may add no image
    per_set = np.ones(n_sources) if set_weights is None else np.asarray(set_weights, dtype=np.float64)
    if per_set.ndim != 1 or len(per_set) < n_sources or (len(src) and src.min() < 0):
        raise ConfigError(f"Give one set weight per data source: images of {n_sources} source(s), got "
                          f"{list(np.atleast_1d(per_set))}.")
    wanted = dict(diagnosis_weights or {})
    for what, value in [*(("set weight", w) for w in per_set), *wanted.items()]:
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"Sampling weights must be finite numbers > 0; {what} is {value!r}.")
    present = {lab for lab in labels if lab is not None}
    unknown = sorted(set(wanted) - present)
    if unknown:
        raise ConfigError(f"No training image has the diagnosis {unknown}; the labels present are "
                          f"{sorted(present) or 'none (no manifest label column)'}.")
    return per_set[src] * np.array([wanted.get(lab, 1.0) if lab is not None else 1.0 for lab in labels])


def train_augmentation(input_size: int, *, strength: float = 1.0, seed: int | None = None) -> Callable[..., dict[str, Any]]:
    """The albumentations training pipeline for images already scaled to the model box."""
    import cv2

    A = import_albumentations()
    h, w = box_hw(input_size)
    s = float(strength)
    return A.Compose([
        A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        A.RandomResizedCrop(size=(h, w), scale=(0.6, 1.0), ratio=(w / h * 0.85, w / h * 1.15), p=0.3 * s),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Affine(
            rotate=(-180 * s, 180 * s), translate_percent=(-0.08 * s, 0.08 * s), scale=(1 - 0.2 * s, 1 + 0.2 * s),
            shear=(-8 * s, 8 * s), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.7,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.2 * s, contrast_limit=0.2 * s, p=0.5),
        A.ColorJitter(brightness=0.0, contrast=0.0, saturation=(1 - 0.2 * s, 1 + 0.2 * s), hue=(-0.04 * s, 0.04 * s), p=0.5),
        A.HueSaturationValue(hue_shift_limit=int(8 * s), sat_shift_limit=int(15 * s), val_shift_limit=0, p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05 * s), p=0.2),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15),
                        fill=0, fill_mask=None, p=0.2),
        A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        A.CenterCrop(height=h, width=w),
    ], seed=seed)


def val_transform(input_size: int) -> Callable[..., dict[str, Any]]:
    """Deterministic transform: pad the scaled image to the model box (no randomness)."""
    import cv2

    A = import_albumentations()
    h, w = box_hw(input_size)
    return A.Compose([A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0)])


class LesionSegDataset:
    """A torch-style dataset of (image tensor, mask tensor) for segmentation training.

    Parameters
    ----------
    items : sequence of (image path, mask path)
    input_size : int
        The model's ``input_size``; images are scaled into its landscape box
        (portrait images are transposed first).
    transform : callable or None
        An albumentations pipeline taking ``image=`` and ``mask=``
        (:func:`train_augmentation` or :func:`val_transform`).
    mean, std : normalisation stored with the model.
    preprocess : dict or None
        A PreprocessConfig dict applied to each image once, before caching.
    """

    def __init__(self, items: Sequence[tuple[Path, Path]], *, input_size: int, transform: Callable | None,
                 mean: Sequence[float], std: Sequence[float], preprocess: dict | None = None,
                 progress: bool = False) -> None:
        from .io import read_image, read_mask

        self.items = list(items)
        self.input_size = int(input_size)
        self.transform = transform
        self.mean = np.asarray(mean, np.float32) * 255
        self.std = np.asarray(std, np.float32) * 255
        pre = None
        if preprocess:
            from .preprocess import Preprocess

            pre = Preprocess.from_dict(preprocess)
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        iterator: Any = self.items
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(self.items, desc="loading", unit="img", leave=False)
        for image_path, mask_path in iterator:
            image = read_image(image_path)
            mask = read_mask(mask_path, shape=image.shape[:2])
            if pre is not None:
                image = pre(image)
            if image.shape[0] > image.shape[1]:
                image, mask = image.transpose(1, 0, 2), mask.T
            hw = fit_size(image.shape[0], image.shape[1], self.input_size)
            self.images.append(np.ascontiguousarray(resize_image(image, hw)))
            self.masks.append(np.ascontiguousarray(resize_mask(mask.astype(np.uint8), hw)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch

        image, mask = self.images[index], self.masks[index]
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = (image.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.from_numpy(
            (mask > 0).astype(np.float32)[None]
        )
