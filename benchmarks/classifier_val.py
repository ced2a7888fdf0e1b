"""Choose classifier members, ensemble and temperature on ``val``: balanced accuracy, melanoma AUC, ECE.

Scores each classifier checkpoint (a single model or a saved ensemble) on the ``val``
splits of both dev sets with expert masks (322 images), then the probability mean of every
subset of them (the ensemble rule: members chosen on ``val``). For each row it reports
balanced accuracy, melanoma-vs-rest AUC, the top-label expected calibration error (10
equal-width bins) as is, and after a temperature fitted on the same ``val`` probabilities
(NLL; the temperature that would be shipped), and held out: each dev set rescaled by a
temperature fitted on the other one only (``ECE@Tx``). ``--reliability`` draws the reliability
diagram of one row before and after the temperature.

    python benchmarks/classifier_val.py --model default runs/cls_v2/full/best --threads 1
    python benchmarks/classifier_val.py --model A B C --reliability out/reliability.png --plot-row A+B

Never pass ``--split test`` to choose anything; ``test`` is scored only for the shipped
model (``benchmarks/evaluate_classifier.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA_HELP, banner, data_dir


def val_probabilities(model, items, *, tta: bool = False) -> np.ndarray:
    """(N, K) probabilities of ``model`` (single or ensemble) on ``items`` with expert masks."""
    import skinseg as ss
    import skinseg.classify as C

    out = []
    for it in items:
        image = ss.read_image(it.image)
        mask = ss.read_mask(it.mask, shape=image.shape[:2]) if it.mask is not None else None
        out.append(C.predict_proba(model, image, mask, tta=tta))
    return np.asarray(out, dtype=np.float64)


def cross_fitted(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Probabilities of each group rescaled by a temperature fitted on the other groups only.

    The held-out check of a shipped temperature: with the two dev sets as groups, each set's
    ECE is measured with a temperature it did not help fit.
    """
    from skinseg.metrics.calibration import apply_temperature, fit_temperature

    out, temps = np.empty_like(p), []
    for g in np.unique(groups):
        t = fit_temperature(y[groups != g], p[groups != g])
        out[groups == g] = apply_temperature(p[groups == g], t)
        temps.append(float(t))
    return out, temps


def score_row(y: np.ndarray, p: np.ndarray, names: list[str], groups: np.ndarray | None = None) -> dict:
    from skinseg.metrics import balanced_accuracy, roc_auc
    from skinseg.metrics.calibration import apply_temperature, expected_calibration_error, fit_temperature

    mel = names.index("melanoma")
    t = fit_temperature(y, p)
    pt = apply_temperature(p, t)
    nll = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))))
    nll_t = float(-np.mean(np.log(np.clip(pt[np.arange(len(y)), y], 1e-12, 1))))
    return {
        "balanced_accuracy": balanced_accuracy(y, p.argmax(1), num_classes=len(names)),
        "melanoma_auc": roc_auc(y == mel, p[:, mel]),
        "ece": expected_calibration_error(y, p, n_bins=10),
        "nll": nll,
        "temperature": t,
        "ece_at_temperature": expected_calibration_error(y, pt, n_bins=10),
        "nll_at_temperature": nll_t,
        **_cross_fit_scores(y, p, groups),
    }


def _cross_fit_scores(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None) -> dict:
    from skinseg.metrics.calibration import expected_calibration_error

    if groups is None or len(np.unique(groups)) < 2:
        return {}
    pc, temps = cross_fitted(y, p, groups)
    return {"ece_cross_fitted": expected_calibration_error(y, pc, n_bins=10), "cross_fit_temperatures": temps}


