"""Training: one epoch loop shared by segmenters and classifiers, and the segmenter's ``fit``.

:func:`run_epochs` owns what every training run does: learning-rate schedule, one pass
per epoch (:func:`train_one_epoch`, tqdm bar), validation, early stopping, the
best-so-far checkpoint, the resume state after every epoch (:func:`save_resume_state`,
read back with ``weights_only=True``), ``history.csv``/``.json`` and the learning-curve
plot. What differs between a segmenter and a classifier -- the batches of an epoch, the
validation scores, how the best model is saved -- comes in a :class:`TrainingTask`.
:func:`fit` is the segmenter's task (Dice, AdamW, cosine schedule);
:func:`skinseg.classify.fit_classifier` is the classifier's.

``fit`` writes into ``out_dir``:

- ``best/``: the best checkpoint so far (weights.safetensors + config.json),
- ``last.pt``: model, optimiser, scheduler and RNG state after every epoch, for
  resuming (tensors and plain containers only; read with ``weights_only=True``),
- ``history.csv`` / ``history.json`` and ``learning_curve.png``.

**Settings.** :func:`prepare_training_run` keeps the settings of a training run (what
determines its result: data, model, training configuration) in ``run.json`` (the format of
:mod:`skinseg._runfile`, as folder runs), so ``skinseg train`` and ``skinseg train-classifier``
resume only with the same ones and name what changed otherwise. A run folder made before
this file existed is adopted on its first resume, compared with what its ``best/config.json``
records.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ._figures import new_figure, save_figure
from ._files import atomic_output, atomic_write, temp_target_name
from ._runfile import RUN_FILE, read_run_file, run_format, settings_changes, write_run_file
from ._text import csv_line
from .errors import CheckpointError, ConfigError
from .losses import create_loss
from .models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_torch_file, save_checkpoint

__all__ = [
    "TrainConfig",
    "TrainingTask",
    "fit",
    "run_epochs",
    "seed_everything",
    "evaluate_dice",
    "cosine_lr_factor",
    "plot_history",
    "train_one_epoch",
    "save_resume_state",
    "load_resume_state",
    "write_history",
    "prepare_training_run",
    "TRAINING_RUN_FILES",
]

TRAINING_RUN_FILES = ("last.pt", "history.csv", "history.json", "learning_curve.png")
"""The files a training run writes in its folder, besides ``best/`` and ``run.json``."""
_TRAINING_RUN_VERSION = 1


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


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (training only; call it before building the model).

    On the CPU a seeded run repeats bit for bit (same data, same batch order, same
    augmentation, same initial weights). On a GPU some cuDNN kernels are not
    deterministic, so losses agree only approximately.
    """
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
    epochs = [h["epoch"] for h in history]
    fig = new_figure((7, 4))
    ax1 = fig.add_subplot()
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
    save_figure(fig, path)


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
    rows = "".join(csv_line([h[k] for k in keys]) for h in history)
    atomic_write(out / "history.csv", csv_line(keys) + rows)
    atomic_write(out / "history.json", json.dumps(history, indent=1))
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
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_resume_state(
    path: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Restore a state written by :func:`save_resume_state` (``weights_only=True``: no code runs).

    Returns (the raw state, the history, the first epoch still to train).
    """
    try:
        state = load_torch_file(path, what="Resume state")
    except CheckpointError as exc:  # a pickle with code (refused, nothing ran), a damaged file
        raise CheckpointError(f"{exc} To start the run over, delete it (or pass resume=False).") from None
    try:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # another model's state
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Cannot resume from '{path}': it belongs to another model or is damaged ({type(exc).__name__}: "
            f"{reason}). Delete it (or pass resume=False) to start over."
        ) from exc
    torch.set_rng_state(state["torch_rng"])
    return state, json.loads(state["history"]), int(state["epoch"]) + 1


class TrainingTask(Protocol):
    """The parts of a training run that differ between a segmenter and a classifier (see :func:`run_epochs`)."""

    monitor: str
    """History key of the validation score to maximise (early stopping, best checkpoint)."""
    monitor_label: str
    """How messages name it, e.g. "val Dice"."""

    def loader(self, epoch: int) -> Iterable[Any]:
        """The (input, target) batches of ``epoch`` (0-based), seeded for that epoch."""

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation scores (keys starting with ``val_``)."""

    def save_best(self, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
        """Save ``model`` as the best so far (``metadata`` holds the epoch, scores and config)."""

    def plot(self, history: list[dict[str, Any]], path: Path) -> None:
        """Write the learning-curve PNG."""

    def describe(self, scores: dict[str, float]) -> str:
        """One line of validation scores for the epoch log."""


def run_epochs(
    model: torch.nn.Module,
    task: TrainingTask,
    *,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    patience: int,
    out_dir: Path,
    n_batches: int,
    lr_at: Callable[[int], float] | None = None,
    plateau: Any = None,
    train_config: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    device: str = "cpu",
    channels_last: bool = False,
    resume: bool = True,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """The epoch loop shared by every training run; returns the history (one dict per epoch).

    Each epoch: set the learning rate (``lr_at(epoch)``, or a ReduceLROnPlateau
    ``plateau`` stepped on the monitored score), train ``n_batches`` batches of
    ``task.loader(epoch)``, score ``task.evaluate``; save the best model with
    ``task.save_best``; write ``last.pt`` (resume state), ``history.csv``/``.json`` and
    the plot. With ``resume`` and an existing ``last.pt`` training continues after its
    epoch with the same state. Stops early after ``patience`` epochs without a gain.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    start_epoch, best = 0, -math.inf
    last_path = out / "last.pt"
    network = getattr(model, "network", model)
    if resume and last_path.is_file():
        state, history, start_epoch = load_resume_state(last_path, network=network, optimizer=optimizer)
        if plateau is not None and state.get("plateau"):
            plateau.load_state_dict(state["plateau"])
        best = max((h[task.monitor] for h in history), default=-math.inf)
        if progress:
            print(f"resuming {out} after epoch {start_epoch} (best {task.monitor_label} so far {best:.4f})", flush=True)
    stale = 0
    if history:
        stale = history[-1]["epoch"] - max(history, key=lambda h: h[task.monitor])["epoch"]
    for epoch in range(start_epoch, epochs):
        if stale >= patience:
            if progress:
                print(f"early stopping: no {task.monitor_label} gain for {stale} epochs", flush=True)
            break
        if lr_at is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch)
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.time()
        losses = train_one_epoch(model, task.loader(epoch), loss_fn, optimizer, n_batches=n_batches, device=device,
                                 channels_last=channels_last, desc=f"epoch {epoch + 1}/{epochs}", lr=lr,
                                 progress=progress)
        scores = task.evaluate(model)
        if plateau is not None:
            plateau.step(scores[task.monitor])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)), **scores,
               "seconds": round(time.time() - t0, 1)}
        history.append(row)
        improved = scores[task.monitor] > best
        if improved:
            best, stale = scores[task.monitor], 0
            meta = dict(metadata or {})
            meta.update({"train_config": dict(train_config or {}), "best_epoch": epoch + 1,
                         "validation": {k: round(v, 6) for k, v in scores.items()}})
            model.eval()
            task.save_best(model, meta)
        else:
            stale += 1
        save_resume_state(last_path, network=network, optimizer=optimizer, epoch=epoch, history=history,
                          plateau=plateau.state_dict() if plateau is not None else {})
        write_history(history, out, plot=task.plot)
        if progress:
            print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} {task.describe(scores)} ({row['seconds']} s)"
                  f"{' *best*' if improved else ''}", flush=True)
    model.eval()
    return history


class _SegmenterTask:
    monitor, monitor_label = "val_dice", "val Dice"

    def __init__(self, train_set: Any, val_set: Any, config: TrainConfig, out: Path, device: str,
                 sample_weights: Any = None) -> None:
        from torch.utils.data import DataLoader, WeightedRandomSampler

        self.train_set, self.config, self.out, self.device = train_set, config, out, device
        self.generator = torch.Generator().manual_seed(config.seed)
        if sample_weights is None:
            self.train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                           num_workers=config.num_workers, generator=self.generator)
        else:  # the same generator, reseeded per epoch: a resumed run draws the same images
            sampler = WeightedRandomSampler(torch.as_tensor(sample_weights, dtype=torch.float64), len(train_set),
                                            replacement=True, generator=self.generator)
            self.train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                                           num_workers=config.num_workers)
        self.val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False,
                                     num_workers=config.num_workers)

    def loader(self, epoch: int) -> Any:
        transform = getattr(self.train_set, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(self.config.seed + epoch)
        self.generator.manual_seed(self.config.seed + 1000 * epoch)
        return self.train_loader

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return evaluate_dice(model, self.val_loader, self.device)

    def save_best(self, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
        save_checkpoint(model, self.out / "best", metadata=metadata)

    def plot(self, history: list[dict[str, Any]], path: Path) -> None:
        plot_history(history, path)

    def describe(self, scores: dict[str, float]) -> str:
        return f"val Dice {scores['val_dice']:.4f} IoU {scores['val_iou']:.4f}"


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
    sample_weights: Any = None,
) -> list[dict[str, Any]]:
    """Train a segmenter and keep the best checkpoint on validation Dice.

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
    sample_weights : sequence of float, optional
        One weight >= 0 per training image (e.g. :func:`skinseg.data.sampling_weights`):
        each epoch then draws ``len(train_set)`` images with replacement, in proportion to
        them, instead of a shuffled pass over every image. Seeded per epoch like the
        shuffle, so a resumed run draws what the uninterrupted one would. Record them in
        ``config.extra`` so that a run's settings say how it sampled.

    Returns
    -------
    list of dict
        One row per epoch: epoch, lr, train_loss, val_dice, val_iou, seconds.

    Notes
    -----
    The global RNGs are seeded with ``config.seed`` here; seed them before creating the
    model too (:func:`seed_everything`) for a bit-reproducible run on the CPU.
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    seed_everything(config.seed)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2, min_lr=config.min_lr)
        if config.schedule == "plateau" else None
    )
    if sample_weights is not None:
        weights = np.asarray(sample_weights, dtype=np.float64)
        if weights.shape != (len(train_set),) or not (np.isfinite(weights).all() and (weights >= 0).all()
                                                      and weights.sum() > 0):
            raise ConfigError(f"`sample_weights` must hold one finite weight >= 0 per training image "
                              f"({len(train_set)}), not all 0; got shape {weights.shape}.")
        sample_weights = weights
    task = _SegmenterTask(train_set, val_set, config, out, device, sample_weights)
    n_batches = len(task.train_loader)
    if config.max_batches_per_epoch is not None:
        n_batches = min(n_batches, config.max_batches_per_epoch)
    return run_epochs(
        model, task, optimizer=optimizer, loss_fn=create_loss(config.loss), epochs=config.epochs,
        patience=config.patience, out_dir=out, n_batches=n_batches,
        lr_at=None if plateau is not None else (lambda epoch: config.lr * _lr_factor(epoch, config)),
        plateau=plateau, train_config=config.to_dict(), metadata=metadata, device=device, channels_last=True,
        resume=resume, progress=progress,
    )


# ----------------------------------------------------------------------------- the run folder's settings


def _remove_training_run(out: Path) -> None:
    """``overwrite``: remove what a training run wrote (its files, best/'s two files, stale temp files)."""
    best = out / "best"
    for folder, names in ((out, (*TRAINING_RUN_FILES, RUN_FILE)), (best, (WEIGHTS_FILE, CONFIG_FILE))):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name in names or temp_target_name(path.name) in names:
                path.unlink()
    if best.is_dir() and not any(best.iterdir()):
        best.rmdir()


def prepare_training_run(
    out_dir: str | os.PathLike,
    *,
    kind: str,
    settings: dict[str, Any],
    overwrite: bool = False,
    recorded: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """Check a training run folder's settings before any work, and record them in ``run.json``.

    Parameters
    ----------
    out_dir : path
        The run folder (created).
    kind : str
        ``"train"`` or ``"train-classifier"`` (run.json's format ``skinseg-<kind>-run``).
    settings : dict
        Everything that determines the run's result (JSON-serialisable). Options that do not
        (CPU threads, the device) are left out, so a run may resume with other ones.
    overwrite : bool
        Start again: remove the run's files (:data:`TRAINING_RUN_FILES`, ``best/``'s weights and
        config, run.json; nothing else) first.
    recorded : callable, optional
        For a run folder made before run.json existed (``last.pt`` or ``best/`` but no run.json):
        ``recorded(payload of best/config.json)`` returns what that checkpoint recorded, with the
        keys of ``settings``; they must match, then the folder is adopted.

    Returns
    -------
    str
        ``"new"`` (nothing to resume), ``"resume"`` or ``"adopted"``.

    Raises
    ------
    ConfigError
        The folder holds a run with other settings (the changes are named; pass ``--overwrite``
        or another ``--out``), or a run.json of something else.

    Notes
    -----
    A folder without results (no ``last.pt``, no ``best/config.json``) locks nothing in: its
    run.json is replaced, so a run that failed before its first epoch can be retried with other
    settings.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(settings))
    run_file, best_config = out / RUN_FILE, out / "best" / CONFIG_FILE
    payload = read_run_file(run_file) if run_file.exists() else None
    if run_file.exists() and (payload is None or payload["format"] != run_format(kind)):
        what = f"a {payload['format']} run" if payload else f"a {RUN_FILE} that skinseg did not write"
        raise ConfigError(f"'{out}' holds {what}, not a {run_format(kind)}. Choose another --out.")
    if overwrite:
        _remove_training_run(out)
    has_results = (out / "last.pt").is_file() or best_config.is_file()
    state, extra = "new", {}
    if has_results and payload is not None:
        old, state = payload.get("settings", {}), "resume"
    elif has_results:  # made before run.json: compare with what its best checkpoint recorded
        state, extra = "adopted", {"adopted": "a run folder without run.json, resumed with these settings"}
        try:
            old = recorded(json.loads(best_config.read_text(encoding="utf-8"))) if recorded else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            old = {}  # nothing readable to compare with: adopt
        old = {k: v for k, v in json.loads(json.dumps(old)).items() if k in settings}
    if state != "new" and any(old.get(k) != settings.get(k) for k in old):
        changes = settings_changes(old, {k: settings.get(k) for k in old})  # what can be compared
        raise ConfigError(
            f"'{out}' holds a training run made with other settings ({changes}); resuming would mix them. "
            "Rerun with the same settings, pass --overwrite to start again in this folder (its checkpoints "
            "and history are removed), or choose another --out."
        )
    if state != "resume" or payload.get("settings") != settings:
        write_run_file(run_file, kind, _TRAINING_RUN_VERSION, settings, **extra)
    return state
