"""Does a zoomed second pass help? And what do the failures look like?

For every image of a split: the model's probability map (with its TTA default), the
mask ``skinseg segment`` would write, then a second pass on the crop around that mask
(``skinseg.crops.crop_box``: a square of side (1 + 2 margin) times the mask's
bounding-box long side, clipped to the image), mapped back into the full map either
replacing the first pass there or averaged with it. Crops that would cover more than
80 % of the image are skipped (the first pass stands). Prints
per-image macro-mean Dice / IoU / ISIC thresholded Jaccard for each variant, per data
folder and overall, then the first pass's failures (IoU < 0.65) with recall and precision,
so under- and over-segmentation can be told apart. Choose on ``val``, never on ``test``.

    python benchmarks/zoom_refine.py --split val \
        --data ../shared/data/lesions ../shared/data/lesion-classes
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import DATA_HELP, data_dir, manifest_items, start_choice_run


def zoom_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """:func:`skinseg.crops.crop_box` (the classifier's square crop) clipped to the image, as
    (y0, y1, x0, x1); None if the mask is empty or the box covers more than 80 % of the image."""
    from skinseg.crops import crop_box

    if not mask.any():
        return None
    h, w = mask.shape
    top, left, bottom, right = crop_box(mask, margin=margin)
    y0, y1, x0, x1 = max(0, top), min(h, bottom), max(0, left), min(w, right)
    return None if (y1 - y0) * (x1 - x0) > 0.8 * h * w else (y0, y1, x0, x1)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from tqdm.auto import tqdm

    import skinseg as ss
    from skinseg.metrics import ISIC_JACCARD_THRESHOLD as TJ
    from skinseg.metrics import dice_score, iou_score, sensitivity_score
    from skinseg.postprocess import postprocess_mask

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", nargs="+", default=None,
                    help=f"dev-set folders with manifest.csv ({DATA_HELP})")
    ap.add_argument("--split", default="val")
    ap.add_argument("--margins", nargs="+", type=float, default=[0.15, 0.35])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    args.data = args.data or [str(data_dir())]
    start_choice_run(args.split, args.threads)
    model = ss.load_segmenter(args.model).eval()
    threshold = model.config.threshold
    items = [(Path(d).name, it.image, it.mask, it.id)
             for d in args.data for it in manifest_items(d, args.split)]
    variants = ["first pass"] + [f"zoom {m:g} {how}" for m in args.margins for how in ("replace", "average")]
    scores: dict[str, list[tuple[str, float, float]]] = {v: [] for v in variants}
    failures = []
    t0 = time.perf_counter()
    for source, image_path, mask_path, image_id in tqdm(items, desc=f"{args.split} images", unit="img"):
        image = ss.read_image(image_path)
        truth = ss.read_mask(mask_path, shape=image.shape[:2])
        p1 = ss.predict_proba(model, image)
        m1 = postprocess_mask(p1, threshold=threshold)
        preds = {"first pass": m1}
        for margin in args.margins:
            box = zoom_box(m1, margin)
            replace, average = p1.copy(), p1.copy()
            if box is not None:
                y0, y1, x0, x1 = box
                pc = ss.predict_proba(model, np.ascontiguousarray(image[y0:y1, x0:x1]))
                replace[y0:y1, x0:x1] = pc
                average[y0:y1, x0:x1] = (pc + p1[y0:y1, x0:x1]) / 2
            preds[f"zoom {margin:g} replace"] = postprocess_mask(replace, threshold=threshold)
            preds[f"zoom {margin:g} average"] = postprocess_mask(average, threshold=threshold)
        for v, pred in preds.items():
            scores[v].append((source, dice_score(pred, truth), iou_score(pred, truth)))
        j = scores["first pass"][-1][2]
        if j < TJ:  # precision is the sensitivity with the roles of prediction and truth swapped
            failures.append((j, image_id, source, sensitivity_score(m1, truth),
                             sensitivity_score(truth, m1), float(truth.mean()), float(m1.mean())))
    seconds = time.perf_counter() - t0
    print(f"{len(items)} images of split '{args.split}'; model {args.model}; {seconds:.0f} s")
    groups = sorted({s for s, *_ in items}) + ["all"]
    print(f"{'variant':>22} {'data':>16} {'n':>4} {'Dice':>8} {'IoU':>8} {'thr.Jacc':>9} {'#IoU<0.65':>10}")
    for v, rows in scores.items():
        for g in groups:
            sel = [r for r in rows if g in ("all", r[0])]
            d = np.array([r[1] for r in sel])
            j = np.array([r[2] for r in sel])
            print(f"{v:>22} {g:>16} {len(sel):4d} {d.mean():8.4f} {j.mean():8.4f} "
                  f"{np.where(j >= TJ, j, 0).mean():9.4f} {int((j < TJ).sum()):10d}")
    print("aggregation: per-image metrics, macro mean over images (ISIC); "
          "thr.Jacc = IoU, or 0 where IoU < 0.65")
    print(f"\nfirst-pass failures (IoU < 0.65): {len(failures)}")
    print(f"{'image':>14} {'data':>16} {'IoU':>6} {'recall':>7} {'precision':>9} "
          f"{'truth area':>10} {'pred area':>9}")
    for j, stem, source, rec, prec, ta, pa in sorted(failures):
        print(f"{stem:>14} {source:>16} {j:6.3f} {rec:7.2f} {prec:9.2f} {ta:10.3f} {pa:9.3f}")
    under = sum(rec < 0.8 and prec >= 0.9 for _, _, _, rec, prec, _, _ in failures)
    over = sum(prec < 0.8 and rec >= 0.9 for _, _, _, rec, prec, _, _ in failures)
    print(f"under-segmented (recall < 0.8, precision >= 0.9): {under}; "
          f"over-segmented (precision < 0.8, recall >= 0.9): {over}; other: {len(failures) - under - over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
