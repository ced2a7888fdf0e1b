"""Accuracy of each backend and precision on the dev `val` splits, and the int8 gate.

    python benchmarks/backend_accuracy.py [--model default] [--data DIR ...] [--split val] [--json FILE]
    python benchmarks/backend_accuracy.py --variants onnx-fp32 onnx-int8   # the gate only

For the segmenter (its shipped flip-TTA default), on every image of the split of each
dev set: per-image Dice, IoU and ISIC thresholded Jaccard (macro means) and the number of
images under IoU 0.65, for torch fp32, ONNX Runtime fp32 and, when the checkpoint ships
one, ONNX Runtime int8. The int8 gate (issue: fast default path): Dice within 0.002 and
thresholded Jaccard within 0.005 of fp32 with the same TTA; the script prints whether it
passes. Choices are made on ``val`` only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import DATA_HELP, banner, data_dir, manifest_items, read_rgb

GATE = {"dice": 0.002, "thresholded_jaccard": 0.005}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="segmenter checkpoint or bundled name")
    ap.add_argument("--data", nargs="+", default=None, help=f"dev-set folders with manifest.csv ({DATA_HELP}: both)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the table as JSON")
    ap.add_argument("--variants", nargs="+", default=["torch-fp32", "onnx-fp32", "onnx-int8"],
                    choices=["torch-fp32", "onnx-fp32", "onnx-int8"],
                    help="backend-precision pairs to score (default: all three; the gate needs onnx-fp32 and "
                         "onnx-int8)")
    args = ap.parse_args()
    banner(libraries=("numpy", "onnxruntime"), split=args.split, choosing=True)
    import numpy as np

    import skinseg as ss
    from skinseg.inference import Predictor, int8_available, load_backend
    from skinseg.metrics import ISIC_JACCARD_THRESHOLD, dice_score, iou_score, thresholded_jaccard
    from skinseg.postprocess import postprocess_mask

    folders = args.data or [data_dir("lesions"), data_dir("lesion-classes")]
    items = manifest_items(folders, args.split)
    images = [read_rgb(it.image) for it in items]
    truths = [ss.read_mask(it.mask, shape=im.shape[:2]) for it, im in zip(items, images, strict=True)]
    print(f"{len(items)} {args.split} images from {len(folders)} dev set(s)", flush=True)
    variants = [tuple(v.split("-")) for v in args.variants]
    if ("onnx", "int8") in variants and not int8_available(args.model):
        print(f"{args.model} ships no int8 export: skipping onnx-int8", flush=True)
        variants.remove(("onnx", "int8"))
    rows = []
    for backend, precision in variants:
        b = load_backend(args.model, backend=backend, precision=precision, threads=args.threads)
        pred = Predictor(b)  # the model's own TTA default and threshold
        t0 = time.perf_counter()
        probs = pred.predict_proba_batch(images)
        seconds = time.perf_counter() - t0
        d, j, tj = [], [], []
        for prob, truth in zip(probs, truths, strict=True):
            mask = postprocess_mask(prob, threshold=pred.threshold)
            d.append(dice_score(mask, truth))
            j.append(iou_score(mask, truth))
            tj.append(thresholded_jaccard(mask, truth))
        rows.append({"backend": backend, "precision": precision, "tta": pred.tta, "dice": float(np.mean(d)),
                     "iou": float(np.mean(j)), "thresholded_jaccard": float(np.mean(tj)),
                     "under_iou_065": int(np.sum(np.asarray(j) < ISIC_JACCARD_THRESHOLD)), "seconds": seconds})
        r = rows[-1]
        print(f"{backend:5s} {precision:4s} tta={r['tta']}  Dice {r['dice']:.4f}  IoU {r['iou']:.4f}  "
              f"thr. Jaccard {r['thresholded_jaccard']:.4f}  IoU<0.65: {r['under_iou_065']:3d}  "
              f"({seconds:.0f} s)", flush=True)
    ref = next((r for r in rows if r["backend"] == "onnx" and r["precision"] == "fp32"), None)
    verdict = None
    for r in rows:
        if r["precision"] == "int8" and ref is not None:
            deltas = {k: ref[k] - r[k] for k in GATE}
            verdict = all(deltas[k] <= GATE[k] for k in GATE)
            print(f"int8 gate (int8 minus ONNX fp32, same TTA): "
                  f"Dice {-deltas['dice']:+.4f} (loss <= {GATE['dice']}), "
                  f"thr. Jaccard {-deltas['thresholded_jaccard']:+.4f} "
                  f"(loss <= {GATE['thresholded_jaccard']}): "
                  f"{'PASS' if verdict else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "n_images": len(items), "rows": rows,
                                               "int8_gate_pass": verdict}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
