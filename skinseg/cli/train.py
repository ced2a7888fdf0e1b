"""``skinseg train``: train a segmenter."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import SkinsegError
from ._common import (
    EXIT_OK,
    file_sha256,
    has_manifest,
    list_sha256,
    resolve_device,
    start_training_run,
    training_settings,
    where,
)

RESUME_HELP = (
    "Rerunning the same command resumes. A rerun with other settings is refused, naming what changed (the "
    "settings are kept in OUT/run.json): pass --overwrite to start again in OUT, or another --out. --threads "
    "and --device are not settings (a run may resume with others); every other option is."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a U-Net or DeepLabv3+ segmenter",
        description="Train a segmenter on image/mask folders or dev-set manifests. Checkpoints every epoch into "
        "OUT (best/ and last.pt). " + RESUME_HELP,
    )
    p.add_argument("--data", nargs="+", required=True, metavar="DIR_OR_MANIFEST",
                   help="training data: manifest.csv (its 'train' split is used), a folder holding one, or an "
                        "image folder with masks (<stem>_segmentation.png, in masks/ or beside the images)")
    p.add_argument("--val", nargs="+", metavar="DIR_OR_MANIFEST",
                   help="validation data (default: the 'val' split of each --data manifest)")
    p.add_argument("--train-split", default="train", help="manifest split used for training (default: train)")
    p.add_argument("--skip-unlabelled", action="store_true",
                   help="leave out images of an image folder that have no mask (default: an error naming them)")
    p.add_argument("--val-split", default="val", help="manifest split used for validation (default: val)")
    p.add_argument("--arch", default="unet", help="architecture: unet or deeplabv3plus (default: unet)")
    p.add_argument("--encoder", default="tu-efficientnet_lite0", help="smp encoder name (default: tu-efficientnet_lite0)")
    p.add_argument("--encoder-weights", default="imagenet",
                   help="'imagenet' (offline: tu-efficientnet_lite0/1/2), 'none', or a local weights file "
                        "(default: imagenet)")
    p.add_argument("--input-size", type=int, default=None,
                   help="model input long side in px, multiple of 32 (default 256, or the --init-from checkpoint's)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="dice_bce", choices=["dice", "iou", "dice_bce", "lovasz"],
                   help="dice_bce (default), dice, iou (soft, per image) or lovasz (Lovász hinge, per image; "
                        "meant for fine-tuning a dice_bce model)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "plateau"])
    p.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (default 5)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights, the data order and the augmentation (default 0): on the CPU "
                        "a run repeats bit for bit; on a GPU some cuDNN kernels are not deterministic, so losses "
                        "agree only approximately")
    p.add_argument("--hair-removal", choices=["dullrazor", "blackhat"], default=None,
                   help="hair removal applied before the model (stored in the checkpoint)")
    p.add_argument("--denoise", choices=["median", "wiener"], default=None)
    p.add_argument("--color-norm", choices=["shades_of_gray"], default=None,
                   help="colour constancy before the model (Shades of Gray, p=6; stored in the checkpoint); with "
                        "--init-from it is added to the checkpoint's preprocessing")
    p.add_argument("--failure-aug", action="store_true",
                   help="also simulate the failure kinds while training: ink rings and marker dots, pale lesion "
                        "borders, hair (skinseg.augment.FailureAugmentation)")
    p.add_argument("--set-weights", nargs="+", type=float, default=None, metavar="W",
                   help="sampling weight of each --data source, in order (e.g. 2 2 1: an image of the first two "
                        "is drawn twice as often as one of the third); each epoch then draws as many images as "
                        "the training set holds, with replacement (default: every image once per epoch)")
    p.add_argument("--diagnosis-weights", nargs="+", default=None, metavar="LABEL=W",
                   help="sampling weight per diagnosis, by the manifests' 'label' column (e.g. bcc=3 akiec=2; "
                        "other diagnoses 1); multiplies --set-weights")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-batches", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--init-from", metavar="CHECKPOINT", default=None,
                   help="fine-tune: start from this checkpoint directory (or 'default'); its architecture, encoder "
                        "and normalisation replace --arch/--encoder; --input-size, if given, changes its input size")
    p.add_argument("--out", "-o", required=True, help="run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="start again: remove OUT's checkpoints, history and run.json (nothing else) first")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import LesionSegDataset, collect_items, find_pairs, train_augmentation, val_transform
    from ..models import create_segmenter
    from ..training import TrainConfig, fit, seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train_items, val_items = [], []
    skipped: list[Path] = []

    def items(src: str, split: str) -> list:
        pairs, unlabelled = find_pairs(src, splits=split if has_manifest(src) else None)
        if unlabelled and not args.skip_unlabelled:
            collect_items(src, splits=split if has_manifest(src) else None)  # raises, naming them
        skipped.extend(unlabelled)
        return pairs

    sources: list[int] = []
    for i, src in enumerate(args.data):
        train_items += items(src, args.train_split)
        sources += [i] * (len(train_items) - len(sources))
    if args.val:
        for src in args.val:
            val_items += items(src, args.val_split)
    else:
        for src in args.data:
            if not has_manifest(src):
                raise SkinsegError(f"--val is needed: '{src}' has no manifest.csv to take a 'val' split from.")
            val_items += items(src, args.val_split)
    if skipped:
        print(f"note: {len(skipped)} image(s) without a mask were left out (--skip-unlabelled), e.g. {skipped[0]}",
              file=sys.stderr)
    overlap = {p for p, _ in train_items} & {p for p, _ in val_items}
    if overlap:
        raise SkinsegError(f"{len(overlap)} images are in both the training and validation data, e.g. {sorted(overlap)[0]}.")
    preprocess = {}
    if args.hair_removal or args.denoise or args.color_norm:
        from ..preprocess import PreprocessConfig

        preprocess = PreprocessConfig(hair_removal=args.hair_removal, denoise=args.denoise,
                                      color_norm=args.color_norm).to_dict()
    weights = None if args.encoder_weights.lower() == "none" else args.encoder_weights
    seed_everything(args.seed)  # before the model is built: its random initialisation is part of the run
    if args.init_from:
        from ..models import SegmenterEnsemble, load_segmenter

        model = load_segmenter(args.init_from)
        if isinstance(model, SegmenterEnsemble):
            from ..models.checkpoint import bundled_model_dir

            d = Path(args.init_from) if Path(args.init_from).is_dir() else bundled_model_dir(args.init_from)
            names = ", ".join(f"'{d / f'member{i}'}'" for i in range(len(model.members)))
            raise SkinsegError(
                f"--init-from '{args.init_from}' is an ensemble of {len(model.members)} segmenters ({names}); "
                "fine-tune one member: pass its folder instead."
            )
        if args.color_norm:  # fine-tune the checkpoint to colour-normalised input
            preprocess = _with_color_norm(model.config.preprocess, args)
            model.config = model.config.replace(preprocess=preprocess)
        if preprocess and preprocess != model.config.preprocess:
            raise SkinsegError(f"--hair-removal/--denoise differ from the preprocessing stored in '{args.init_from}'.")
        preprocess = model.config.preprocess
        model.network.float().train()
        if args.input_size is not None and args.input_size != model.config.input_size:
            model.config = model.config.replace(input_size=args.input_size)
        weights = f"init from {args.init_from}"
    else:
        model = create_segmenter(args.arch, encoder_name=args.encoder, encoder_weights=weights,
                                 input_size=args.input_size or 256, preprocess=preprocess)
    augment = train_augmentation(model.config.input_size, seed=args.seed)
    extra = {}
    if args.failure_aug:
        from ..augment import FailureAugmentation

        augment = FailureAugmentation(augment, seed=args.seed)
        extra["failure_augmentation"] = augment.to_dict()
    sample_weights = None
    if args.set_weights is not None or args.diagnosis_weights is not None:
        sample_weights, extra["sampling"] = _sampling(args, train_items, sources)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, loss=args.loss,
                         schedule=args.schedule, patience=args.patience, seed=args.seed,
                         max_batches_per_epoch=args.max_batches, extra=extra)
    _check_run_folder(args, model, weights, config, train_items, val_items)
    cfg = model.config
    print(f"train {len(train_items)} images, val {len(val_items)} images; {cfg.arch} / {cfg.encoder_name} "
          f"({weights or 'random init'}), input {cfg.input_size}, device {device}", file=sys.stderr, flush=True)
    train_set = LesionSegDataset(train_items, input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                                 transform=augment,
                                 preprocess=preprocess, progress=True)
    val_set = LesionSegDataset(val_items, input_size=cfg.input_size, mean=cfg.mean, std=cfg.std,
                               transform=val_transform(cfg.input_size), preprocess=preprocess, progress=True)
    metadata = {
        "command": "skinseg " + " ".join(sys.argv[1:]) if sys.argv and "skinseg" in sys.argv[0] else None,
        "encoder_weights": weights,
        "init_from": args.init_from,
        "training_data": {"sources": [str(s) for s in args.data], "split": args.train_split,
                          "n_images": len(train_items)},
        "validation_data": {"n_images": len(val_items)},
    }
    history = fit(model, train_set, val_set, config=config, out_dir=args.out, device=device, metadata=metadata,
                  sample_weights=sample_weights)
    best = max(history, key=lambda h: h["val_dice"]) if history else None
    if best:
        print(json.dumps({"best_epoch": best["epoch"], "val_dice": best["val_dice"], "val_iou": best["val_iou"],
                          "checkpoint": str(Path(args.out) / "best")}))
    return EXIT_OK


def _sampling(args: argparse.Namespace, train_items: list, sources: list[int]) -> tuple[object, dict]:
    """Per-image sampling weights from --set-weights / --diagnosis-weights, and their record for run.json."""
    import numpy as np

    from ..data import read_manifest, sampling_weights

    diagnosis = {}
    for spec in args.diagnosis_weights or []:
        label, sep, value = spec.partition("=")
        try:
            diagnosis[label.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not label.strip():
            raise SkinsegError(f"--diagnosis-weights takes LABEL=WEIGHT (e.g. bcc=3); got {spec!r}.")
    labels: dict[str, str] = {}
    if diagnosis:
        for src in args.data:
            if has_manifest(src):
                try:
                    found = read_manifest(src, args.train_split, label_column="label")
                except SkinsegError as exc:
                    raise SkinsegError(f"--diagnosis-weights needs a 'label' column: {exc}") from None
                labels.update({os.path.abspath(it.image): it.label for it in found})
    set_weights = args.set_weights
    if set_weights is not None and len(set_weights) != len(args.data):
        raise SkinsegError(f"--set-weights takes one weight per --data source ({len(args.data)}); got "
                           f"{len(set_weights)}.")
    weights = sampling_weights(sources, [labels.get(os.path.abspath(p)) for p, _ in train_items],
                               set_weights=set_weights, diagnosis_weights=diagnosis)
    shares = ", ".join(f"{Path(src).name} {weights[np.asarray(sources) == i].sum() / weights.sum():.1%}"
                       for i, src in enumerate(args.data))
    print(f"sampling: share of the draws per source: {shares}", file=sys.stderr, flush=True)
    return weights, {"set_weights": list(set_weights) if set_weights is not None else None,
                     "diagnosis_weights": diagnosis or None}


def _with_color_norm(stored: dict, args: argparse.Namespace) -> dict:
    """The checkpoint's preprocessing dict with --color-norm set (hair/denoise flags must match it)."""
    from ..preprocess import PreprocessConfig

    cfg = PreprocessConfig.from_dict(stored) if stored else PreprocessConfig()
    for flag, value in (("hair_removal", args.hair_removal), ("denoise", args.denoise)):
        if value is not None and value != getattr(cfg, flag):
            raise SkinsegError(f"--{flag.replace('_', '-')} {value} differs from the preprocessing stored in "
                               f"'{args.init_from}' ({getattr(cfg, flag)}); drop it.")
    if cfg.color_norm is not None and cfg.color_norm != args.color_norm:
        raise SkinsegError(f"'{args.init_from}' already normalises colour with {cfg.color_norm!r}.")
    return PreprocessConfig.from_dict({**cfg.to_dict(), "color_norm": args.color_norm}).to_dict()


def _check_run_folder(args: argparse.Namespace, model: object, weights: str | None, config: object,
                      train_items: list, val_items: list) -> None:
    """Refuse resuming OUT with other settings (or adopt a folder made before run.json), before any work."""
    from ..models.checkpoint import checkpoint_fingerprint
    from ..models.config import SegmenterConfig

    def lines(items: list) -> list[str]:
        return [f"{os.path.abspath(i)}\t{os.path.abspath(m)}" for i, m in items]

    settings = training_settings(
        args, val=[where(s) for s in args.val] if args.val else None,
        skip_unlabelled=bool(args.skip_unlabelled), train_images=len(train_items), val_images=len(val_items),
        files=list_sha256(lines(train_items) + ["val"] + lines(val_items)), model=model.config.to_dict(),
        encoder_weights=where(weights), encoder_weights_sha256=file_sha256(weights),
        init_from=where(args.init_from),
        init_checkpoint=checkpoint_fingerprint(args.init_from) if args.init_from else None,
        train_config=config.to_dict())
    start_training_run(args, "train", settings, SegmenterConfig)
