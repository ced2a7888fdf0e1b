"""Lesion classifiers per dev set, the ISIC 2018 Task 3 way: HAM10000 and ISIC 2017.

    python benchmarks/classifier_sets.py --model default classifier-isic2017-cc0 --split val --masks predicted
    python benchmarks/classifier_sets.py --model runs/cls7/best --split val --masks expert --report out/cls7

Every image of the split of ``ham10000`` (seven diagnoses) and of ``lesions`` +
``lesion-classes`` (ISIC 2017: melanoma, nevus, seborrheic keratosis, scored as ``mel``,
``nv``, ``bkl``) is classified with its expert mask or with the mask of the bundled
default segmenter on its default path (what ``skinseg classify`` does; cached in
``--cache``). Printed per set and model: balanced multiclass accuracy (mean per-class
recall, the Task 3 ranking metric), plain accuracy beside the majority-class baseline,
melanoma-vs-rest AUC, malignant-vs-benign AUC (mel + bcc + akiec), macro one-vs-rest AUC,
per-class sensitivity / specificity / AUC and the expected calibration error, with 95 %
bootstrap intervals **resampled by lesion**. A three-class ISIC 2017 model is scored where
its classes allow (melanoma-vs-rest; its ``p_melanoma`` as the malignancy score).
``--report DIR`` writes, per model and set, metrics.json, the confusion matrix, the ROC
curves and a reliability diagram (PNG).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from _common import banner, data_dir

SETS = {"HAM10000": ("ham10000",), "ISIC 2017": ("lesions", "lesion-classes")}
TO_HAM = {"melanoma": "mel", "nevus": "nv", "seborrheic_keratosis": "bkl"}
HAM_CODES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT = ("mel", "bcc", "akiec")


def dev_items(split: str) -> list[dict]:
    items = []
    for set_name, folders in SETS.items():
        for folder in folders:
            root = data_dir(folder)
            with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row["split"] == split:
                        group = row.get("lesion_id") or row.get("same_lesion_group") or row["id"]
                        meta = {k: row.get(k, "") for k in ("age", "sex", "localization")} if "age" in row else None
                        items.append({"id": row["id"], "set": set_name, "folder": folder, "meta": meta,
                                      "image": root / "images" / f"{row['id']}.jpg",
                                      "mask": root / "masks" / f"{row['id']}.png",
                                      "label": TO_HAM.get(row["label"], row["label"]), "group": f"{folder}:{group}"})
    return items


def masks_for(items: list[dict], kind: str, cache: Path | None) -> dict[str, np.ndarray]:
    """id -> bool mask: the expert's, or the default segmenter's on its default path (cached as packed bits)."""
    import skinseg as ss

    if kind == "expert":
        return {}
    cached: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            cached = {k: z[k] for k in z.files}
    predictor = None
    out = {}
    for it in items:
        if it["id"] in cached:
            packed = cached[it["id"]]
            h, w = int(packed[0]), int(packed[1])
            out[it["id"]] = np.unpackbits(packed[2:].astype(np.uint8))[: h * w].reshape(h, w).astype(bool)
            continue
        predictor = predictor or ss.Predictor.load("default")
        out[it["id"]] = predictor.segment(ss.read_image(it["image"]))
    if cache is not None and len(out) > len(cached):
        cache.parent.mkdir(parents=True, exist_ok=True)
        packed = {k: np.concatenate([[m.shape[0], m.shape[1]], np.packbits(m.ravel())]).astype(np.int64)
                  for k, m in out.items()}
        np.savez_compressed(cache, **packed)
    return out


def probabilities(model, items: list[dict], masks: dict[str, np.ndarray], tta: bool | None,
                  metadata: bool = False) -> np.ndarray:
    """Per-image probabilities; ``metadata``: pass each HAM10000 image's age, sex and site (the manifest's) to a
    model with a metadata model (ISIC 2017 images have none)."""
    import skinseg as ss
    import skinseg.classify as C

    probs = []
    for it in items:
        image = ss.read_image(it["image"])
        mask = masks.get(it["id"])
        if mask is None:
            mask = ss.read_mask(it["mask"], shape=image.shape[:2])
        meta = it["meta"] if metadata and getattr(model, "metadata_model", None) is not None else None
        probs.append(C.predict_proba(model, image, mask, tta=tta, metadata=meta))
    return np.array(probs, np.float64)


def to_ham(names: list[str], p: np.ndarray) -> tuple[list[str], np.ndarray]:
    """A model's probabilities in the HAM10000 vocabulary (classes it lacks get 0)."""
    names = [TO_HAM.get(n, n) for n in names]
    out = np.zeros((len(p), len(HAM_CODES)))
    for j, n in enumerate(names):
        out[:, HAM_CODES.index(n)] = p[:, j]
    return [n for n in HAM_CODES if n in names], out


