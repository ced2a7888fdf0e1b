"""Score a lesion classifier on a split of lesion-classes, with expert or predicted masks.

    python benchmarks/evaluate_classifier.py --model default --split test --masks predicted --report out/cls_report
    python benchmarks/evaluate_classifier.py --split val --masks predicted --pipeline classify

Prints balanced accuracy (mean per-class recall), melanoma-vs-rest ROC AUC, per-class
precision / recall / specificity / F1 and melanoma sensitivity at fixed specificity,
with bootstrap 95 % intervals, and writes metrics.json, confusion_matrix.png and
roc_curves.png with ``--report``. Predicted masks come from the bundled segmenter.

``--pipeline torch`` (default): the torch segmenter (fp32) and classifier, as the model
card's numbers were made (and as ``skinseg classify`` ran before issue 26).
``--pipeline classify``: what ``skinseg classify`` runs now: the masks of ``skinseg segment``
(the segmenter's default backend: ONNX Runtime int8 on the CPU) and the classifier's ONNX
export (``ClassifierPredictor.load``; exported once, into ``--cache-dir`` if given).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import DATA_HELP, banner, data_dir, manifest_items


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=None,
                    help=f"the lesion-classes folder with manifest.csv ({DATA_HELP}/lesion-classes)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--masks", choices=["expert", "predicted"], default="expert")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pipeline", choices=["torch", "classify"], default="torch",
                    help="torch models (default), or skinseg classify's (ONNX Runtime: int8 segmenter, fp32 classifier)")
    ap.add_argument("--cache-dir", default=None, help="with --pipeline classify: folder for the classifier's export")
    ap.add_argument("--report", default=None, help="folder for metrics.json and the PNG plots")
    args = ap.parse_args(argv)
    args.data = args.data or str(data_dir("lesion-classes"))
    import torch
    from tqdm.auto import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    banner(libraries=("numpy", "torch"))
    import skinseg as ss
    import skinseg.classify as C
    from skinseg.metrics import balanced_accuracy, bootstrap_ci, classification_metrics, roc_auc

    if args.pipeline == "classify":
        model = C.ClassifierPredictor.load(args.model, cache_dir=args.cache_dir, threads=args.threads, tta=args.tta)
        seg = ss.Predictor.load("default", threads=args.threads) if args.masks == "predicted" else None
    else:
        model = C.load_classifier(args.model)
        seg = ss.load_segmenter("default") if args.masks == "predicted" else None
    names = list(model.class_names)
    items = manifest_items(args.data, args.split, label_column="label")
    probs, y, empty = [], [], 0
    for it in tqdm(items, desc=f"{args.split} ({args.masks} masks, {args.pipeline})", unit="img"):
        image = ss.read_image(it.image)
        mask = ss.segment(seg, image) if seg is not None else ss.read_mask(it.mask, shape=image.shape[:2])
        empty += int(not mask.any())
        if args.pipeline == "classify":
            probs.append(model.predict_proba(image, mask))
        else:
            probs.append(C.predict_proba(model, image, mask, tta=args.tta))
        y.append(names.index(it.label))
    p, yy = np.array(probs), np.array(y)
    m = classification_metrics(yy, p, names, positive="melanoma")
    mel = names.index("melanoma")
    m["balanced_accuracy_ci"] = bootstrap_ci(
        lambda a, b: balanced_accuracy(a, b.argmax(1), num_classes=len(names)), yy, p, n=1000, seed=0
    )
    m["melanoma_auc_ci"] = bootstrap_ci(lambda a, b: roc_auc(a == mel, b[:, mel]), yy, p, n=1000, seed=0)
    m["empty_masks"] = empty
    ci, ci2 = m["balanced_accuracy_ci"], m["melanoma_auc_ci"]
    print(
        f"n={len(yy)} ({', '.join(f'{n} {int((yy == k).sum())}' for k, n in enumerate(names))}); "
        f"{args.masks} masks ({empty} empty)"
    )
    print(
        f"balanced accuracy {m['balanced_accuracy']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]   "
        f"accuracy {m['accuracy']:.3f}"
    )
    print(
        f"melanoma AUC {m['positive_auc']:.3f} [{ci2['low']:.3f}, {ci2['high']:.3f}]   "
        f"macro OvR AUC {m['auc_ovr_macro']:.3f}"
    )
    for n in names:
        r = m["per_class"][n]
        print(
            f"  {n:22s} recall {r['recall']:.3f} precision {r['precision']:.3f} "
            f"specificity {r['specificity']:.3f} F1 {r['f1']:.3f} (n={r['support']})"
        )
    for spec, v in m["positive_sensitivity_at_specificity"].items():
        print(f"  melanoma sensitivity at specificity >= {spec}: {v['sensitivity']:.3f}")
    print("confusion matrix (rows true, cols predicted):", m["confusion_matrix"])
    if args.report:
        from skinseg.report import write_classification_report

        paths = write_classification_report(m, yy, p, names, args.report)
        print("wrote " + ", ".join(str(v) for v in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
