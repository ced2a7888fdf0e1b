"""Write an evaluation (from :func:`skinseg.metrics.evaluate_folders`) to disk and format it as text.

Every file is written atomically (temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written report. Every output names its
aggregation: the ISIC macro mean over images, or numbers pooled over all pixels.

Classification results (from :func:`skinseg.metrics.classification_metrics`) are written by
:func:`write_classification_report`, with :func:`plot_confusion_matrix` and
:func:`plot_roc_curves`. Figures use matplotlib's Agg canvas (no pyplot, no display),
imported only when a figure is drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._figures import new_figure, save_figure
from ._files import write_with
from ._text import csv_line
from .errors import ConfigError
from .metrics import (
    METRIC_NAMES,
    POOLED_METRIC_NAMES,
    EvaluationResult,
    confusion_matrix,
    roc_auc,
    roc_curve,
)
from .metrics.classification import (
    check_probs,
    operating_point_at_specificity,
    positive_class_index,
    resolve_class_names,
)

__all__ = [
    "METRIC_LABELS",
    "write_evaluation_report",
    "format_summary_table",
    "plot_confusion_matrix",
    "plot_roc_curves",
    "write_classification_report",
]

METRIC_LABELS = {
    "dice": "Dice",
    "iou": "IoU (Jaccard)",
    "thresholded_jaccard": "Thresholded Jaccard",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "accuracy": "Accuracy",
    "hd95": "HD95 (px)",
}
_CSV_FIRST = ("id", *METRIC_NAMES, "tp", "fp", "fn", "tn")


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp)`` to a temp file beside ``path``, then rename it into place (see skinseg._files)."""
    write_with(path, write)


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


