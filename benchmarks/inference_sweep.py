"""Choose a segmenter's inference settings on ``val``: input scale, flip TTA, ensembles.

Runs each model once per (input size, flip) on every image of a split, keeps the
probability maps, and scores every combination (single scale or the mean over
several scales; no flips or the 4 flips; each model alone or the probability mean
of several models) after the same post-processing as ``skinseg segment``. Prints
per-image macro-mean Dice / IoU / ISIC thresholded Jaccard for each, so the
setting can be chosen on ``val`` (never on ``test``).

    python benchmarks/inference_sweep.py --model default --split val \
        --data ../shared/data/lesions ../shared/data/lesion-classes --sizes 256 320 384
    python benchmarks/inference_sweep.py --model default runs/deeplab/best --sizes 256 ...
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import DATA_HELP, command_line, data_dir, manifest_items, start_choice_run


def flip_probabilities(backend, x: np.ndarray, flips) -> list[np.ndarray]:
    """(H', W') probabilities of each flip of the prepared input ``x`` (3, H', W'), flipped back.

    One backend call (``TorchBackend.run``, batch of one) per flip; ``flips`` are axes of
    ``x`` as in :data:`skinseg.inference.FLIPS`.
    """
    out = []
    for dims in flips:
        xi = np.flip(x[None], tuple(a + 1 for a in dims)) if dims else x[None]
        p = backend.run(np.ascontiguousarray(xi))[0]
        out.append(np.flip(p, tuple(a - 1 for a in dims)) if dims else p)
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from tqdm.auto import tqdm

    import skinseg as ss
    from skinseg.inference import FLIPS, TorchBackend, prepare_input, probabilities_to_image_size
    from skinseg.metrics import dice_score, iou_score
    from skinseg.postprocess import postprocess_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default"],
                    help="one or more segmenters; with several, every subset's probability mean is scored too")
    ap.add_argument("--data", nargs="+", default=None, help=f"dev-set folders with manifest.csv ({DATA_HELP})")
    ap.add_argument("--split", default="val")
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 320, 384], help="input sizes (multiples of 32)")
    ap.add_argument("--thresholds", nargs="+", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the table here")
    args = ap.parse_args(argv)
    args.data = args.data or [str(data_dir())]
    start_choice_run(args.split, args.threads)
    models = [ss.load_segmenter(m).eval() for m in args.model]
    backends = [TorchBackend(model) for model in models]
    thresholds = args.thresholds or [models[0].config.threshold]
    items = manifest_items(args.data, args.split)
    configs = {(m, s): model.config.replace(input_size=s) for m, model in enumerate(models) for s in args.sizes}
    # per image: {(model index, size, flip index): prob map at image size}; identity is flip 0
    scores: dict[tuple, list[tuple[float, float]]] = {}
    subsets = [ms for r in range(1, len(models) + 1) for ms in itertools.combinations(range(len(models)), r)]
    size_sets = [ss_ for r in range(1, len(args.sizes) + 1) for ss_ in itertools.combinations(args.sizes, r)]
    combos = [(ms, sizes, tta, t) for ms in subsets for sizes in size_sets for tta in (False, True)
              for t in thresholds]
    t0 = time.perf_counter()
    for item in tqdm(items, desc=f"{args.split} images", unit="img"):
        image = ss.read_image(item.image)
        truth = ss.read_mask(item.mask, shape=image.shape[:2])
        probs = {}
        for (m, s), cfg in configs.items():
            x, hw = prepare_input(image, cfg)
            for k, p in enumerate(flip_probabilities(backends[m], x, FLIPS)):
                probs[m, s, k] = probabilities_to_image_size(p, hw, image.shape[:2])
        for ms, sizes, tta, t in combos:
            ks = range(len(FLIPS)) if tta else (0,)
            prob = np.mean([probs[m, s, k] for m in ms for s in sizes for k in ks], axis=0).astype(np.float32)
            pred = postprocess_mask(np.clip(prob, 0, 1), threshold=t)
            scores.setdefault((ms, sizes, tta, t), []).append((dice_score(pred, truth), iou_score(pred, truth)))
    seconds = time.perf_counter() - t0
    print(f"{len(items)} images of split '{args.split}' from {', '.join(args.data)}; {seconds:.0f} s")
    for m, name in enumerate(args.model):
        print(f"model {m}: {name}")
    print(f"{'models':>8} {'sizes':>16} {'tta':>5} {'thr':>5} {'Dice':>8} {'IoU':>8} {'thr.Jacc':>9} {'#IoU<0.65':>10}")
    table = []
    for (ms, sizes, tta, t), rows in scores.items():
        d = np.array([r[0] for r in rows])
        j = np.array([r[1] for r in rows])
        tj = np.where(j >= 0.65, j, 0.0)
        row = {"models": [args.model[m] for m in ms], "sizes": list(sizes), "tta": tta, "threshold": t,
               "dice": float(d.mean()), "iou": float(j.mean()),
               "thresholded_jaccard": float(tj.mean()), "n_below_0.65": int((j < 0.65).sum())}
        table.append(row)
        print(f"{'+'.join(map(str, ms)):>8} {'+'.join(map(str, sizes)):>16} {str(tta):>5} {t:5.2f} "
              f"{row['dice']:8.4f} {row['iou']:8.4f} {row['thresholded_jaccard']:9.4f} {row['n_below_0.65']:10d}")
    print("aggregation: per-image metrics, macro mean over images (ISIC); thr.Jacc = IoU, or 0 where IoU < 0.65")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": command_line(), "split": args.split,
                                               "data": args.data, "n_images": len(items), "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
