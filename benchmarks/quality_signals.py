"""Per-image quality estimate: each signal alone, and fitted combinations, cross-fitted on a split.

Reads the probability maps that ``benchmarks/segmenter_sets.py --save DIR`` keeps (one
folder per model: ``probs.npz`` and ``per_image.csv``), so no model runs here:

    python benchmarks/segmenter_sets.py --model default --backend onnx --precision int8 --save runs/eval/val
    python benchmarks/segmenter_sets.py --model deeplabv3plus --save runs/eval/val
    python benchmarks/quality_signals.py --main runs/eval/val/default --second runs/eval/val/deeplabv3plus

For every image it measures :func:`skinseg.quality.quality_features` of the main model's
prediction (and the agreement with the ``--second`` model's mask), then prints per dev set:
AUROC of each signal for a failure (IoU < 0.65), its Spearman correlation with the true IoU,
and the share of the failures among the 10 / 20 / 30 % of images it ranks lowest. The
fitted estimates (:func:`skinseg.quality.fit_quality_model`) are **cross-fitted**: 5 folds
grouped by lesion, each image scored by a model fitted on the other folds; each fitted
combination is scored with the signals as they are and on a log scale
(:data:`skinseg.quality.LOG_SCALE`). ``--fit-out`` writes the estimate fitted on all images
(what ships; log scale unless ``--fit-scale raw``) with its record; ``--review-share`` sets
its review threshold at that share of the images flagged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
from _common import banner, command_line, data_dir

FAILURE_IOU = 0.65
FOLDERS = {"ISIC 2017": ("lesions", "lesion-classes"), "HAM10000": ("ham10000",)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def capture(score: np.ndarray, fail: np.ndarray, share: float) -> float:
    """Share of the failures among the ``share`` of images with the lowest score."""
    k = int(math.ceil(share * len(score)))
    low = np.argsort(score, kind="stable")[:k]
    return float(fail[low].sum() / max(fail.sum(), 1))


def auroc(score: np.ndarray, fail: np.ndarray) -> float:
    from skinseg.metrics import roc_auc

    return roc_auc(fail, -score)  # a low score should mean a failure


def load_rows(main: Path, second: Path | None) -> list[dict]:
    import skinseg as ss
    from skinseg.postprocess import postprocess_mask
    from skinseg.quality import quality_features

    probs = np.load(main / "probs.npz")
    other = np.load(second / "probs.npz") if second else None
    with open(main / "per_image.csv", newline="", encoding="utf-8") as fh:
        per_image = list(csv.DictReader(fh))
    where = {}
    for folders in FOLDERS.values():
        for f in folders:
            where[f] = data_dir(f)
    rows = []
    for r in per_image:
        folder = r["group"].split(":", 1)[0]
        image = ss.read_image(where[folder] / "images" / f"{r['id']}.jpg")
        p = probs[r["id"]].astype(np.float32) / 255
        mask = postprocess_mask(p, threshold=0.5)
        q = other[r["id"]].astype(np.float32) / 255 if other is not None else None
        feats = quality_features(p, mask, image, second_prob=q)
        rows.append({**r, "iou": float(r["iou"]), **feats})
    return rows


def folds(groups: list[str], k: int = 5, seed: int = 0) -> np.ndarray:
    uniq = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold_of = {uniq[i]: j % k for j, i in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def cross_fit(rows: list[dict], features: tuple[str, ...], l2: float, transforms: dict | None = None) -> np.ndarray:
    """Each image's estimate from a model fitted on the other folds (``transforms``: e.g. ``LOG_SCALE``)."""
    from skinseg.quality import fit_quality_model

    f = folds([r["group"] for r in rows])
    out = np.zeros(len(rows))
    for k in range(f.max() + 1):
        train = [r for r, fi in zip(rows, f, strict=True) if fi != k]
        model = fit_quality_model(train, [r["iou"] for r in train], features, l2=l2, transforms=transforms)
        idx = np.flatnonzero(f == k)
        out[idx] = model.estimate_many([rows[i] for i in idx])
    return out


