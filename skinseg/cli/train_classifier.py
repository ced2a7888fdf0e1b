"""``skinseg train-classifier``: fine-tune a lesion classifier on labelled, masked images."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

from ..errors import SkinsegError
from ._common import EXIT_OK, file_sha256, list_sha256, start_training_run, training_settings, where
from .train import RESUME_HELP

EPILOG = """\
data: each DIR_OR_MANIFEST is a manifest.csv (or a folder holding one) with columns id, split,
label; images are images/<id>.jpg and masks masks/<id>.png beside it (the layout of the dev
sets in ../shared/data). Training uses --train-split, model selection --val-split; a test
split is never read.

outputs (in OUT): best/ (weights.safetensors + config.json, best validation balanced
accuracy), last.pt (resume state, read with weights_only=True), history.csv/json,
learning_curve.png, run.json (the settings).

""" + textwrap.fill("resume: " + RESUME_HELP, 90) + "\n"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train a lesion classifier on masked crops",
        description="Fine-tune a timm classifier (offline ImageNet EfficientNet-Lite0 by default) on "
        "lesion crops cut with the expert masks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", nargs="+", required=True, metavar="DIR_OR_MANIFEST")
    p.add_argument("--train-split", default="train")
    p.add_argument(
        "--label-map",
        nargs="+",
        default=[],
        metavar="FROM=TO",
        help="rename labels before training, e.g. melanoma=mel nevus=nv seborrheic_keratosis=bkl (the ISIC "
        "2017 diagnoses in the HAM10000 vocabulary); applies to every --data manifest",
    )
    p.add_argument("--val-split", default="val")
    p.add_argument(
        "--backbone", default="efficientnet_lite0", help="timm model name (default efficientnet_lite0)"
    )
    p.add_argument(
        "--pretrained",
        default="imagenet",
        help="'imagenet' (offline for efficientnet_lite0/1/2), a local .safetensors state dict, or 'none'",
    )
    p.add_argument(
        "--crop-mode",
        default=None,
        choices=["dilated_bbox", "masked", "mask_channel", "full"],
        help="how images are cut (default dilated_bbox, or the --init-from checkpoint's)",
    )
    p.add_argument("--margin", type=float, default=None, help="crop box enlargement per side (default 0.25)")
    p.add_argument(
        "--input-size", type=int, default=None, help="square input side (default 224, or the checkpoint's)"
    )
    p.add_argument(
        "--head-init",
        default="small",
        choices=["small", "timm"],
        help="initial head weights: small (default, first loss ~log K) or timm's (reproduces older runs)",
    )
    p.add_argument(
        "--color-norm",
        default=None,
        choices=["shades_of_gray"],
        help="colour constancy of the whole image before cropping (Shades of Gray, p=6; stored in the model)",
    )
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        default=None,
        help="continue training a saved classifier (a directory made by save_classifier); its backbone, "
        "classes, crop mode and margin are kept, --input-size may change",
    )
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument(
        "--balance",
        default="weights",
        choices=["weights", "sampler", "none"],
        help="class imbalance: weighted cross-entropy (default), balanced sampling, or none",
    )
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights, the data order and the augmentation (default 0): on the CPU "
                        "a run repeats bit for bit; on a GPU some cuDNN kernels are not deterministic, so losses "
                        "agree only approximately")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-batches", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", "-o", required=True, help="run directory")
    p.add_argument("--overwrite", action="store_true",
                   help="start again: remove OUT's checkpoints, history and run.json (nothing else) first")


def parse_label_map(pairs: list[str]) -> dict[str, str]:
    """``["melanoma=mel", ...]`` -> ``{"melanoma": "mel", ...}``; a malformed or repeated entry is a usage error."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst or "=" in dst:
            raise SkinsegError(f"--label-map entry {pair!r} is not FROM=TO (e.g. melanoma=mel).")
        if src in mapping:
            raise SkinsegError(f"--label-map names {src!r} twice.")
        mapping[src] = dst
    return mapping


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np
    import torch

    from ..classify import (
        ClassifierTrainConfig,
        build_crops,
        create_classifier,
        fit_classifier,
        read_labelled_manifest,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    train, val = [], []
    for src in args.data:
        train += read_labelled_manifest(src, args.train_split)
        val += read_labelled_manifest(src, args.val_split)
    if args.label_map:
        mapping = parse_label_map(args.label_map)
        train, val = ([dataclasses.replace(i, label=mapping.get(i.label, i.label)) for i in items]
                      for items in (train, val))
    if not train or not val:
        raise SkinsegError(f"No images in split {args.train_split!r} or {args.val_split!r} of {args.data}.")
    overlap = {i.image for i in train} & {i.image for i in val}
    if overlap:
        raise SkinsegError(
            f"{len(overlap)} images are in both training and validation, e.g. {sorted(overlap)[0]}."
        )
    names = sorted({i.label for i in train})
    unknown = sorted({i.label for i in val} - set(names))
    if unknown:
        raise SkinsegError(f"Validation labels {unknown} never occur in training.")
    from ..classify import CLASS_NAMES

    if set(names) == set(CLASS_NAMES):
        names = list(CLASS_NAMES)
    from ..training import seed_everything

    seed_everything(args.seed)  # before the new head is initialised
    if args.init_from:
        model = _init_from(args, names)
    else:
        pretrained = False if args.pretrained.lower() == "none" else args.pretrained
        model = create_classifier(
            args.backbone,
            pretrained=pretrained,
            class_names=names,
            crop_mode=args.crop_mode or "dilated_bbox",
            input_size=args.input_size or 224,
            margin=0.25 if args.margin is None else args.margin,
            head_init=args.head_init,
            color_norm=args.color_norm,
        )
    args.crop_mode = model.config.crop_mode
    if args.crop_mode != "full":
        no_mask = [i.image for i in train + val if i.mask is None]
        if no_mask:
            raise SkinsegError(
                f"{len(no_mask)} images have no mask (e.g. '{no_mask[0]}'); crop mode "
                f"{args.crop_mode!r} needs masks. Use --crop-mode full or add masks."
            )
    ytr = np.array([names.index(i.label) for i in train])
    yva = np.array([names.index(i.label) for i in val])
    cfg = ClassifierTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        balance=args.balance,
        patience=args.patience,
        seed=args.seed,
        max_batches_per_epoch=args.max_batches,
    )
    _check_run_folder(args, model, cfg, train, val, {n: int((ytr == k).sum()) for k, n in enumerate(names)})
    print(
        f"train {len(train)} images, val {len(val)}; classes {names}; {model.config.backbone} "
        f"({args.init_from or args.pretrained}), crop {args.crop_mode}, input {model.config.input_size}",
        file=sys.stderr,
        flush=True,
    )
    xtr, _ = build_crops(train, model.config, desc="cropping train")
    xva, _ = build_crops(val, model.config, desc="cropping val")
    metadata = {
        "command": "skinseg " + " ".join(sys.argv[1:]) if sys.argv and "skinseg" in sys.argv[0] else None,
        "pretrained": args.pretrained if not args.init_from else f"init from {args.init_from}",
        "init_from": args.init_from,
        "head_init": None if args.init_from else args.head_init,
        "training_data": {
            "sources": [str(s) for s in args.data],
            "label_map": parse_label_map(args.label_map) if args.label_map else None,
            "split": args.train_split,
            "n_images": len(train),
            "counts": {n: int((ytr == k).sum()) for k, n in enumerate(names)},
        },
        "validation_data": {"split": args.val_split, "n_images": len(val)},
    }
    history = fit_classifier(model, xtr, ytr, xva, yva, config=cfg, out_dir=args.out, metadata=metadata)
    if history:
        best = max(history, key=lambda h: h["val_balanced_accuracy"])
        print(
            json.dumps(
                {
                    "best_epoch": best["epoch"],
                    "val_balanced_accuracy": best["val_balanced_accuracy"],
                    "checkpoint": str(Path(args.out) / "best"),
                }
            )
        )
    return EXIT_OK


