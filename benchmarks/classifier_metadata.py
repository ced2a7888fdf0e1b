"""Does the HAM10000 metadata (age, sex, body site) help the seven-diagnosis classifier? Late fusion on ``val``.

    python benchmarks/classifier_metadata.py [--model classifier-ham10000-7class] [--split val]

A multinomial logistic regression p(class | metadata) is fitted on the HAM10000 ``train``
split only (:func:`skinseg.models.metadata.fit_metadata_model`: age bins, sex, body site,
one-hot; a missing value is all zeros, exactly as at inference), then combined with the
image classifier's probabilities (its own TTA default and temperature) on the split's
HAM10000 images as ``p(c) * (p(c | metadata) / prior(c)) ** alpha`` (the metadata's
evidence, tempered by ``alpha``; ``alpha = 0`` is the image alone), by the package's own
``MetadataModel.fuse``. The decision is
``argmax(p / prior_train ** tau)`` with the classifier's own training prior (its members'
recorded class counts), as ``tools/bundle_classifier.py --logit-adjust TAU`` stores it. Masks
are the default segmenter's, as ``skinseg classify`` makes them (cached in ``--cache``).
Printed: balanced accuracy and melanoma AUC for each ``alpha`` and ``tau``, with the image
alone under its own shipped decision rule first. A model that already stores a metadata
model is scored on its image probabilities here (the metadata is refitted).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np
from _common import banner, data_dir


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="classifier-ham10000-7class", help="a seven-class classifier (name or folder)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", default=None, help="npz of the predicted masks (classifier_sets.py --cache)")
    ap.add_argument("--alpha", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--tau", nargs="+", type=float, default=[0.5, 0.6, 0.75, 0.9])
    args = ap.parse_args(argv)
    banner(libraries=("numpy", "sklearn"), split=args.split, choosing=True)
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    import skinseg as ss
    from classifier_sets import HAM_CODES, dev_items, masks_for
    from skinseg.classify import ClassifierPredictor
    from skinseg.models.checkpoint import read_ensemble
    from skinseg.models.config import prior_decision_weights
    from skinseg.models.metadata import MetadataModel, fit_metadata_model

    root = data_dir("ham10000")
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        manifest = {r["id"]: r for r in csv.DictReader(fh)}
    codes = list(HAM_CODES)
    train = [r for r in manifest.values() if r["split"] == "train"]
    meta_model = fit_metadata_model(train, [r["label"] for r in train], codes, alpha=1.0)
    hprior = meta_model.prior

    items = [it for it in dev_items(args.split) if it["set"] == "HAM10000"]
    masks = masks_for(items, "predicted", Path(args.cache) if args.cache else None)
    clf = ClassifierPredictor.load(args.model)
    if list(clf.class_names) != codes:
        raise SystemExit(f"{args.model} predicts {list(clf.class_names)}, not the seven HAM10000 codes {codes}.")
    _, members, _ = read_ensemble(args.model, "classifier")  # the training counts: the first member's metadata
    counts = json.loads((members[0] / "config.json").read_text(encoding="utf-8"))["metadata"]["training_data"]["counts"]
    p_image = clf.predict_proba_batch([ss.read_image(it["image"]) for it in items], [masks[it["id"]] for it in items])
    feats = [meta_model.features(manifest[it["id"]]) for it in items]  # None: nothing known
    p_meta = np.array([meta_model.proba(f[None])[0] if f is not None else hprior for f in feats])
    y = np.array([codes.index(it["label"]) for it in items])
    mel = codes.index("mel")
    shipped = np.argmax(p_image * np.asarray(clf.decision_weights if clf.decision_weights is not None else 1.0), 1)
    print(f"\nHAM10000 {args.split}: {len(items)} images; metadata model fitted on {len(train)} train images; "
          f"classifier TTA {clf.tta}, temperature {clf.temperature:g}\n")
    print(f"image alone, its own decision rule: balanced accuracy {balanced_accuracy_score(y, shipped):.4f}, "
          f"melanoma AUC {roc_auc_score(y == mel, p_image[:, mel]):.4f}")
    print(f"metadata alone (tau 0.6): balanced accuracy "
          f"{balanced_accuracy_score(y, np.argmax(p_meta / hprior ** 0.6, 1)):.4f}\n")
    print("| alpha | tau | balanced accuracy | melanoma AUC | malignant AUC |\n|---|---|---|---|---|")
    malignant = [codes.index(c) for c in ("mel", "bcc", "akiec")]
    for alpha in args.alpha:
        fused = MetadataModel.from_dict({**meta_model.to_dict(), "alpha": alpha}).fuse(p_image, feats)
        for tau in args.tau:
            w = np.asarray(prior_decision_weights(counts, codes, tau))
            print(f"| {alpha:g} | {tau:g} | {balanced_accuracy_score(y, np.argmax(fused * w, 1)):.4f} | "
                  f"{roc_auc_score(y == mel, fused[:, mel]):.4f} | "
                  f"{roc_auc_score(np.isin(y, malignant), fused[:, malignant].sum(1)):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
