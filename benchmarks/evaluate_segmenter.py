"""Score a segmenter on a split of the shared ISIC dev set(s), ISIC-style.

Runs the model on every image of the chosen split at the image's own size, applies
the same post-processing as ``skinseg segment`` (threshold, largest component, fill
holes) and reports per-image mean Dice / IoU / thresholded Jaccard (macro mean over
images, the ISIC convention) with bootstrap 95 % intervals, plus the pooled numbers.

    python benchmarks/evaluate_segmenter.py --model default --split test
    python benchmarks/evaluate_segmenter.py --model runs/unet_lite0/best --split val --thresholds 0.3 0.4 0.5 0.6

``--thresholds`` sweeps decision thresholds (choose them on ``val``, never on ``test``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _common import DATA_HELP, banner, data_dir, manifest_items


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import torch

    import skinseg as ss
    from skinseg.inference import resolve_tta
    from skinseg.metrics import segmentation_metrics, summarize
    from skinseg.postprocess import postprocess_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", nargs="+", default=None, help=f"dev-set folders with manifest.csv ({DATA_HELP})")
    ap.add_argument("--split", default="test")
    ap.add_argument("--thresholds", nargs="+", type=float, default=None)
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="flip TTA on/off (default: as stored in the model's config)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the summary here")
    args = ap.parse_args(argv)
    args.data = args.data or [str(data_dir())]
    if args.threads:
        torch.set_num_threads(args.threads)
    # several thresholds are a choice: warn when it is made on 'test'
    banner(libraries=("numpy", "torch"), split=args.split, choosing=len(args.thresholds or ()) > 1)
    model = ss.load_segmenter(args.model)
    args.tta = resolve_tta(model, args.tta)
    thresholds = args.thresholds or [model.config.threshold]
    items = manifest_items(args.data, args.split)
    rows: dict[float, list[dict]] = {t: [] for t in thresholds}
    t0 = time.perf_counter()
    for item in items:
        image = ss.read_image(item.image)
        truth = ss.read_mask(item.mask, shape=image.shape[:2])
        prob = ss.predict_proba(model, image, tta=args.tta)
        for t in thresholds:
            pred = postprocess_mask(prob, threshold=t)
            rows[t].append({"id": item.id, **segmentation_metrics(pred, truth)})
    seconds = time.perf_counter() - t0
    out = {"model": str(args.model), "split": args.split, "data": args.data, "n_images": len(items), "tta": args.tta,
           "seconds_per_image": round(seconds / len(items), 4), "by_threshold": {}}
    print(f"{len(items)} images of split '{args.split}' from {', '.join(args.data)}; TTA {args.tta}; "
          f"{seconds / len(items):.3f} s/image")
    print(f"{'thr':>5} {'Dice':>22} {'IoU':>22} {'thr. Jaccard':>22} {'pooled Dice':>12} {'pooled IoU':>11}")
    for t in thresholds:
        s = summarize(rows[t], n_boot=2000, rng=0)
        m = s["macro"]
        fmt = lambda k, m=m: f"{m[k]['mean']:.4f} [{m[k]['ci_low']:.3f}, {m[k]['ci_high']:.3f}]"  # noqa: E731
        print(f"{t:5.2f} {fmt('dice'):>22} {fmt('iou'):>22} {fmt('thresholded_jaccard'):>22} "
              f"{s['pooled']['dice']:12.4f} {s['pooled']['iou']:11.4f}")
        out["by_threshold"][str(t)] = {"macro": {k: m[k] for k in ("dice", "iou", "thresholded_jaccard", "sensitivity",
                                                                   "specificity", "accuracy", "hd95")},
                                       "pooled": s["pooled"]}
    print("aggregation: per-image metrics, macro mean over images (ISIC), 95 % bootstrap CI; pooled = summed pixels")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