def _init_from(args: argparse.Namespace, names: list[str]):
    import dataclasses

    from ..classify import Classifier, load_classifier

    model = load_classifier(args.init_from)
    if not isinstance(model, Classifier):
        raise SkinsegError(
            f"--init-from '{args.init_from}' is an ensemble; continue training one member at a time "
            f"(e.g. '{Path(args.init_from) / 'member0'}')."
        )
    if list(model.class_names) != list(names):
        raise SkinsegError(
            f"--init-from '{args.init_from}' predicts {list(model.class_names)} but the training labels "
            f"are {names}; train a new classifier instead."
        )
    clash = [
        f"--{k.replace('_', '-')} {v!r} (checkpoint: {getattr(model.config, k)!r})"
        for k, v in (("crop_mode", args.crop_mode), ("margin", args.margin), ("color_norm", args.color_norm))
        if v is not None and v != getattr(model.config, k)
    ]
    if clash:
        raise SkinsegError(f"--init-from keeps the checkpoint's crop settings; drop {', '.join(clash)}.")
    if args.input_size and args.input_size != model.config.input_size:
        config = dataclasses.replace(model.config, input_size=args.input_size)
        model = Classifier(model.network, config)
    model.metadata = {}
    return model


def _check_run_folder(args: argparse.Namespace, model: object, cfg: object, train: list, val: list,
                      counts: dict[str, int]) -> None:
    """Refuse resuming OUT with other settings (or adopt a folder made before run.json), before cropping."""
    import dataclasses

    from ..models.checkpoint import checkpoint_fingerprint
    from ..models.config import ClassifierConfig

    def lines(items: list) -> list[str]:
        return [f"{os.path.abspath(i.image)}\t{i.mask and os.path.abspath(i.mask)}\t{i.label}" for i in items]

    pretrained = args.pretrained if not args.init_from else f"init from {args.init_from}"
    settings = training_settings(
        args, label_map=parse_label_map(args.label_map) if args.label_map else None, train_images=len(train),
        val_images=len(val), class_counts=counts, files=list_sha256(lines(train) + ["val"] + lines(val)),
        model=model.config.to_dict(), pretrained=where(pretrained), pretrained_sha256=file_sha256(pretrained),
        init_from=where(args.init_from), head_init=None if args.init_from else args.head_init,
        init_checkpoint=checkpoint_fingerprint(args.init_from, "classifier") if args.init_from else None,
        train_config=dataclasses.asdict(cfg))
    start_training_run(args, "train-classifier", settings, ClassifierConfig)
