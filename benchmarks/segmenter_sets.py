"""Segmenters per dev set and per diagnosis: ISIC 2017 (lesions + lesion-classes) and HAM10000.

For each model, every image of the split is run at its own size through the public
inference core (:class:`skinseg.Predictor`, the model's flip TTA), post-processed as
``skinseg segment`` does (threshold, largest component, holes filled) and scored against
the expert mask. Printed per dev set: per-image macro Dice / IoU / ISIC thresholded
Jaccard with bootstrap 95 % intervals **resampled by lesion** (HAM10000's ``lesion_id``;
ISIC 2017's ``same_lesion_group``), the failures (IoU < 0.65), and the failures by
diagnosis (ISIC 2017 labels mapped to the HAM10000 codes: melanoma -> mel, nevus -> nv,
seborrheic_keratosis -> bkl).

    python benchmarks/segmenter_sets.py --model default --split val
    python benchmarks/segmenter_sets.py --model default runs/v3_unet/best --backend onnx --precision int8

``--backend onnx --precision int8`` scores a checkpoint's shipped int8 export (the default
CPU path of ``skinseg segment``); the default is torch fp32. ``--save DIR`` keeps, per model,
the per-image rows (CSV) and the probability maps (uint8, /255) for later analysis.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import time
from pathlib import Path

import numpy as np
from _common import banner, data_dir

SETS = {"ISIC 2017": ("lesions", "lesion-classes"), "HAM10000": ("ham10000",)}
DIAGNOSES = ("nv", "mel", "bkl", "bcc", "akiec", "vasc", "df")
TO_HAM = {"melanoma": "mel", "nevus": "nv", "seborrheic_keratosis": "bkl"}
FAILURE_IOU = 0.65


def dev_items(split: str) -> list[dict]:
    """One dict per image of ``split`` in every dev set: id, set, image, mask, dx, group."""
    items = []
    for set_name, folders in SETS.items():
        for folder in folders:
            root = data_dir(folder)
            with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row["split"] != split:
                        continue
                    group = row.get("lesion_id") or row.get("same_lesion_group") or row["id"]
                    items.append({"id": row["id"], "set": set_name, "image": root / "images" / f"{row['id']}.jpg",
                                  "mask": root / "masks" / f"{row['id']}.png",
                                  "dx": TO_HAM.get(row["label"], row["label"]), "group": f"{folder}:{group}"})
    return items


def score_model(predictor, items: list[dict], save: Path | None) -> tuple[list[dict], float]:
    import skinseg as ss
    from skinseg.metrics import segmentation_metrics
    from skinseg.postprocess import postprocess_mask

    rows, probs = [], {}
    t0 = time.perf_counter()
    for item in items:
        image = ss.read_image(item["image"])
        truth = ss.read_mask(item["mask"], shape=image.shape[:2])
        prob = predictor.predict_proba(image)
        pred = postprocess_mask(prob, threshold=predictor.threshold)
        m = segmentation_metrics(pred, truth)
        rows.append({"id": item["id"], "set": item["set"], "dx": item["dx"], "group": item["group"], **m,
                     "failure": m["iou"] < FAILURE_IOU})
        if save is not None:
            probs[item["id"]] = np.rint(prob * 255).astype(np.uint8)
    seconds = time.perf_counter() - t0
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save / "probs.npz", **probs)
        keys = ["id", "set", "dx", "group", "dice", "iou", "thresholded_jaccard", "failure"]
        with open(save / "per_image.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return rows, seconds


def set_summary(rows: list[dict], n_boot: int) -> dict:
    from skinseg.metrics import summarize

    s = summarize(rows, n_boot=n_boot, rng=0, groups=[r["group"] for r in rows])
    out = {k: s["macro"][k] for k in ("dice", "iou", "thresholded_jaccard")}
    out["n_images"] = len(rows)
    out["n_lesions"] = len({r["group"] for r in rows})
    out["failures"] = int(sum(r["failure"] for r in rows))
    out["by_diagnosis"] = {}
    for dx in DIAGNOSES:
        sub = [r for r in rows if r["dx"] == dx]
        if sub:
            out["by_diagnosis"][dx] = {"n": len(sub), "failures": int(sum(r["failure"] for r in sub))}
    return out


def label_of(model: str) -> str:
    return re.sub(r"/best$", "", model.rstrip("/"))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default"], help="bundled names or checkpoint folders")
    ap.add_argument("--split", default="val")
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime threads")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="flip TTA on/off (default: the model's own)")
    ap.add_argument("--input-size", type=int, default=None,
                    help="run a torch model at another input size (default: its own)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set (a quick check)")
    ap.add_argument("--save", help="folder: per model, per_image.csv and probs.npz")
    ap.add_argument("--json", help="write the tables here")
    args = ap.parse_args(argv)
    if args.threads and args.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    banner(libraries=("numpy", "torch") if args.backend == "torch" else ("numpy", "onnxruntime"), split=args.split)
    import skinseg as ss

    items = dev_items(args.split)
    if args.limit:
        items = [it for s in SETS for it in [i for i in items if i["set"] == s][: args.limit]]
    results = {}
    for model in args.model:
        if args.input_size:
            net = ss.load_segmenter(model)
            net.config = net.config.replace(input_size=args.input_size)
            predictor = ss.Predictor(net, tta=args.tta)
        else:
            predictor = ss.Predictor.load(model, backend=args.backend, precision=args.precision,
                                          threads=args.threads, tta=args.tta)
        tag = label_of(model).replace("/", "_") + (f"@{args.input_size}" if args.input_size else "")
        tag += "" if args.tta is None else ("+tta" if args.tta else "-tta")
        save = Path(args.save) / tag if args.save else None
        rows, seconds = score_model(predictor, items, save)
        results[model] = {"backend": args.backend, "precision": args.precision, "tta": predictor.tta,
                          "threshold": predictor.threshold, "seconds_per_image": round(seconds / len(items), 4),
                          "sets": {s: set_summary([r for r in rows if r["set"] == s], args.n_boot) for s in SETS}}
    print(f"\nsplit '{args.split}', {args.backend} {args.precision}; per-image macro means, 95 % bootstrap intervals "
          f"resampled by lesion; failures: IoU < {FAILURE_IOU}")
    for set_name in SETS:
        print(f"\n### {set_name}\n")
        print("| model | images (lesions) | Dice | IoU | thr. Jaccard | failures | "
              + " | ".join(DIAGNOSES) + " |")
        print("|---" * (6 + len(DIAGNOSES)) + "|")
        for model, res in results.items():
            s = res["sets"][set_name]
            ci = lambda k, s=s: f"{s[k]['mean']:.4f} [{s[k]['ci_low']:.3f}, {s[k]['ci_high']:.3f}]"  # noqa: E731
            dx = [f"{s['by_diagnosis'][d]['failures']}/{s['by_diagnosis'][d]['n']}" if d in s["by_diagnosis"]
                  else "" for d in DIAGNOSES]
            print(f"| {label_of(model)} | {s['n_images']} ({s['n_lesions']}) | {ci('dice')} | {ci('iou')} | "
                  f"{ci('thresholded_jaccard')} | {s['failures']} ({100 * s['failures'] / s['n_images']:.1f} %) | "
                  + " | ".join(dx) + " |")
    print("\n" + " ".join(f"{m}: {r['seconds_per_image']} s/image" for m, r in results.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "models": results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
