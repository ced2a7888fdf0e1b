"""Training loop for segmenters: AdamW, cosine schedule, early stopping,
best-on-validation-Dice checkpoint, resumable from the last epoch.

``fit`` writes into ``out_dir``:

- ``best/``: the best checkpoint so far (weights.safetensors + config.json),
- ``last.pt``: model, optimiser, scheduler and RNG state after every epoch, for
  resuming (tensors and plain containers only; read with ``weights_only=True``),
- ``history.csv`` / ``history.json`` and ``learning_curve.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .losses import create_loss
from .models.checkpoint import _atomic_write_bytes, save_checkpoint

__all__ = [
    "TrainConfig",
    "fit",
    "evaluate_dice",
    "plot_history",
    "train_one_epoch",
    "save_resume_state",
    "load_resume_state",
    "write_history",
]


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (all JSON-serialisable)."""

    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "dice_bce"
    schedule: str = "cosine"  # "cosine" or "plateau"
    min_lr: float = 1e-5
    warmup_epochs: int = 0
    patience: int = 5  # early stopping: epochs without val Dice improvement
    seed: int = 0
    augment_strength: float = 1.0
    num_workers: int = 0
    max_batches_per_epoch: int | None = None  # for smoke tests
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"`epochs` and `batch_size` must be >= 1; got {self.epochs}, {self.batch_size}.")
        if self.schedule not in ("cosine", "plateau"):
            raise ConfigError(f"`schedule` must be 'cosine' or 'plateau'; got {self.schedule!r}.")
        if not self.lr > 0:
            raise ConfigError(f"`lr` must be > 0; got {self.lr!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - albumentations/torch workers may consult it
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate_dice(model: torch.nn.Module, loader: Any, device: str = "cpu") -> dict[str, float]:
    """Mean per-image Dice / IoU (at the model's resolution) and mean loss-free stats."""
    model.eval()
    dices, ious = [], []
    for x, y in loader:
        logits = model(x.to(device).contiguous(memory_format=torch.channels_last))
        pred = (logits > 0).float()
        y = y.to(device)
        inter = (pred * y).sum((1, 2, 3))
        total = pred.sum((1, 2, 3)) + y.sum((1, 2, 3))
        union = total - inter
        both_empty = total == 0
        dice = torch.where(both_empty, torch.ones_like(total), 2 * inter / total.clamp_min(1))
        iou = torch.where(both_empty, torch.ones_like(total), inter / union.clamp_min(1))
        dices += dice.tolist()
        ious += iou.tolist()
    return {"val_dice": float(np.mean(dices)), "val_iou": float(np.mean(ious))}


def cosine_lr_factor(epoch: int, *, epochs: int, warmup_epochs: int, lr: float, min_lr: float) -> float:
    """Multiplier of ``lr`` at the start of ``epoch`` (0-based): linear warm-up, then cosine down to ``min_lr``.

    Shared by the segmenter's :func:`fit` and the classifier's ``fit_classifier``.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    span = max(1, epochs - warmup_epochs)
    t = (epoch - warmup_epochs) / span
    floor = min_lr / lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _lr_factor(epoch: int, config: TrainConfig) -> float:
    return cosine_lr_factor(epoch, epochs=config.epochs, warmup_epochs=config.warmup_epochs, lr=config.lr,
                            min_lr=config.min_lr)


def plot_history(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write a learning-curve PNG (loss and validation Dice per epoch)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(7, 4), dpi=100)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_dice"] for h in history], "s-", color="tab:red", label="val Dice")
    ax2.plot(epochs, [h["val_iou"] for h in history], "^--", color="tab:orange", label="val IoU")
    ax2.set_ylabel("validation score (per-image mean)")
    best = max(history, key=lambda h: h["val_dice"])
    ax2.axvline(best["epoch"], color="grey", ls=":", lw=1)
    ax2.set_title(f"best val Dice {best['val_dice']:.4f} at epoch {best['epoch']}")
    fig.legend(loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def train_one_epoch(model: torch.nn.Module, loader: Any, loss_fn: Any, optimizer: Any, *, n_batches: int,
                    device: str = "cpu", channels_last: bool = False, desc: str = "epoch", lr: float | None = None,
                    progress: bool = True) -> list[float]:
    """One pass over ``loader`` (at most ``n_batches`` batches) with a tqdm bar; returns the batch losses.

    Shared by the segmenter's :func:`fit` and the classifier's ``fit_classifier``.
    """
    model.train()
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_batches, desc=desc, unit="batch", leave=True)
    for i, (x, y) in enumerate(loader):
        if i >= n_batches:
            break
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", **({"lr": f"{lr:.2e}"} if lr is not None else {}))
    if bar is not None:
        bar.close()
    return losses


def write_history(history: list[dict[str, Any]], out: Path, plot: Any = None) -> None:
    """Write ``history.csv`` / ``history.json`` atomically, then ``learning_curve.png`` with ``plot``."""
    keys = list(history[0])
    lines = [",".join(keys)] + [",".join(str(h[k]) for k in keys) for h in history]
    _atomic_write_bytes(out / "history.csv", ("\n".join(lines) + "\n").encode())
    _atomic_write_bytes(out / "history.json", json.dumps(history, indent=1).encode())
    (plot or plot_history)(history, out / "learning_curve.png")


def save_resume_state(
    path: Path,
    *,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    history: list[dict[str, Any]],
    **extra: Any,
) -> None:
    """Write the resume state after ``epoch`` (0-based) atomically: tensors and plain containers only."""
    state = {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "history": json.dumps(history),
        **extra,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_resume_state(
    path: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Restore a state written by :func:`save_resume_state` (``weights_only=True``: no code runs).

    Returns (the raw state, the history, the first epoch still to train).
    """
    from .errors import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # truncated file, another model's state, ...
        raise CheckpointError(
            f"Cannot resume from '{path}': {type(exc).__name__}: {str(exc).splitlines()[0][:200]}. "
            "It belongs to another model or is damaged; delete it (or pass resume=False) to start over."
        ) from exc
    torch.set_rng_state(state["torch_rng"])
    return state, json.loads(state["history"]), int(state["epoch"]) + 1


def fit(
    model: torch.nn.Module,
    train_set: Any,
    val_set: Any,
    *,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike,
    device: str = "cpu",
    metadata: dict[str, Any] | None = None,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train ``model`` and keep the best checkpoint on validation Dice.

    Parameters
    ----------
    model : Segmenter
        From :func:`skinseg.create_segmenter`.
    train_set, val_set : datasets yielding (image tensor, mask tensor)
        E.g. :class:`skinseg.data.LesionSegDataset`.
    config : TrainConfig
    out_dir : path
        Run directory. If it holds ``last.pt`` and ``resume`` is true, training
        continues after the last finished epoch with identical state.
    device : str
        ``"cpu"`` or ``"cuda"``.
    metadata : dict
        Stored in the checkpoint's config.json (training data, command, ...).

    Returns
    -------
    list of dict
        One row per epoch: epoch, lr, train_loss, val_dice, val_iou, seconds.
    """
    from torch.utils.data import DataLoader

    config = config or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _seed_everything(config.seed)
    model = model.to(device).to(memory_format=torch.channels_last)
    loss_fn = create_loss(config.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2, min_lr=config.min_lr)
        if config.schedule == "plateau" else None
    )
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_dice = -1.0
    last_path = out / "last.pt"
    if resume and last_path.is_file():
        state, history, start_epoch = load_resume_state(last_path, network=model.network, optimizer=optimizer)
        if plateau is not None and state.get("plateau"):
            plateau.load_state_dict(state["plateau"])
        best_dice = max((h["val_dice"] for h in history), default=-1.0)
        if progress:
            print(f"resuming {out} after epoch {start_epoch} (best val Dice so far {best_dice:.4f})", flush=True)
    generator = torch.Generator().manual_seed(config.seed)
    if start_epoch:
        generator.manual_seed(config.seed + 1000 * start_epoch)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True,
                              num_workers=config.num_workers, generator=generator)
    val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
    stale = 0
    if history:
        best_epoch = max(history, key=lambda h: h["val_dice"])["epoch"]
        stale = history[-1]["epoch"] - best_epoch
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            if progress:
                print(f"early stopping: no val Dice gain for {stale} epochs", flush=True)
            break
        if hasattr(train_set, "transform") and hasattr(train_set.transform, "set_random_seed"):
            train_set.transform.set_random_seed(config.seed + epoch)
        generator.manual_seed(config.seed + 1000 * epoch)
        if plateau is None:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(epoch, config)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        t0 = time.time()
        n_batches = len(train_loader) if config.max_batches_per_epoch is None else min(
            len(train_loader), config.max_batches_per_epoch)
        losses = train_one_epoch(model, train_loader, loss_fn, optimizer, n_batches=n_batches, device=device,
                                 channels_last=True, desc=f"epoch {epoch + 1}/{config.epochs}", lr=lr,
                                 progress=progress)
        scores = evaluate_dice(model, val_loader, device)
        if plateau is not None:
            plateau.step(scores["val_dice"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), **scores,
               "seconds": round(time.time() - t0, 1)}
        history.append(row)
        improved = scores["val_dice"] > best_dice
        if improved:
            best_dice = scores["val_dice"]
            stale = 0
            meta = dict(metadata or {})
            meta.update({"train_config": config.to_dict(), "best_epoch": epoch + 1,
                         "validation": {k: round(v, 6) for k, v in scores.items()}})
            model.eval()
            save_checkpoint(model, out / "best", metadata=meta)
        else:
            stale += 1
        save_resume_state(last_path, network=model.network, optimizer=optimizer, epoch=epoch, history=history,
                          plateau=plateau.state_dict() if plateau is not None else {})
        write_history(history, out)
        if progress:
            print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} val Dice {scores['val_dice']:.4f} "
                  f"IoU {scores['val_iou']:.4f} ({row['seconds']} s){' *best*' if improved else ''}", flush=True)
    return history
