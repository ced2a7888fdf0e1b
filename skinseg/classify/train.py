"""Training lesion classifiers: labelled items, crop caches, augmentation, and a resumable ``fit``."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._deps import import_albumentations
from .._figures import new_figure, save_figure
from ..data import ManifestItem, read_manifest
from ..errors import ConfigError
from ..metrics import balanced_accuracy
from ..models.checkpoint import save_classifier
from ..models.classifiers import Classifier
from ..training import cosine_lr_factor, run_epochs, seed_everything
from .predict import crops_to_tensor, prepare_crop

__all__ = [
    "LabelledItem",
    "read_labelled_manifest",
    "build_crops",
    "classifier_augmentation",
    "ClassifierTrainConfig",
    "fit_classifier",
    "class_weights",
]


LabelledItem = ManifestItem
"""One labelled image (:class:`skinseg.data.ManifestItem`: image, mask or None, label, id)."""


def read_labelled_manifest(
    source: str | os.PathLike, splits: str | list[str] | None = None, label_column: str = "label"
) -> list[ManifestItem]:
    """Labelled items from a dev-set ``manifest.csv``: :func:`skinseg.data.read_manifest` with ``label_column``."""
    return read_manifest(source, splits, label_column=label_column)


def build_crops(
    items: list[ManifestItem],
    config: Any,
    *,
    masks: dict[str, np.ndarray] | None = None,
    progress: bool = True,
    desc: str = "cropping",
) -> tuple[np.ndarray, np.ndarray]:
    """Cut every item's crop for a classifier ``config``; returns (N, S, S, C) uint8 crops and flags of empty masks.

    ``masks`` (id -> bool mask) overrides the items' mask files, e.g. with predicted masks.
    """
    from ..io import read_image, read_mask

    crops, empty = [], []
    iterator: Any = items
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc=desc, unit="img")
    for it in iterator:
        image = read_image(it.image)
        if masks is not None and it.id in masks:
            mask = masks[it.id]
        elif it.mask is not None:
            mask = read_mask(it.mask, shape=image.shape[:2])
        else:
            mask = None
        c, e = prepare_crop(image, mask, config)
        crops.append(c)
        empty.append(e)
    return np.stack(crops), np.asarray(empty)


def classifier_augmentation(size: int, *, seed: int | None = None) -> Any:
    """Albumentations pipeline for square lesion crops (a 4th mask channel is passed as ``mask``)."""
    import cv2

    A = import_albumentations()

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.Affine(
                scale=(0.85, 1.15),
                rotate=(-45, 45),
                translate_percent=(-0.06, 0.06),
                shear=(-8, 8),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.8,
            ),
            A.RandomResizedCrop(size=(size, size), scale=(0.7, 1.0), p=0.3),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.03, p=0.7),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.15),
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.12),
                hole_width_range=(0.05, 0.12),
                fill=0,
                p=0.2,
            ),
        ],
        seed=seed,
    )


class _CropDataset:
    def __init__(self, crops: np.ndarray, labels: np.ndarray, config: Any, transform: Any | None) -> None:
        self.crops, self.labels, self.config, self.transform = crops, labels, config, transform

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        crop = self.crops[i]
        if self.transform is not None:
            if crop.shape[2] == 4:
                r = self.transform(
                    image=np.ascontiguousarray(crop[..., :3]), mask=np.ascontiguousarray(crop[..., 3])
                )
                crop = np.dstack([r["image"], r["mask"]])
            else:
                crop = self.transform(image=crop)["image"]
        return crops_to_tensor(crop[None], self.config)[0], int(self.labels[i])


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Classifier training hyper-parameters (JSON-serialisable)."""

    epochs: int = 15
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    min_lr: float = 1e-6
    balance: str = "weights"  # "weights" (weighted cross-entropy), "sampler" (balanced sampling) or "none"
    label_smoothing: float = 0.1
    patience: int = 5  # early stopping on validation balanced accuracy
    seed: int = 0
    max_batches_per_epoch: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.balance not in ("weights", "sampler", "none"):
            raise ConfigError(f"`balance` must be 'weights', 'sampler' or 'none'; got {self.balance!r}.")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("`epochs`, `batch_size` must be >= 1 and `lr` > 0.")


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 over the classes present (sklearn's 'balanced')."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise ConfigError(
            f"Every class needs training examples; counts per class: {counts.astype(int).tolist()}."
        )
    return (len(labels) / (num_classes * counts)).astype(np.float32)


@torch.no_grad()
def _evaluate(
    model: Classifier, crops: np.ndarray, labels: np.ndarray, batch_size: int
) -> tuple[dict, np.ndarray]:
    model.eval()
    probs = []
    for i in range(0, len(crops), batch_size):
        x = crops_to_tensor(crops[i : i + batch_size], model.config)
        x = x.contiguous(memory_format=torch.channels_last)
        probs.append(torch.softmax(model(x), 1).numpy())
    p = np.concatenate(probs)
    k = p.shape[1]
    pred = p.argmax(1)
    nll = float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-7, 1))))
    return {
        "val_balanced_accuracy": balanced_accuracy(labels, pred, num_classes=k),
        "val_accuracy": float((pred == labels).mean()),
        "val_nll": nll,
    }, p