def ham_weights(names: list[str], weights) -> np.ndarray | None:
    """Decision weights in HAM order (classes the model lacks get 1; their probability is 0 anyway)."""
    if weights is None:
        return None
    out = np.ones(len(HAM_CODES))
    for n, v in zip(names, weights, strict=True):
        out[HAM_CODES.index(TO_HAM.get(n, n))] = float(v)
    return out


def prior_weights(model, tau: float) -> list[float]:
    """(training prior)^-tau from the (first member's) recorded training counts, as tools/bundle_classifier.py."""
    from skinseg.models.config import prior_decision_weights

    first = getattr(model, "members", [model])[0]
    return prior_decision_weights(first.metadata["training_data"]["counts"], first.class_names, tau)


def score(y: np.ndarray, p: np.ndarray, present: list[str], groups: list[str], n_boot: int,
          w: np.ndarray | None = None) -> dict:
    """Scores of one set; ``w``: the model's decision weights in HAM order (predicted class argmax(p * w))."""
    from skinseg.errors import ConfigError
    from skinseg.metrics import balanced_accuracy, bootstrap_ci, per_class_report, roc_auc
    from skinseg.metrics.calibration import expected_calibration_error

    def ci(fn):
        try:
            r = bootstrap_ci(fn, y, p, n=n_boot, seed=0, groups=groups)
        except ConfigError:  # undefined on this set (e.g. no melanoma among a few images)
            return None
        return {"estimate": r["estimate"], "low": r["low"], "high": r["high"]}

    k = len(HAM_CODES)
    labels = sorted(set(y.tolist()))
    mel, malignant = HAM_CODES.index("mel"), [HAM_CODES.index(c) for c in MALIGNANT]
    out = {"n": len(y), "n_lesions": len(set(groups)),
           "counts": {HAM_CODES[c]: int((y == c).sum()) for c in labels}}
    w = np.ones(k) if w is None else np.asarray(w, float)
    pred = (p * w).argmax(1)
    # balanced accuracy: mean recall over the classes present in the set, as Task 3
    out["balanced_accuracy"] = ci(lambda a, b: balanced_accuracy(a, (b * w).argmax(1), k))
    out["accuracy"] = float((pred == y).mean())
    majority = max(labels, key=lambda c: (y == c).sum())
    out["majority_baseline"] = {"class": HAM_CODES[majority], "accuracy": float((y == majority).mean())}
    out["mel_auc"] = ci(lambda a, b: roc_auc(a == mel, b[:, mel]))
    out["malignant_auc"] = ci(lambda a, b: roc_auc(np.isin(a, malignant), b[:, malignant].sum(1)))
    scored = [HAM_CODES.index(c) for c in present]
    per_auc = {}
    for c in labels:
        if c in scored:
            per_auc[HAM_CODES[c]] = roc_auc(y == c, p[:, c])
    out["macro_auc"] = float(np.mean(list(per_auc.values()))) if len(per_auc) == len(labels) else None
    report = per_class_report(y, pred, k, list(HAM_CODES))
    out["per_class"] = {HAM_CODES[c]: {"sensitivity": report[HAM_CODES[c]]["recall"],
                                       "specificity": report[HAM_CODES[c]]["specificity"],
                                       "auc": per_auc.get(HAM_CODES[c]), "n": int((y == c).sum())} for c in labels}
    if len(present) == k:
        out["ece"] = expected_calibration_error(y, p, n_bins=10)
    out["confusion_matrix"] = np.array([[int(((y == a) & (pred == b)).sum()) for b in range(k)]
                                        for a in range(k)]).tolist()
    return out


def plots(y: np.ndarray, p: np.ndarray, title: str, out: Path, w: np.ndarray | None = None) -> None:
    from skinseg.metrics import classification_metrics
    from skinseg.report import write_classification_report

    out.mkdir(parents=True, exist_ok=True)
    m = classification_metrics(y, p, list(HAM_CODES), positive="mel")
    if w is not None:  # the confusion matrix of the model's decision, argmax(p * w)
        pred = (p * w).argmax(1)
        m["confusion_matrix"] = [[int(((y == a) & (pred == b)).sum()) for b in range(len(HAM_CODES))]
                                 for a in range(len(HAM_CODES))]
    write_classification_report(m, y, p, list(HAM_CODES), out)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skinseg.metrics.calibration import expected_calibration_error, reliability_table

    tab = reliability_table(y, p, n_bins=10)
    keep = tab["count"] > 0
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.plot(tab["confidence"][keep], tab["accuracy"][keep], "o-",
            label=f"ECE {expected_calibration_error(y, p, n_bins=10):.3f}")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png")
    plt.close(fig)


