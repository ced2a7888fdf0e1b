"""Training lesion classifiers: labelled items, crop caches, augmentation, and a resumable ``fit``."""

from __future__ import annotations

import csv
import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, SkinsegError
from ..metrics import balanced_accuracy
from ..training import (
    cosine_lr_factor,
    load_resume_state,
    save_resume_state,
    train_one_epoch,
    write_history,
)
from .model import Classifier, save_classifier
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


@dataclass(frozen=True)
class LabelledItem:
    """One labelled image: its path, its lesion mask path (or None) and its diagnosis."""

    image: Path
    mask: Path | None
    label: str
    id: str = ""


def read_labelled_manifest(
    source: str | os.PathLike, splits: str | list[str] | None = None, label_column: str = "label"
) -> list[LabelledItem]:
    """Labelled items from a dev-set ``manifest.csv`` (or a folder holding one).

    Needs columns ``id``, ``split`` (if ``splits`` is given) and ``label``; images are
    ``images/<id>.jpg`` and masks ``masks/<id>.png`` beside the manifest.
    """
    src = Path(source)
    path = src / "manifest.csv" if src.is_dir() else src
    if not path.is_file():
        raise SkinsegError(f"No manifest found at '{path}'. Pass a manifest.csv or a folder holding one.")
    wanted = {splits} if isinstance(splits, str) else (set(splits) if splits is not None else None)
    items = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"id", label_column} | ({"split"} if wanted else set())
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise SkinsegError(f"'{path}' lacks the column(s) {sorted(missing)}; it has {reader.fieldnames}.")
        for row in reader:
            if wanted is not None and row["split"] not in wanted:
                continue
            mask = path.parent / "masks" / f"{row['id']}.png"
            items.append(
                LabelledItem(
                    path.parent / "images" / f"{row['id']}.jpg",
                    mask if mask.is_file() else None,
                    row[label_column],
                    row["id"],
                )
            )
    return items


def build_crops(
    items: list[LabelledItem],
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
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax[0].plot(ep, [h["val_nll"] for h in history], "s-", label="val NLL")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    ax[1].plot(ep, [h["val_balanced_accuracy"] for h in history], "o-", label="val balanced accuracy")
    ax[1].plot(ep, [h["val_accuracy"] for h in history], "s--", label="val accuracy")
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    fig.tight_layout()
    tmp = Path(path).with_name(".tmp_" + Path(path).name)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


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
    ``learning_curve.png``. Labels are class indices into ``model.class_names``.
    """
    from torch.utils.data import DataLoader, WeightedRandomSampler

    cfg = config or ClassifierTrainConfig()
    k = model.config.num_classes
    train_labels = np.asarray(train_labels, dtype=np.int64)
    val_labels = np.asarray(val_labels, dtype=np.int64)
    if len(train_crops) != len(train_labels) or len(val_crops) != len(val_labels):
        raise ConfigError("crops and labels differ in length.")
    if train_labels.min() < 0 or train_labels.max() >= k:
        raise ConfigError(f"labels must be in 0..{k - 1}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002
    torch.manual_seed(cfg.seed)
    weights = class_weights(train_labels, k)
    # channels-last runs the depthwise convolutions 1.7-2.4x faster on CPU (same results up to rounding)
    model.to(memory_format=torch.channels_last)
    loss_w = torch.from_numpy(weights) if cfg.balance == "weights" else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=loss_w, label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, Any]] = []
    start, best = 0, -1.0
    last = out / "last.pt"
    if resume and last.is_file():
        _, history, start = load_resume_state(last, network=model.network, optimizer=optimizer)
        best = max((h["val_balanced_accuracy"] for h in history), default=-1.0)
        if progress:
            print(f"resuming {out} after epoch {start} (best val balanced accuracy {best:.4f})", flush=True)
    transform = classifier_augmentation(model.config.input_size, seed=cfg.seed)
    train_set = _CropDataset(train_crops, train_labels, model.config, transform)
    generator = torch.Generator()
    stale = 0
    if history:
        stale = history[-1]["epoch"] - max(history, key=lambda h: h["val_balanced_accuracy"])["epoch"]
    for epoch in range(start, cfg.epochs):
        if stale >= cfg.patience:
            if progress:
                print(f"early stopping: no val balanced accuracy gain for {stale} epochs", flush=True)
            break
        generator.manual_seed(cfg.seed + 1000 * epoch)
        transform.set_random_seed(cfg.seed + epoch)
        if cfg.balance == "sampler":
            sampler = WeightedRandomSampler(
                torch.from_numpy(weights[train_labels]).double(),
                len(train_labels),
                replacement=True,
                generator=generator,
            )
            loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
        else:
            loader = DataLoader(
                train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator
            )
        lr = cfg.lr * cosine_lr_factor(epoch, epochs=cfg.epochs, warmup_epochs=cfg.warmup_epochs, lr=cfg.lr,
                                       min_lr=cfg.min_lr)
        for g in optimizer.param_groups:
            g["lr"] = lr
        model.train()
        t0 = time.time()
        n = len(loader) if cfg.max_batches_per_epoch is None else min(len(loader), cfg.max_batches_per_epoch)
        losses = train_one_epoch(model, loader, loss_fn, optimizer, n_batches=n, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                                 lr=lr, progress=progress, channels_last=True)
        scores, _ = _evaluate(model, val_crops, val_labels, cfg.batch_size)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(np.mean(losses)),
            **scores,
            "seconds": round(time.time() - t0, 1),
        }
        history.append(row)
        improved = scores["val_balanced_accuracy"] > best
        if improved:
            best, stale = scores["val_balanced_accuracy"], 0
            meta = dict(metadata or {})
            meta.update(
                {
                    "train_config": dataclasses.asdict(cfg),
                    "best_epoch": epoch + 1,
                    "validation": {kk: round(v, 6) for kk, v in scores.items()},
                }
            )
            model.metadata = meta
            save_classifier(model, out / "best", metadata=meta)
        else:
            stale += 1
        save_resume_state(last, network=model.network, optimizer=optimizer, epoch=epoch, history=history)
        write_history(history, out, plot=plot_classifier_history)
        if progress:
            print(
                f"epoch {epoch + 1}: loss {row['train_loss']:.4f} val bal.acc {scores['val_balanced_accuracy']:.4f} "
                f"acc {scores['val_accuracy']:.4f} ({row['seconds']} s){' *best*' if improved else ''}",
                flush=True,
            )
    model.eval()
    return history