def plot_classifier_history(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Learning curve: training loss and validation balanced accuracy per epoch (PNG)."""
    ep = [h["epoch"] for h in history]
    fig = new_figure((9, 3.4), dpi=110)
    ax = fig.subplots(1, 2)
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax[0].plot(ep, [h["val_nll"] for h in history], "s-", label="val NLL")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    ax[1].plot(ep, [h["val_balanced_accuracy"] for h in history], "o-", label="val balanced accuracy")
    ax[1].plot(ep, [h["val_accuracy"] for h in history], "s--", label="val accuracy")
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    fig.tight_layout()
    save_figure(fig, path)


class _ClassifierTask:
    monitor, monitor_label = "val_balanced_accuracy", "val balanced accuracy"

    def __init__(self, model: Classifier, train_set: Any, weights: np.ndarray, labels: np.ndarray,
                 val: tuple[np.ndarray, np.ndarray], cfg: ClassifierTrainConfig, out: Path) -> None:
        self.model, self.train_set, self.weights, self.labels = model, train_set, weights, labels
        self.val, self.cfg, self.out = val, cfg, out
        self.generator = torch.Generator()

    def loader(self, epoch: int) -> Any:
        from torch.utils.data import DataLoader, WeightedRandomSampler

        self.generator.manual_seed(self.cfg.seed + 1000 * epoch)
        self.train_set.transform.set_random_seed(self.cfg.seed + epoch)
        if self.cfg.balance == "sampler":
            sampler = WeightedRandomSampler(torch.from_numpy(self.weights[self.labels]).double(), len(self.labels),
                                            replacement=True, generator=self.generator)
            return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, shuffle=True, drop_last=True,
                          generator=self.generator)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return _evaluate(model, *self.val, self.cfg.batch_size)[0]  # type: ignore[arg-type]

    def save_best(self, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
        model.metadata = metadata
        save_classifier(model, self.out / "best", metadata=metadata)

    def plot(self, history: list[dict[str, Any]], path: Path) -> None:
        plot_classifier_history(history, path)

    def describe(self, scores: dict[str, float]) -> str:
        return f"val bal.acc {scores['val_balanced_accuracy']:.4f} acc {scores['val_accuracy']:.4f}"


def fit_classifier(
    model: Classifier,
    train_crops: np.ndarray,
    train_labels: np.ndarray,
    val_crops: np.ndarray,
    val_labels: np.ndarray,
    *,
    config: ClassifierTrainConfig | None = None,
    out_dir: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Fine-tune ``model`` on precomputed crops; keep the best on validation balanced accuracy.

    Writes ``out_dir/best`` (safetensors + config.json), ``last.pt`` every epoch
    (loaded with ``weights_only=True`` to resume), ``history.csv``/``.json`` and
    ``learning_curve.png`` (the loop is :func:`skinseg.training.run_epochs`). Labels are
    class indices into ``model.class_names``.
    """
    cfg = config or ClassifierTrainConfig()
    k = model.config.num_classes
    train_labels = np.asarray(train_labels, dtype=np.int64)
    val_labels = np.asarray(val_labels, dtype=np.int64)
    if len(train_crops) != len(train_labels) or len(val_crops) != len(val_labels):
        raise ConfigError("crops and labels differ in length.")
    if train_labels.min() < 0 or train_labels.max() >= k:
        raise ConfigError(f"labels must be in 0..{k - 1}.")
    out = Path(out_dir)
    seed_everything(cfg.seed)
    weights = class_weights(train_labels, k)
    # channels-last runs the depthwise convolutions 1.7-2.4x faster on CPU (same results up to rounding)
    model.to(memory_format=torch.channels_last)
    loss_w = torch.from_numpy(weights) if cfg.balance == "weights" else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=loss_w, label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    transform = classifier_augmentation(model.config.input_size, seed=cfg.seed)
    train_set = _CropDataset(train_crops, train_labels, model.config, transform)
    task = _ClassifierTask(model, train_set, weights, train_labels, (val_crops, val_labels), cfg, out)
    n_batches = len(train_labels) // cfg.batch_size
    if cfg.max_batches_per_epoch is not None:
        n_batches = min(n_batches, cfg.max_batches_per_epoch)
    return run_epochs(
        model, task, optimizer=optimizer, loss_fn=loss_fn, epochs=cfg.epochs, patience=cfg.patience, out_dir=out,
        n_batches=n_batches,
        lr_at=lambda epoch: cfg.lr * cosine_lr_factor(epoch, epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs,
                                                      lr=cfg.lr, min_lr=cfg.min_lr),
        train_config=dataclasses.asdict(cfg), metadata=metadata, channels_last=True, resume=resume,
        progress=progress,
    )