def sweep(name: str, model, y_all: np.ndarray, p_all: np.ndarray, items: list[dict], taus) -> None:
    """Balanced accuracy per set for decision weights prior^-tau, and the NLL-optimal temperature."""
    from skinseg.metrics import balanced_accuracy
    from skinseg.metrics.calibration import fit_temperature

    print(f"\n{name}: decision weights (training prior)^-tau; balanced accuracy per set")
    for tau in taus:
        w = ham_weights(list(model.class_names), prior_weights(model, tau))
        cells = []
        for set_name in SETS:
            idx = [i for i, it in enumerate(items) if it["set"] == set_name]
            cells.append(f"{set_name} {balanced_accuracy(y_all[idx], (p_all[idx] * w).argmax(1), len(HAM_CODES)):.4f}")
        print(f"  tau {tau:.2f}: " + ", ".join(cells))
    print(f"  NLL-optimal temperature on this split (both sets): {fit_temperature(y_all, p_all):.4f}")


def fmt(d: dict | None) -> str:
    if d is None or d.get("estimate") is None:
        return "n/a"
    return f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default"], help="classifier names or checkpoint folders")
    ap.add_argument("--split", default="val")
    ap.add_argument("--masks", choices=["expert", "predicted"], default="predicted")
    ap.add_argument("--metadata", action="store_true",
                    help="give each HAM10000 image's age, sex and site to the models that take metadata")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                    help="flip TTA on (--tta) or off (--no-tta) for every model; default: each model's own default")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=None, help="first N images of each set (a quick check)")
    ap.add_argument("--cache", default=None, help="npz of the predicted masks (made if missing)")
    ap.add_argument("--report", default=None, help="folder: per model and set, metrics.json and PNG plots")
    ap.add_argument("--json", default=None)
    ap.add_argument("--logit-adjust", nargs="+", type=float, default=None, metavar="TAU",
                    help="also print, per model, balanced accuracy with decision weights (training prior)^-TAU "
                         "for each TAU, and the NLL-optimal temperature on the split (choose both on val)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    banner(libraries=("numpy", "torch"), split=args.split)
    import skinseg.classify as C

    items = dev_items(args.split)
    if args.limit:
        items = [it for s in SETS for it in [i for i in items if i["set"] == s][: args.limit]]
    masks = masks_for(items, args.masks, Path(args.cache) if args.cache else None)
    y_all = np.array([HAM_CODES.index(it["label"]) for it in items])
    results = {}
    for name in args.model:
        model = C.load_classifier(name)
        present, p_all = to_ham(list(model.class_names), probabilities(model, items, masks, args.tta, args.metadata))
        w_all = ham_weights(list(model.class_names), getattr(model, "decision_weights", None))
        results[name] = {"classes": present, "sets": {}}
        if args.logit_adjust:
            sweep(name, model, y_all, p_all, items, args.logit_adjust)
        for set_name in SETS:
            idx = [i for i, it in enumerate(items) if it["set"] == set_name]
            y, p = y_all[idx], p_all[idx]
            groups = [items[i]["group"] for i in idx]
            results[name]["sets"][set_name] = score(y, p, present, groups, args.n_boot, w_all)
            if args.report and len(present) == len(HAM_CODES):
                tag = name.rstrip("/").removesuffix("/best").replace("/", "_")
                plots(y, p, f"{name}, {set_name} {args.split} ({args.masks} masks)",
                      Path(args.report) / tag / set_name.replace(" ", "_"), w_all)
    print(f"\nsplit '{args.split}', {args.masks} masks; 95 % bootstrap intervals resampled by lesion")
    for set_name in SETS:
        print(f"\n### {set_name}\n")
        print("| model | n (lesions) | balanced acc. | accuracy (majority) | mel-vs-rest AUC | malignant AUC "
              "| macro AUC | ECE |")
        print("|---|---|---|---|---|---|---|---|")
        for name, res in results.items():
            s = res["sets"][set_name]
            maj = s["majority_baseline"]
            covered = set(s["counts"]) <= set(res["classes"])  # the model knows every diagnosis of the set
            ba = fmt(s["balanced_accuracy"]) if covered else f"n/a ({len(res['classes'])} classes)"
            macro = f"{s['macro_auc']:.3f}" if s["macro_auc"] is not None else "n/a"
            ece = f"{s['ece']:.3f}" if "ece" in s else "n/a"
            print(f"| {name} | {s['n']} ({s['n_lesions']}) | {ba} | {s['accuracy']:.3f} ({maj['class']}: "
                  f"{maj['accuracy']:.3f}) | {fmt(s['mel_auc'])} | {fmt(s['malignant_auc'])} | {macro} | {ece} |")
        for name, res in results.items():
            s = res["sets"][set_name]
            cells = ", ".join(f"{c} {v['sensitivity']:.2f}/{v['specificity']:.2f}/"
                              + (f"{v['auc']:.3f}" if v["auc"] is not None else "n/a") + f" (n={v['n']})"
                              for c, v in s["per_class"].items())
            print(f"\n{name} per class (sensitivity/specificity/AUC): {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "masks": args.masks, "models": results},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
