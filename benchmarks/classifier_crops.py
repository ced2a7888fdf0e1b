"""Crop ablation, ensemble vs single model, and test scores of the lesion classifier.

For each crop mode (full image, dilated bbox, masked background, mask channel) one
classifier is fine-tuned with the same data, seed, schedule and input size, on crops
cut with the expert masks (``skinseg train-classifier``, resumable). Each is then
scored on the ``test`` split of lesion-classes twice: crops cut with the expert masks
and crops cut with masks predicted by the bundled segmenter (the deployment case).
The ensemble averages the probabilities of the two modes best on ``val`` (chosen on
val only). Metrics: balanced accuracy (mean per-class recall), melanoma-vs-rest
ROC AUC, per-class recall, with bootstrap 95 % intervals. Data: ``lesion-classes`` and
``lesions`` from ``$SKINSEG_DATA_DIR`` (the ``lesions`` folder; ``lesion-classes`` is its
sibling), else ``../shared/data``.

    python benchmarks/classifier_crops.py                      # train what is missing, then score
    python benchmarks/classifier_crops.py --no-train           # score existing runs only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from _common import REPO_ROOT, banner, data_dir, manifest_items

MODES = ["full", "dilated_bbox", "masked", "mask_channel"]


def train_command(mode: str, args: argparse.Namespace) -> list[str]:
    return [
        "skinseg",
        "train-classifier",
        "--data",
        str(data_dir("lesion-classes")),
        str(data_dir("lesions")),
        "--crop-mode",
        mode,
        "--input-size",
        str(args.input_size),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "32",
        "--lr",
        "5e-4",
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--head-init",
        args.head_init,
        "--out",
        str(Path(args.runs) / mode),
    ]


def predicted_masks(items: list, cache: Path, threads: int) -> dict[str, np.ndarray]:
    """Masks of the bundled segmenter (cached as PNG) for the given items."""
    from tqdm.auto import tqdm

    import skinseg as ss

    cache.mkdir(parents=True, exist_ok=True)
    out, model = {}, None
    for it in tqdm(items, desc="predicted masks", unit="img"):
        path = cache / f"{it.id}.png"
        if path.is_file():
            image = ss.read_image(it.image)
            out[it.id] = ss.read_mask(path, shape=image.shape[:2])
            continue
        if model is None:
            model = ss.load_segmenter("default")
        image = ss.read_image(it.image)
        mask = ss.segment(model, image)
        ss.write_mask(path, mask)
        out[it.id] = mask
    return out


def score(y: np.ndarray, p: np.ndarray, names: list[str]) -> dict:
    from skinseg.metrics import bootstrap_ci, classification_metrics

    m = classification_metrics(y, p, names, positive="melanoma")
    mel = names.index("melanoma")

    def bacc(yy, pp):
        from skinseg.metrics import balanced_accuracy

        return balanced_accuracy(yy, pp.argmax(1), num_classes=len(names))

    def mel_auc(yy, pp):
        from skinseg.metrics import roc_auc

        return roc_auc(yy == mel, pp[:, mel])

    m["balanced_accuracy_ci"] = bootstrap_ci(bacc, y, p, n=1000, seed=0)
    m["melanoma_auc_ci"] = bootstrap_ci(mel_auc, y, p, n=1000, seed=0)
    return m


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(REPO_ROOT / "runs" / "cls"))
    ap.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    ap.add_argument("--input-size", type=int, default=192)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-init", default="small", choices=["small", "timm"],
                    help="classifier head init; 'timm' reproduces the runs made before the head fix")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--split", default="test", help="split to score (models are chosen on val)")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--json", default=None, help="write all results here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    banner(libraries=("numpy", "torch"))
    import skinseg.classify as C
    from skinseg.metrics import balanced_accuracy

    if not args.no_train:
        for mode in args.modes:
            hist = Path(args.runs) / mode / "history.json"
            done = hist.is_file() and len(json.loads(hist.read_text())) >= args.epochs
            if not done:
                cmd = train_command(mode, args)
                print("$ " + " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)

    if args.train_only:
        return 0
    test = manifest_items(data_dir("lesion-classes"), args.split, label_column="label")
    val = manifest_items([data_dir("lesion-classes"), data_dir("lesions")], "val", label_column="label")
    pred = predicted_masks(test, Path(args.runs) / f"pred_masks_{args.split}", args.threads)
    names = list(C.CLASS_NAMES)
    y = np.array([names.index(i.label) for i in test])
    yv = np.array([names.index(i.label) for i in val])

    results, probs, val_bacc, val_probs = {}, {}, {}, {}
    for mode in args.modes:
        best = Path(args.runs) / mode / "best"
        if not best.is_dir():
            print(f"[skip] {mode}: no checkpoint at {best}")
            continue
        model = C.load_classifier(best)
        cfg = model.config
        xv, _ = C.build_crops(val, cfg, progress=False)
        pv = C.predict_proba_crops(model, xv)
        val_bacc[mode] = balanced_accuracy(yv, pv.argmax(1), num_classes=len(names))
        val_probs[mode] = pv
        for source in ("expert", "predicted"):
            t0 = time.perf_counter()
            x, empty = C.build_crops(test, cfg, masks=pred if source == "predicted" else None, progress=False)
            p = C.predict_proba_crops(model, x)
            probs[(mode, source)] = p
            r = score(y, p, names)
            r["empty_masks"] = int(empty.sum())
            r["seconds"] = round(time.perf_counter() - t0, 1)
            results[f"{mode}/{source}"] = r
            if mode == "full":  # the full image does not use the mask
                results[f"{mode}/predicted"] = r
                probs[(mode, "predicted")] = p
                break

    ranked = sorted(val_bacc, key=val_bacc.get, reverse=True)
    if len(ranked) >= 2:
        pair = ranked[:2]
        for source in ("expert", "predicted"):
            p = (probs[(pair[0], source)] + probs[(pair[1], source)]) / 2
            results[f"ensemble({'+'.join(pair)})/{source}"] = score(y, p, names)

    print(
        "\nval balanced accuracy (expert masks), used to choose the ensemble: "
        + ", ".join(f"{m} {v:.3f}" for m, v in val_bacc.items())
    )
    from skinseg.metrics import roc_auc

    mel = names.index("melanoma")
    val_scores = {m: {"balanced_accuracy": val_bacc[m], "melanoma_auc": roc_auc(yv == mel, pv[:, mel])}
                  for m, pv in val_probs.items()}
    if len(ranked) >= 2:
        pv = (val_probs[ranked[0]] + val_probs[ranked[1]]) / 2
        val_scores[f"ensemble({'+'.join(ranked[:2])})"] = {
            "balanced_accuracy": balanced_accuracy(yv, pv.argmax(1), num_classes=len(names)),
            "melanoma_auc": roc_auc(yv == mel, pv[:, mel]),
        }
    print(
        f"val (n={len(yv)}, expert masks) balanced accuracy / melanoma AUC: "
        + ", ".join(f"{m} {v['balanced_accuracy']:.3f} / {v['melanoma_auc']:.3f}" for m, v in val_scores.items())
    )
    print(
        f"\n{args.split} split of lesion-classes, n={len(y)} "
        f"({', '.join(f'{n} {int((y == k).sum())}' for k, n in enumerate(names))})"
    )
    hdr = (
        f"{'model / masks':44s} {'bal.acc [95% CI]':24s} {'mel AUC [95% CI]':24s} "
        + " ".join(f"rec_{n[:3]:>4s}" for n in names)
        + "  sens@spec0.9"
    )
    print(hdr)
    for key, r in results.items():
        ci = (r["balanced_accuracy_ci"]["low"], r["balanced_accuracy_ci"]["high"])
        ci2 = (r["melanoma_auc_ci"]["low"], r["melanoma_auc_ci"]["high"])
        rec = " ".join(f"{r['per_class'][n]['recall']:8.3f}" for n in names)
        s90 = r["positive_sensitivity_at_specificity"]["0.9"]["sensitivity"]
        print(
            f"{key:44s} {r['balanced_accuracy']:.3f} [{ci[0]:.3f},{ci[1]:.3f}]     "
            f"{r['positive_auc']:.3f} [{ci2[0]:.3f},{ci2[1]:.3f}]     {rec}  {s90:.3f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"val_balanced_accuracy": val_bacc, "val": val_scores, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