def plot_review_curves(curves: dict, path: Path) -> None:
    """One panel per dev set: the share of failures caught when the lowest-scored images are reviewed first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from skinseg.metrics.review import review_curve

    fig = Figure(figsize=(5.2 * len(curves), 4.6), dpi=110)
    FigureCanvasAgg(fig)
    for k, (set_name, (iou, scores)) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), k + 1)
        for name, score in {**scores, "oracle (true IoU)": iou}.items():
            x, y = review_curve(np.where(np.isfinite(score), score, -1e9), iou, failure_iou=FAILURE_IOU)
            ax.plot(x, y, label=name, lw=1.6, ls=":" if name.startswith("oracle") else "-")
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance")
        ax.axvline(0.2, color="0.8", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="share of images reviewed (lowest score first)",
               ylabel="share of failures caught (IoU < 0.65)",
               title=f"{set_name}: {len(iou)} images, {int((iou < FAILURE_IOU).sum())} failures")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7.5)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--main", required=True, help="segmenter_sets.py --save folder of the main model")
    ap.add_argument("--second", help="the same for a second model (adds the 'agreement' signal)")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--fit-out", help="write the estimate fitted on all images here (JSON)")
    ap.add_argument("--fit-features", nargs="+", default=None, help="signals of --fit-out (default: all self signals)")
    ap.add_argument("--fit-scale", choices=["log", "raw"], default="log",
                    help="--fit-out's signals on a log scale (skinseg.quality.LOG_SCALE, default) or as they are")
    ap.add_argument("--review-share", type=float, default=0.15)
    ap.add_argument("--segmenter", help="with --fit-out: the segmenter (name or folder) the estimate is fitted for; "
                                        "its fingerprint is recorded, so the estimate is used only with it")
    ap.add_argument("--apply", help="score this fitted estimate (a quality.json, or a segmenter folder holding one) "
                                    "on the split instead of fitting (e.g. on test, once)")
    ap.add_argument("--json", help="write the tables here")
    ap.add_argument("--plot", help="write the review curves (share reviewed -> share of failures caught) per dev "
                                   "set as this PNG: the soft-Dice baseline, each estimate, chance and the oracle")
    args = ap.parse_args(argv)
    banner(libraries=("numpy",))
    from skinseg.quality import LOG_SCALE, SELF_FEATURES

    rows = load_rows(Path(args.main), Path(args.second) if args.second else None)
    self_feats = SELF_FEATURES
    combos = {"self signals (fitted)": (self_feats, None), "self signals, log scale (fitted)": (self_feats, LOG_SCALE)}
    if args.second:
        combos["self + agreement (fitted)"] = ((*self_feats, "agreement"), None)
        combos["self + agreement, log scale (fitted)"] = ((*self_feats, "agreement"), LOG_SCALE)
        combos["soft Dice + agreement (fitted)"] = (("soft_dice", "agreement"), None)
    estimates = {name: cross_fit(rows, feats, args.l2, tf) for name, (feats, tf) in combos.items()}
    if args.apply:
        from skinseg.quality import QualityModel

        path = Path(args.apply)
        shipped = QualityModel.from_dict(json.loads((path / "quality.json" if path.is_dir() else path).read_text()))
        estimates = {f"shipped estimate ({args.apply})": shipped.estimate_many(rows)}
    signals = ["soft_dice", *[f for f in self_feats if f != "soft_dice"]] + (["agreement"] if args.second else [])
    tables, curves = {}, {}
    for set_name in FOLDERS:
        idx = np.array([i for i, r in enumerate(rows) if r["set"] == set_name])
        iou = np.array([rows[i]["iou"] for i in idx])
        fail = iou < FAILURE_IOU
        print(f"\n### {set_name}: {len(idx)} images, {int(fail.sum())} failures (IoU < {FAILURE_IOU})\n")
        print("| signal | AUROC (failure) | Spearman with IoU | failures in lowest 10 % | 20 % | 30 % |")
        print("|---|---|---|---|---|---|")
        table = {}
        candidates = {s: np.array([rows[i][s] for i in idx], float) for s in signals}
        candidates.update({n: e[idx] for n, e in estimates.items()})
        for name, score in candidates.items():
            score = np.where(np.isfinite(score), score, -1e9 if name != "outside_mass" else 1e9)
            # signals where high means bad are turned round, so every row reads "low = check it"
            if name in ("ring_prob", "fuzzy", "outside_mass", "border"):
                score = -score
            row = {"auroc": auroc(score, fail) if 0 < fail.sum() < len(fail) else None,
                   "spearman": spearman(score, iou),
                   **{f"capture_{int(s * 100)}": capture(score, fail, s) for s in (0.1, 0.2, 0.3)}}
            table[name] = row
            au = f"{row['auroc']:.3f}" if row["auroc"] is not None else "n/a"
            print(f"| {name}{' (baseline)' if name == 'soft_dice' else ''} | {au} | {row['spearman']:.3f} | "
                  f"{row['capture_10']:.2f} | {row['capture_20']:.2f} | {row['capture_30']:.2f} |")
        tables[set_name] = table
        curves[set_name] = (iou, {"soft Dice (baseline)": candidates["soft_dice"],
                                  **{n: e[idx] for n, e in estimates.items()}})
    if args.plot:
        plot_review_curves(curves, Path(args.plot))
        print(f"\nwrote {args.plot}")
    if args.fit_out:
        from skinseg.quality import fit_quality_model

        feats = tuple(args.fit_features or self_feats)
        scale = LOG_SCALE if args.fit_scale == "log" else None
        name = next((n for n, f in combos.items() if f == (feats, scale)), None)
        cross = estimates[name] if name else cross_fit(rows, feats, args.l2, scale)
        review_below = float(np.quantile(cross, args.review_share))
        record = {"fitted_on": f"{len(rows)} images of {args.main} (both dev sets' split)", "l2": args.l2,
                  "scale": args.fit_scale,
                  "review_share": args.review_share, "cross_fitted": tables,
                  "command": command_line()}
        if args.segmenter:
            from skinseg.models.checkpoint import checkpoint_fingerprint

            record["segmenter_fingerprint"] = checkpoint_fingerprint(args.segmenter)
            record["segmenter"] = args.segmenter
        model = fit_quality_model(rows, [r["iou"] for r in rows], feats, l2=args.l2, review_below=review_below,
                                  record=record, transforms=scale)
        Path(args.fit_out).write_text(json.dumps(model.to_dict(), indent=1))
        print(f"\nwrote {args.fit_out}: signals {list(feats)}, review below {review_below:.4f} "
              f"({args.review_share:.0%} of the cross-fitted estimates)")
    if args.json:
        Path(args.json).write_text(json.dumps(tables, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
