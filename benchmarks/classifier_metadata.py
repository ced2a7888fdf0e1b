"""Does the HAM10000 metadata (age, sex, body site) help the seven-diagnosis classifier? Late fusion on ``val``.

    python benchmarks/classifier_metadata.py [--model classifier-ham10000-7class] [--split val]

A multinomial logistic regression p(class | metadata) is fitted on the HAM10000 ``train``
split only (age in decades, sex, body site, one-hot; a missing value is all zeros), then
combined with the image classifier's probabilities on the split's HAM10000 images as
``p(c) * (p(c | metadata) / prior(c)) ** alpha`` (the metadata's evidence, tempered by
``alpha``; ``alpha = 0`` is the image alone). The decision divides by ``prior ** tau`` as the
bundled classifier's decision weights do. Masks are the default segmenter's, as ``skinseg
classify`` makes them (cached in ``--cache``). Printed: balanced accuracy and melanoma AUC for
each ``alpha`` and ``tau``, with the image alone under its own shipped decision rule first.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
from _common import banner, data_dir

AGE_EDGES = (0, 20, 30, 40, 50, 60, 70, 80)


def metadata_features(row: dict, sites: list[str]) -> np.ndarray:
    """One-hot age decade (from AGE_EDGES), sex and body site of a manifest row; missing values give zeros."""
    out = np.zeros(len(AGE_EDGES) + 2 + len(sites))
    try:
        age = float(row.get("age") or "nan")
    except ValueError:
        age = float("nan")
    if np.isfinite(age):
        out[int(np.searchsorted(AGE_EDGES, age, side="right")) - 1] = 1
    out[len(AGE_EDGES)] = row.get("sex") == "male"
    out[len(AGE_EDGES) + 1] = row.get("sex") == "female"
    if row.get("localization") in sites:
        out[len(AGE_EDGES) + 2 + sites.index(row["localization"])] = 1
    return out


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="classifier-ham10000-7class", help="a seven-class classifier (name or folder)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", default=None, help="npz of the predicted masks (classifier_sets.py --cache)")
    ap.add_argument("--alpha", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--tau", nargs="+", type=float, default=[0.5, 0.6, 0.75])
    args = ap.parse_args(argv)
    banner(libraries=("numpy", "sklearn"), split=args.split, choosing=True)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    import skinseg as ss
    from classifier_sets import HAM_CODES, dev_items, masks_for
    from skinseg.classify import ClassifierPredictor

    root = data_dir("ham10000")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        manifest = {r["id"]: r for r in csv.DictReader(fh)}
    codes = list(HAM_CODES)
    sites = sorted({r["localization"] for r in manifest.values() if r["localization"]})
    train = [r for r in manifest.values() if r["split"] == "train"]
    x_train = np.array([metadata_features(r, sites) for r in train])
    y_train = np.array([codes.index(r["label"]) for r in train])
    prior = np.bincount(y_train, minlength=len(codes)) / len(y_train)
    meta_model = LogisticRegression(C=1.0, max_iter=2000).fit(x_train, y_train)

    items = [it for it in dev_items(args.split) if it["set"] == "HAM10000"]
    masks = masks_for(items, "predicted", Path(args.cache) if args.cache else None)
    clf = ClassifierPredictor.load(args.model)
    if list(clf.class_names) != codes:
        raise SystemExit(f"{args.model} predicts {list(clf.class_names)}, not the seven HAM10000 codes {codes}.")
    p_image = np.array([clf.predict_proba(ss.read_image(it["image"]), masks[it["id"]]) for it in items])
    p_meta = meta_model.predict_proba(np.array([metadata_features(manifest[it["id"]], sites) for it in items]))
    y = np.array([codes.index(it["label"]) for it in items])
    mel = codes.index("mel")
    shipped = np.argmax(p_image * np.asarray(clf.decision_weights if clf.decision_weights is not None else 1.0), 1)
    print(f"\nHAM10000 {args.split}: {len(items)} images; metadata model fitted on {len(train)} train images\n")
    print(f"image alone, its own decision rule: balanced accuracy {balanced_accuracy_score(y, shipped):.4f}, "
          f"melanoma AUC {roc_auc_score(y == mel, p_image[:, mel]):.4f}")
    print(f"metadata alone (tau 0.6): balanced accuracy "
          f"{balanced_accuracy_score(y, np.argmax(p_meta / prior ** 0.6, 1)):.4f}\n")
    print("| alpha | tau | balanced accuracy | melanoma AUC |\n|---|---|---|---|")
    for alpha in args.alpha:
        fused = p_image * (p_meta / prior) ** alpha
        fused /= fused.sum(axis=1, keepdims=True)
        for tau in args.tau:
            print(f"| {alpha:g} | {tau:g} | {balanced_accuracy_score(y, np.argmax(fused / prior ** tau, 1)):.4f} | "
                  f"{roc_auc_score(y == mel, fused[:, mel]):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