def _per_image_csv(rows: list[dict[str, Any]]) -> str:
    columns = [c for c in _CSV_FIRST if any(c in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    cells = ([repr(v) if isinstance(v, float) else v for v in (r.get(c, "") for c in columns)] for r in rows)
    return csv_line(columns) + "".join(csv_line(line) for line in cells)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _load_outline_mask(path: str | None, like: np.ndarray | None = None) -> np.ndarray | None:
    """A mask file read as the evaluation reads it; an absent (missing) prediction is empty."""
    from .io import read_mask_file

    if not path:
        return None if like is None else np.zeros_like(like)
    return read_mask_file(path, binarise="isic").mask


def _draw_worst(fig: Any, spec: Any, rows: list[dict[str, Any]]) -> None:
    """Truth (green) and prediction (magenta) outlines of the 4 worst images by Dice."""
    import cv2
    from skimage.measure import find_contours

    from .io import read_image

    worst = sorted(rows, key=lambda r: r["dice"])[:4]
    grid = spec.subgridspec(2, 2)
    for k in range(4):
        ax = fig.add_subplot(grid[k // 2, k % 2])
        ax.set_axis_off()
        if k >= len(worst):
            continue
        row = worst[k]
        truth = _load_outline_mask(row["truth_path"])
        pred = _load_outline_mask(row.get("pred_path"), like=truth)
        if pred is not None and truth is not None and pred.shape != truth.shape:
            h, w = truth.shape
            pred = cv2.resize(pred.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT) > 0
        background = None
        if row.get("image_path"):
            img = read_image(row["image_path"], convert=True)
            if truth is not None and img.shape[:2] != truth.shape:
                img = cv2.resize(img, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_AREA)
            background = img
        if background is None and truth is not None:
            background = np.full(truth.shape, 0.85)
        if background is not None and background.ndim == 2:
            ax.imshow(background, cmap="gray", vmin=0, vmax=1)
        elif background is not None:
            ax.imshow(background)
        for mask, colour in ((truth, "#1a9850"), (pred, "#d01c8b")):
            if mask is None or (background is not None and mask.shape != background.shape[:2]):
                continue
            for c in find_contours(np.pad(mask, 1).astype(np.float32), 0.5):
                ax.plot(c[:, 1] - 1, c[:, 0] - 1, color=colour, linewidth=1.2)
        ax.set_title(f"{row['id']}  Dice {row['dice']:.3f}", fontsize=8)


def _render_png(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    spec = fig.add_gridspec(1, 2, width_ratios=(1, 1))
    dice = np.array([r["dice"] for r in rows], dtype=float)
    ax = fig.add_subplot(spec[0])
    ax.hist(dice, bins=np.linspace(0, 1, 21).tolist(), color="#4575b4", edgecolor="white")
    mean = float(dice.mean())
    ax.axvline(mean, color="#d73027", linewidth=2, label=f"macro mean {mean:.3f}")
    ax.set_xlabel("Dice per image")
    ax.set_ylabel("images")
    ax.set_title(f"Dice: {summary.get('aggregation', f'macro mean over {len(rows)} images')}", fontsize=10)
    ax.legend(loc="upper left")

    if rows and all(r.get("truth_path") for r in rows):
        _draw_worst(fig, spec[1], rows)
        fig.suptitle(
            "right: 4 worst images by Dice; outlines: truth (green), prediction (magenta)", fontsize=10
        )
    else:
        worst = sorted(rows, key=lambda r: r["dice"])[:10]
        ax2 = fig.add_subplot(spec[1])
        ax2.barh([str(r["id"]) for r in worst][::-1], [r["dice"] for r in worst][::-1], color="#d01c8b")
        ax2.set_xlim(0, 1)
        ax2.set_xlabel("Dice")
        ax2.set_title(f"{len(worst)} worst images by Dice", fontsize=10)
    fig.savefig(path, format="png")


def write_evaluation_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``per_image.csv``, ``summary.json`` and ``evaluation.png`` into ``out_dir``.

    Parameters
    ----------
    result : EvaluationResult
        From :func:`skinseg.metrics.evaluate_folders` (any object with ``rows``, ``summary``,
        ``unmatched_predictions`` and ``unmatched_truths`` works).
    out_dir : str or Path
        Created if missing; existing report files in it are replaced atomically.

    Returns
    -------
    dict
        ``{"per_image": path, "summary": path, "figure": path}``.

    Notes
    -----
    The figure shows the per-image Dice histogram with the macro mean marked, and the
    truth/prediction outlines of the 4 worst images by Dice when the rows carry
    ``truth_path`` and ``pred_path`` (drawn over ``image_path`` when a row has one); without
    paths it shows a bar chart of the 10 worst images.

    Raises
    ------
    ConfigError
        If ``result`` has no rows.
    """
    rows = list(result.rows)
    if not rows:
        raise ConfigError("`result` must hold at least one scored image; got none.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_image": out / "per_image.csv",
        "summary": out / "summary.json",
        "figure": out / "evaluation.png",
    }
    _write_text(paths["per_image"], _per_image_csv(rows))
    payload = dict(result.summary)
    payload["unmatched_predictions"] = [str(p) for p in result.unmatched_predictions]
    payload["unmatched_truths"] = [str(p) for p in result.unmatched_truths]
    text = json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"
    _write_text(paths["summary"], text)
    _atomic_write(paths["figure"], lambda tmp: _render_png(tmp, rows, result.summary))
    return paths


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_summary_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a :func:`skinseg.metrics.summarize` result that names its aggregation.

    Columns: the macro mean over images (ISIC) with its bootstrap CI, and the numbers
    pooled over all pixels. Then a line with the image counts, empty masks included, and one
    ``note:`` line per entry of ``summary["notes"]`` (e.g. {0, 1} masks, skipped missing
    predictions; see :func:`skinseg.metrics.evaluate_folders`).
    """
    macro = summary["macro"]
    pooled = summary.get("pooled", {})
    n = summary["n_images"]
    pct = round(100 * summary.get("ci", 0.95))
    head_macro = f"macro mean over {n} images (ISIC)"
    head_ci = f"{pct} % CI (bootstrap, {summary.get('n_boot', 0)})"
    lines = [
        f"{'metric':<21}  {head_macro:>{max(len(head_macro), 10)}}  {head_ci:<25}  pooled over all pixels"
    ]
    width = max(len(head_macro), 10)
    for name in METRIC_NAMES:
        if name not in macro:
            continue
        d = 2 if name == "hd95" else 4
        m = macro[name]
        ci = "-" if m.get("ci_low") is None else f"[{_fmt(m['ci_low'], d)}, {_fmt(m['ci_high'], d)}]"
        pooled_val = _fmt(pooled.get(name), 4) if name in POOLED_METRIC_NAMES else "-"
        lines.append(f"{METRIC_LABELS[name]:<21}  {_fmt(m['mean'], d):>{width}}  {ci:<25}  {pooled_val}")
    lines.append(
        f"images: {n} (empty truth {summary['n_empty_truth']}, empty prediction {summary['n_empty_pred']}, "
        f"both empty {summary['n_both_empty']}; HD95 = image diagonal for {summary.get('n_one_empty', 0)})"
    )
    lines += [f"note: {note}" for note in summary.get("notes", [])]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- classification


def _new_figure(size: tuple[float, float]) -> Any:
    fig = new_figure(size)
    fig.set_layout_engine("constrained")
    return fig


def _save_figure(fig: Any, path: str | Path) -> Path:
    save_figure(fig, path)
    return Path(path)


def _check_cm(cm: object) -> np.ndarray:
    arr = np.asarray(cm)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ConfigError(f"`cm` must be a square (K, K) confusion matrix; got shape {arr.shape}.")
    if (
        arr.dtype == bool
        or not np.issubdtype(arr.dtype, np.number)
        or not np.isfinite(arr).all()
        or (arr < 0).any()
    ):
        raise ConfigError("`cm` must hold finite non-negative counts (rows true, columns predicted).")
    return arr


def plot_confusion_matrix(cm: object, class_names: Any, path: str | Path, normalize: bool = True) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) as a PNG, written atomically.

    Parameters
    ----------
    cm : array of shape (K, K)
        Counts, e.g. from :func:`skinseg.metrics.confusion_matrix`.
    class_names : sequence of K str
    path : str or Path
        The PNG file; missing parent folders are created.
    normalize : bool, default True
        Colour the cells by the row-normalised fraction (the recall of each true class on the
        diagonal) and write both the count and the row percentage in each cell; else colour
        and annotate by count only. A row without samples shows "-" for its percentages.

    Returns
    -------
    Path
    """
    counts = _check_cm(cm)
    k = counts.shape[0]
    names = resolve_class_names(class_names, k)
    rows = counts.sum(axis=1, keepdims=True).astype(float)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    colour = frac if normalize else counts.astype(float)
    vmax = 1.0 if normalize else max(float(colour.max()), 1.0)

    side = max(4.5, 0.9 * k + 2.5)
    fig = _new_figure((side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(colour, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    fontsize = 9 if k <= 8 else 7
    for i in range(k):
        for j in range(k):
            count = counts[i, j]
            count_text = f"{int(count)}" if float(count).is_integer() else f"{float(count):.3g}"
            if normalize:
                pct = f"{100 * frac[i, j]:.1f} %" if rows[i, 0] > 0 else "-"
                text = f"{count_text}\n{pct}"
            else:
                text = count_text
            dark = colour[i, j] > 0.5 * vmax
            ax.text(
                j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black"
            )
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    n = int(counts.sum())
    title = "Confusion matrix" + (" (count and % of true class)" if normalize else " (counts)")
    ax.set_title(f"{title}, {n} samples", fontsize=10)
    return _save_figure(fig, path)


def plot_roc_curves(
    y_true: object,
    probs: object,
    class_names: Any,
    path: str | Path,
    positive: str | int | None = None,
    specificity: float = 0.9,
) -> Path:
    """Draw the one-vs-rest ROC curve of every class, with its AUC in the legend, as a PNG.

    Parameters
    ----------
    y_true : array of shape (N,)
        Integer labels.
    probs : array of shape (N, K)
        Class probabilities or scores; class k's curve ranks samples by ``probs[:, k]``.
    class_names : sequence of K str
    path : str or Path
        The PNG file (written atomically; missing parent folders are created).
    positive : str, int or None
        If given, the class whose operating point at ``specificity`` is marked: the point of
        :func:`skinseg.metrics.sensitivity_at_specificity` (highest sensitivity with
        specificity >= ``specificity``).
    specificity : float, default 0.9

    Notes
    -----
    A class absent from ``y_true`` (or making up all of it) has no curve; the legend says
    "AUC undefined". The dashed diagonal is a chance-level classifier.

    Returns
    -------
    Path
    """
    t, p = check_probs(y_true, probs)
    k = p.shape[1]
    names = resolve_class_names(class_names, k)
    pos = None if positive is None else positive_class_index(positive, names)

    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    fig = _new_figure((6.5, 6.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for c in range(k):
        colour = cmap(c % cmap.N)
        y = t == c
        if not y.any() or y.all():
            ax.plot([], [], color=colour, label=f"{names[c]} (AUC undefined: n={int(y.sum())})")
            continue
        fpr, tpr, _ = roc_curve(y, p[:, c])
        auc = roc_auc(y, p[:, c])
        ax.plot(
            fpr,
            tpr,
            color=colour,
            linewidth=2.2 if c == pos else 1.4,
            label=f"{names[c]} (AUC {auc:.3f}, n={int(y.sum())})",
        )
        if c == pos:
            sens, spec, _thr = operating_point_at_specificity(y, p[:, c], specificity)
            ax.plot(
                [1 - spec],
                [sens],
                marker="o",
                markersize=8,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
                label=f"{names[c]}: sensitivity {sens:.3f} at specificity {spec:.3f} (>= {specificity:g})",
            )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(f"ROC, one class vs rest ({t.size} samples)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _save_figure(fig, path)


def write_classification_report(
    metrics_dict: dict[str, Any],
    y_true: object,
    probs: object,
    class_names: Any,
    out_dir: str | Path,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``confusion_matrix.png`` and ``roc_curves.png`` into ``out_dir``.

    Parameters
    ----------
    metrics_dict : dict
        From :func:`skinseg.metrics.classification_metrics` (any JSON-serialisable dict works;
        its ``confusion_matrix`` is drawn if present, else it is computed from the argmax of
        ``probs``; its ``positive`` class gets its operating point at specificity 0.9 marked).
    y_true, probs, class_names
        The labels, (N, K) probabilities and class names the metrics came from.
    out_dir : str or Path
        Created if missing; existing files are replaced atomically.

    Returns
    -------
    dict
        ``{"metrics": path, "confusion_matrix": path, "roc_curves": path}``.

    Raises
    ------
    ConfigError
        On invalid inputs. ``ValueError`` if ``metrics_dict`` holds NaN or infinity (not JSON).
    """
    t, p = check_probs(y_true, probs)
    names = resolve_class_names(class_names, p.shape[1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "confusion_matrix": out / "confusion_matrix.png",
        "roc_curves": out / "roc_curves.png",
    }
    text = json.dumps(_jsonable(metrics_dict), indent=2, allow_nan=False) + "\n"
    cm = metrics_dict.get("confusion_matrix")
    if cm is None:
        cm = confusion_matrix(t, p.argmax(axis=1), p.shape[1])
    positive = metrics_dict.get("positive")
    _write_text(paths["metrics"], text)
    plot_confusion_matrix(cm, names, paths["confusion_matrix"])
    plot_roc_curves(t, p, names, paths["roc_curves"], positive=positive if positive in names else None)
    return paths