def plot_reliability(y: np.ndarray, p: np.ndarray, temperature: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skinseg.metrics.calibration import apply_temperature, expected_calibration_error, reliability_table

    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    curves = ((p, "as trained", "o-"), (apply_temperature(p, temperature), f"T = {temperature:.2f}", "s--"))
    for probs, label, style in curves:
        tab = reliability_table(y, probs, n_bins=10)
        keep = tab["count"] > 0
        ece = expected_calibration_error(y, probs, n_bins=10)
        ax.plot(tab["confidence"][keep], tab["accuracy"][keep], style, label=f"{label} (ECE {ece:.3f})")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.3, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["default"], help="classifier checkpoints (or 'default')")
    ap.add_argument("--data", nargs="+", default=None,
                    help=f"dev sets (default: lesion-classes and lesions; {DATA_HELP})")
    ap.add_argument("--split", default="val")
    ap.add_argument("--tta", action="store_true", help="flip TTA in every member")
    ap.add_argument("--max-subset", type=int, default=3, help="largest ensemble scored (default 3)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the table (and the per-image probabilities) here")
    ap.add_argument("--reliability", default=None, help="PNG path of a reliability diagram")
    ap.add_argument("--plot-row", default=None, help="row to plot, e.g. '0+1' (default: the first model)")
    args = ap.parse_args()
    banner(libraries=("numpy", "torch"))
    if args.split == "test":
        print("note: choices must be made on 'val'; 'test' only reports the chosen model.", file=sys.stderr)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import skinseg.classify as C

    items, group = [], []
    args.data = args.data or [str(data_dir("lesion-classes")), str(data_dir("lesions"))]
    for g, d in enumerate(args.data):
        listed = C.read_labelled_manifest(d, args.split)
        items += listed
        group += [g] * len(listed)
    groups = np.array(group)
    probs, names = [], None
    t0 = time.perf_counter()
    for m in args.model:
        model = C.load_classifier(m)
        names = names or list(model.class_names)
        if list(model.class_names) != names:
            raise SystemExit(f"{m} predicts {model.class_names}, not {names}")
        probs.append(val_probabilities(model, items, tta=args.tta))
        print(f"model {len(probs) - 1}: {m} ({time.perf_counter() - t0:.0f} s)", flush=True)
    y = np.array([names.index(it.label) for it in items])
    counts = ", ".join(f"{n} {int((y == k).sum())}" for k, n in enumerate(names))
    print(f"{len(items)} images of split '{args.split}' ({counts}) from {', '.join(args.data)}; "
          f"expert masks; TTA {args.tta}")
    rows = {}
    for r in range(1, min(args.max_subset, len(probs)) + 1):
        for subset in itertools.combinations(range(len(probs)), r):
            key = "+".join(map(str, subset))
            rows[key] = score_row(y, np.mean([probs[i] for i in subset], axis=0), names, groups)
    head = ("models", "bal.acc", "mel AUC", "ECE", "NLL", "T(val)", "ECE@T", "NLL@T", "ECE@Tx")
    print(f"{head[0]:>8} " + " ".join(f"{h:>8}" for h in head[1:]))
    cols = ("balanced_accuracy", "melanoma_auc", "ece", "nll", "temperature", "ece_at_temperature",
            "nll_at_temperature", "ece_cross_fitted")
    for key, r in rows.items():
        print(f"{key:>8} " + " ".join(f"{r.get(c, float('nan')):8.4f}" for c in cols))
    print("balanced accuracy = mean per-class recall; ECE: top label, 10 equal-width bins; "
          "T fitted on this split; ECE@Tx: each dev set rescaled by a T fitted on the other(s) only")
    if args.reliability:
        key = args.plot_row or "0"
        subset = [int(i) for i in key.split("+")]
        p = np.mean([probs[i] for i in subset], axis=0)
        title = f"models {key} on {args.split} (n={len(y)})"
        plot_reliability(y, p, rows[key]["temperature"], Path(args.reliability), title)
        print(f"wrote {args.reliability}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": "python " + " ".join(sys.argv), "split": args.split, "data": args.data,
                   "n_images": len(y), "models": args.model, "table": rows, "labels": y.tolist(),
                   "ids": [it.id for it in items], "probabilities": [p.round(6).tolist() for p in probs]}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
