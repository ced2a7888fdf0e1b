"""A self-contained HTML page of a segmentation evaluation: where does the segmenter fail?

:func:`write_html_report` turns an :class:`~skinseg.metrics.EvaluationResult` into
``DIR/index.html`` plus small JPEG thumbnails in ``DIR/index_files/``. The page needs no
network and no JavaScript framework (a few lines of inline script sort the table) and holds:

- the summary table (ISIC macro mean over images with its bootstrap interval, and the numbers
  pooled over all pixels, each labelled), the image counts and any notes of the evaluation;
- a histogram of the per-image Dice (inline SVG);
- a gallery of the worst images by Dice: the photograph (or a neutral background) with the
  truth and the predicted contour in two colour-blind-safe colours, each image labelled
  under-, over-segmented, mixed or close (rule: :data:`SEGMENTATION_LABEL_RULE`);
- a sortable table of every image (Dice, IoU, sensitivity, precision, HD95, area ratio);
- when the predictions come from ``skinseg segment`` with a quality estimate: the estimate
  against the true IoU (scatter) and what reviewing the images with the lowest estimate would
  have caught (:func:`skinseg.metrics.review_table`).

Everything is written under a temporary name and renamed into place, so an interrupted run
never leaves a half-written page.
"""

from __future__ import annotations

import datetime
import html
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._checks import check_positive_int
from ._files import temp_path
from ._text import text_name
from .errors import ConfigError
from .report import METRIC_LABELS

__all__ = [
    "write_html_report",
    "segmentation_label",
    "precision_of",
    "area_ratio_of",
    "SEGMENTATION_LABEL_RULE",
    "TRUTH_COLOUR",
    "PREDICTION_COLOUR",
]

TRUTH_COLOUR = "#56B4E9"
"""Contour colour of the truth mask (Okabe-Ito sky blue; colour-blind safe against orange)."""
PREDICTION_COLOUR = "#E69F00"
"""Contour colour of the predicted mask (Okabe-Ito orange)."""

_LOW, _HIGH = 0.8, 0.9
SEGMENTATION_LABEL_RULE = (
    f"under-segmented: sensitivity < {_LOW} and precision ≥ {_HIGH} (the prediction misses lesion); "
    f"over-segmented: precision < {_LOW} and sensitivity ≥ {_HIGH} (the prediction spills onto skin); "
    f"close: sensitivity and precision both ≥ {_LOW}; mixed: anything else. An empty prediction has "
    "precision 1 (no false positive); an empty truth has sensitivity 1 (the ISIC convention)."
)
"""How :func:`segmentation_label` names a failure; stated on the page."""

_THUMB_SIDE = 256
_NEUTRAL = 217  # grey level of the background drawn when there is no photograph
_HIST_BINS = 20


# --------------------------------------------------------------------------- per-image numbers


def precision_of(row: Mapping[str, Any]) -> float:
    """Precision TP / (TP + FP) of a metrics row; 1.0 for an empty prediction (no false positive)."""
    tp, fp = int(row["tp"]), int(row["fp"])
    return 1.0 if tp + fp == 0 else tp / (tp + fp)


def area_ratio_of(row: Mapping[str, Any]) -> float:
    """Predicted lesion area / truth lesion area; 1.0 if both are empty, ``inf`` for an empty truth."""
    pred, truth = int(row["tp"]) + int(row["fp"]), int(row["tp"]) + int(row["fn"])
    if truth == 0:
        return 1.0 if pred == 0 else math.inf
    return pred / truth


def segmentation_label(row: Mapping[str, Any]) -> str:
    """``"under"``, ``"over"``, ``"close"`` or ``"mixed"`` from sensitivity and precision.

    See :data:`SEGMENTATION_LABEL_RULE`.

    Examples
    --------
    >>> segmentation_label({"tp": 50, "fp": 0, "fn": 50, "sensitivity": 0.5})
    'under'
    >>> segmentation_label({"tp": 50, "fp": 50, "fn": 0, "sensitivity": 1.0})
    'over'
    """
    recall, precision = float(row["sensitivity"]), precision_of(row)
    if recall >= _LOW and precision >= _LOW:
        return "close"
    if recall < _LOW and precision >= _HIGH:
        return "under"
    if precision < _LOW and recall >= _HIGH:
        return "over"
    return "mixed"


_LABEL_TEXT = {
    "under": "under-segmented",
    "over": "over-segmented",
    "mixed": "mixed",
    "close": "close",
}


# --------------------------------------------------------------------------- thumbnails


def _hex_to_bgr(colour: str) -> tuple[int, int, int]:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def _row_masks(row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Truth and prediction of a row, read as the evaluation read them (same reader, same resize)."""
    import cv2

    from .io import read_mask_file

    truth = read_mask_file(row["truth_path"], binarise="isic").mask
    if not row.get("pred_path"):
        return truth, np.zeros_like(truth)
    pred = read_mask_file(row["pred_path"], binarise="isic").mask
    if pred.shape != truth.shape:
        h, w = truth.shape
        pred = cv2.resize(pred.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    return truth, pred


def _thumbnail(row: Mapping[str, Any], side: int) -> tuple[bytes, bool]:
    """JPEG of the photograph (or a grey background) with both contours, and whether a photo was used."""
    import cv2

    from .io import read_image

    truth, pred = _row_masks(row)
    h, w = truth.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if row.get("image_path"):
        photo = read_image(row["image_path"], convert=True)
        interp = cv2.INTER_AREA if photo.shape[0] * photo.shape[1] > size[0] * size[1] else cv2.INTER_LINEAR
        canvas = cv2.cvtColor(cv2.resize(photo, size, interpolation=interp), cv2.COLOR_RGB2BGR)
    else:
        canvas = np.full((size[1], size[0], 3), _NEUTRAL, np.uint8)
    shift = 4  # sub-pixel contour coordinates
    lines = []
    for mask, colour, width in ((truth, TRUTH_COLOUR, 4), (pred, PREDICTION_COLOUR, 2)):
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        # pixel centres at (x + 0.5) * scale in the thumbnail
        scaled = [
            np.rint((c.astype(np.float64) + 0.5) * scale * (1 << shift)).astype(np.int32) for c in contours
        ]
        lines.append((scaled, _hex_to_bgr(colour), width))
    for scaled, _, width in lines:  # black outlines first, so both colours read on light and dark skin
        cv2.polylines(canvas, scaled, True, (0, 0, 0), width + 2, cv2.LINE_AA, shift)
    for scaled, colour, width in lines:  # the wider truth under the prediction: both show where they agree
        cv2.polylines(canvas, scaled, True, colour, width, cv2.LINE_AA, shift)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover - OpenCV only fails here on unsupported builds
        raise OSError("OpenCV could not encode a JPEG thumbnail.")
    return buf.tobytes(), bool(row.get("image_path"))


# --------------------------------------------------------------------------- HTML pieces

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1240px;
 padding:0 16px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:12px}
.notes{background:#fff6e0;border:1px solid #e6c36a;border-radius:6px;padding:6px 14px}
.notes li{margin:4px 0}table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
th.text,td.text,.summary td:first-child,.summary th:first-child{text-align:left}
thead th{background:#f5f5f7;position:sticky;top:0}
.top{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}.top>div:first-child{max-width:740px}
.sortable th button{all:unset;cursor:pointer}.sortable th button::after{content:" \\2195";color:#999}
.sortable th[aria-sort=ascending] button::after{content:" \\2191";color:#000}
.sortable th[aria-sort=descending] button::after{content:" \\2193";color:#000}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:14px}
.card{margin:0;border:1px solid #ddd;border-radius:6px;overflow:hidden;background:#fafafa}
.card img{display:block;width:100%;height:auto}.card figcaption{padding:5px 8px;font-size:12px}
.badge{display:inline-block;border-radius:3px;padding:0 5px;font-size:11px;font-weight:600;color:#fff}
.under{background:#0072B2}.over{background:#D55E00}.mixed{background:#6a6a6a}.close{background:#009E73}
.legend span{display:inline-block;width:26px;height:4px;vertical-align:middle;margin:0 4px 0 12px;
 outline:1px solid #000}.rule{font-size:12px;color:#444}
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.querySelector("button").addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var num = th.dataset.type === "num", body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (i) {
    return !(i.complete && i.naturalWidth > 0);
  });
  document.body.dataset.loadMs = performance.now().toFixed(1);
  document.body.dataset.brokenImages = String(broken.length);
});
"""


def _e(value: object) -> str:
    """HTML text of ``value`` (a name that is not UTF-8 as :func:`skinseg._text.text_name` writes it)."""
    return html.escape(text_name(str(value)), quote=True)


def _num(value: float, digits: int = 4) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _summary_html(summary: Mapping[str, Any]) -> str:
    macro, pooled = summary["macro"], summary.get("pooled", {})
    n = summary["n_images"]
    pct = round(100 * summary.get("ci", 0.95))
    out = [
        '<table class="summary"><thead><tr><th>metric</th>'
        f"<th>macro mean over {n} images (ISIC)</th>"
        f"<th>{pct} % CI (bootstrap, {_e(summary.get('n_boot', 0))} resamples)</th>"
        "<th>pooled over all pixels</th></tr></thead><tbody>"
    ]
    for name, m in macro.items():
        d = 2 if name == "hd95" else 4
        ci = "–" if m.get("ci_low") is None else f"[{_num(m['ci_low'], d)}, {_num(m['ci_high'], d)}]"
        pooled_val = _num(pooled[name]) if name in pooled and name != "aggregation" else "–"
        out.append(
            f"<tr><td>{_e(METRIC_LABELS.get(name, name))}</td><td>{_num(m['mean'], d)}</td><td>{ci}</td>"
            f"<td>{pooled_val}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _histogram_svg(dice: np.ndarray, mean: float) -> str:
    width, height, left, right, top, bottom = 420, 230, 44, 12, 14, 40
    pw, ph = width - left - right, height - top - bottom
    counts, edges = np.histogram(np.clip(dice, 0, 1), bins=_HIST_BINS, range=(0.0, 1.0))
    ymax = max(1, int(counts.max()))
    step = max(1, math.ceil(ymax / 5))
    ymax = step * math.ceil(ymax / step)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="Histogram of the per-image Dice of {dice.size} images" font-size="11">'
    ]
    for k in range(0, ymax + 1, step):
        y = top + ph - ph * k / ymax
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{k}</text>'
        )
    bw = pw / _HIST_BINS
    for i, c in enumerate(counts):
        if not c:
            continue
        bh = ph * c / ymax
        parts.append(
            f'<rect x="{left + i * bw + 1:.1f}" y="{top + ph - bh:.1f}" width="{bw - 2:.1f}" '
            f'height="{bh:.1f}" fill="#4575b4"><title>Dice {edges[i]:.2f}–{edges[i + 1]:.2f}: '
            f"{c} images</title></rect>"
        )
    for k in range(6):
        x = left + pw * k / 5
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="middle">{k / 5:.1f}</text>')
    xm = left + pw * min(max(mean, 0.0), 1.0)
    parts.append(
        f'<line x1="{xm:.1f}" x2="{xm:.1f}" y1="{top}" y2="{top + ph}" stroke="#d73027" stroke-width="2" '
        f'stroke-dasharray="5 3"/><text x="{xm - 4:.1f}" y="{top + 10}" text-anchor="end" fill="#d73027">'
        f"mean {mean:.3f}</text>"
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="#333"/>'
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">Dice per image</text>'
        f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">'
        "images</text></svg>"
    )
    return "".join(parts)


def _flags(row: Mapping[str, Any]) -> str:
    flags = []
    if row.get("pred_missing"):
        flags.append("missing prediction (scored as empty)")
    if row.get("pred_levels") == "0/1" or row.get("truth_levels") == "0/1":
        which = [k for k in ("pred", "truth") if row.get(f"{k}_levels") == "0/1"]
        flags.append("{0, 1} " + " and ".join("prediction" if k == "pred" else "truth" for k in which))
    if row.get("pred_resized"):
        flags.append("prediction resized")
    return "; ".join(flags)


_TABLE_COLUMNS = (
    ("id", "image", "text"),
    ("dice", "Dice", "num"),
    ("iou", "IoU", "num"),
    ("sensitivity", "sensitivity", "num"),
    ("precision", "precision", "num"),
    ("hd95", "HD95 (px)", "num"),
    ("area_ratio", "area ratio", "num"),
    ("label", "label", "text"),
    ("flags", "flags", "text"),
)


def _quality_svg(quality: np.ndarray, iou: np.ndarray, failure_iou: float) -> str:
    """Scatter of the quality estimate (x) against the true IoU (y), the failure line dashed."""
    size, left, bottom, top, right = 300, 44, 40, 12, 12
    pw, ph = size - left - right, size - top - bottom
    x = lambda v: left + pw * min(max(float(v), 0.0), 1.0)  # noqa: E731
    y = lambda v: top + ph - ph * min(max(float(v), 0.0), 1.0)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
             f'aria-label="Quality estimate against the true IoU of {quality.size} images" font-size="11">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>',
             f'<line x1="{left}" x2="{left + pw}" y1="{y(failure_iou):.1f}" y2="{y(failure_iou):.1f}" '
             f'stroke="#d73027" stroke-dasharray="5 3"/>',
             f'<line x1="{x(0)}" x2="{x(1)}" y1="{y(0)}" y2="{y(1)}" stroke="#bbb"/>']
    for q, t in zip(quality, iou, strict=True):
        colour = "#d73027" if t < failure_iou else "#4575b4"
        parts.append(f'<circle cx="{x(q):.1f}" cy="{y(t):.1f}" r="2.5" fill="{colour}" fill-opacity="0.6">'
                     f"<title>estimate {q:.3f}, IoU {t:.3f}</title></circle>")
    for k in range(6):
        parts.append(f'<text x="{x(k / 5):.1f}" y="{top + ph + 15}" text-anchor="middle">{k / 5:.1f}</text>'
                     f'<text x="{left - 6}" y="{y(k / 5) + 4:.1f}" text-anchor="end">{k / 5:.1f}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{size - 6}" text-anchor="middle">quality estimate</text>'
                 f'<text x="12" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2})">'
                 "true IoU</text></svg>")
    return "".join(parts)


def _quality_html(rows: list[dict[str, Any]], review: Mapping[str, Any]) -> str:
    """The quality section: the scatter and the review table."""
    scored = [r for r in rows if r.get("quality") is not None]
    q = np.array([r["quality"] for r in scored], float)
    t = np.array([r["iou"] for r in scored], float)
    fails, fail_iou = review["n_failures"], review["failure_iou"]
    share = lambda f: "–" if f is None else f"{100 * f:.0f} %"  # noqa: E731
    lines = "".join(
        f"<tr><td>lowest {round(100 * v['share'])} %</td><td>{v['reviewed']}</td><td>{v['failures_caught']} of "
        f"{fails}</td><td>{share(v['fraction_caught'])}</td></tr>"
        for v in review["review"])
    auroc = "–" if review["auroc"] is None else _num(review["auroc"], 3)
    rho = "–" if review["spearman"] is None else _num(review["spearman"], 3)
    missing = review.get("n_without_estimate", 0)
    return (
        f'<div class="top"><div>{_quality_svg(q, t, fail_iou)}</div><div>'
        '<table class="summary"><thead><tr><th>review the images with the</th><th>images</th>'
        f"<th>failures caught (IoU &lt; {fail_iou:g})</th><th>share</th></tr></thead><tbody>{lines}</tbody></table>"
        f'<p class="meta">Each dot is an image: the quality estimate of skinseg segment (results.csv) against the '
        f"true IoU with the expert mask; red: failures (below the dashed line). AUROC of a low estimate for a "
        f"failure {auroc}; Spearman correlation of the estimate with the IoU {rho}"
        + (f"; {missing} images have no estimate" if missing else "") + ".</p></div></div>"
    )


def _table_html(rows: list[dict[str, Any]], anchors: Mapping[str, str]) -> str:
    columns = _TABLE_COLUMNS + ((("quality", "quality estimate", "num"),)
                                if any(r.get("quality") is not None for r in rows) else ())
    head = "".join(
        f'<th data-type="{kind}" class="{kind}"><button type="button">{_e(title)}</button></th>'
        for _, title, kind in columns
    )
    body = []
    for r in rows:
        cells = []
        for key, _, kind in columns:
            value = r.get(key)
            if value is None:  # an image without a quality estimate
                cells.append('<td class="num" data-v="-1">–</td>')
                continue
            if key == "id" and r["id"] in anchors:
                shown = f'<a href="#{anchors[r["id"]]}">{_e(value)}</a>'
            elif kind == "num":
                shown = _num(value, 2 if key in ("hd95", "area_ratio") else 4)
            else:
                shown = _e(_LABEL_TEXT.get(value, value)) if key == "label" else _e(value)
            sort_value = ("Infinity" if math.isinf(value) else repr(float(value))) if kind == "num" else value
            cells.append(f'<td class="{kind}" data-v="{_e(sort_value)}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable" id="images"><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(body)
        + "</tbody></table>"
    )


def _card(rank: int, r: Mapping[str, Any], src: str, anchor: str) -> str:
    label = r["label"]
    return (
        f'<figure class="card" id="{anchor}"><img src="{_e(src)}" alt="{_e(r["id"])}: truth and predicted '
        f'contours"><figcaption><b>#{rank} {_e(r["id"])}</b> '
        f'<span class="badge {label}">{_e(_LABEL_TEXT[label])}</span><br>Dice {_num(r["dice"], 3)} · '
        f"sens. {_num(r['sensitivity'], 3)} · prec. {_num(r['precision'], 3)} · area "
        f"{_num(r['area_ratio'], 2)}×"
        + (f"<br><i>{_e(r['flags'])}</i>" if r["flags"] else "")
        + "</figcaption></figure>"
    )


def _folders(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for key, what in (("pred_path", "predictions"), ("truth_path", "truths"), ("image_path", "images")):
        parents = sorted({str(Path(r[key]).resolve().parent) for r in rows if r.get(key)})
        if parents:
            found.append((what, parents[0] if len(parents) == 1 else f"{len(parents)} folders"))
    return found


def _page(
    rows: list[dict[str, Any]],
    summary: Mapping[str, Any],
    gallery: list[tuple[dict[str, Any], str]],
    n_photos: int,
    title: str,
) -> str:
    n = len(rows)
    anchors = {r["id"]: f"worst-{k + 1}" for k, (r, _) in enumerate(gallery)}
    notes = list(summary.get("notes", []))
    if gallery and n_photos < len(gallery):
        missing = len(gallery) - n_photos
        notes.append(
            f"{missing} of the {len(gallery)} gallery images have no photograph (pass --images IMG_DIR, "
            "paired by ISIC id or file stem): their contours are drawn on a neutral grey background."
        )
    dice = np.array([r["dice"] for r in rows], dtype=float)
    g = summary.get
    counts = (
        f"images: {n} (empty truth {g('n_empty_truth', 0)}, empty prediction {g('n_empty_pred', 0)}, "
        f"both empty {g('n_both_empty', 0)}; HD95 = image diagonal for {g('n_one_empty', 0)}); unmatched: "
        f"{g('n_unmatched_predictions', 0)} predictions without a truth, {g('n_unmatched_truths', 0)} "
        "truths without a prediction"
    )
    labels = {k: sum(r["label"] == k for r in rows) for k in _LABEL_TEXT}
    label_line = ", ".join(f"{v} {_LABEL_TEXT[k]}" for k, v in labels.items())
    meta = " · ".join(f"{what}: <code>{_e(where)}</code>" for what, where in _folders(rows))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cards = "\n".join(_card(k + 1, r, src, anchors[r["id"]]) for k, (r, src) in enumerate(gallery))
    legend = (
        f'<p class="legend">contours:<span style="background:{TRUTH_COLOUR}"></span>truth (expert)'
        f'<span style="background:{PREDICTION_COLOUR}"></span>prediction</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">{meta}<br>skinseg {_e(__version__)} · {stamp} · {_e(summary.get("binarisation", ""))}</p>
{"<ul class='notes'>" + "".join(f"<li>{_e(t)}</li>" for t in notes) + "</ul>" if notes else ""}
<h2>Summary</h2>
<div class="top"><div>{_summary_html(summary)}
<p class="meta">Aggregation: {_e(summary.get("aggregation", ""))}, each image weighing the same, as the ISIC
challenge scores; the CI resamples the images. “Pooled” sums the pixel counts of all images first
(what many papers report; usually higher).<br>{_e(counts)}.</p></div>
<div>{_histogram_svg(dice, float(dice.mean()))}<p class="meta">{_e(label_line)}</p></div></div>
{"<h2>Which masks to check: the quality estimate</h2>" + _quality_html(rows, summary["quality_review"])
 if summary.get("quality_review") else ""}
<h2>The {len(gallery)} worst images by Dice</h2>
{legend}<p class="rule">Labels: {_e(SEGMENTATION_LABEL_RULE)}</p>
<div class="gallery">
{cards}
</div>
<h2>Every image ({n})</h2>
<p class="meta">Click a column title to sort. Precision = TP / (TP + FP); area ratio = predicted / true lesion
area (&gt; 1: the prediction is too large).</p>
{_table_html(rows, anchors)}
<script>{_SCRIPT}</script>
</body></html>
"""


# --------------------------------------------------------------------------- writing


def _install(staging: Path, out: Path) -> None:
    """Move ``staging/index_files`` and ``staging/index.html`` into ``out`` (index.html last)."""
    old = staging / "old_files"
    files = out / "index_files"
    if files.exists():
        os.replace(files, old)
    try:
        os.replace(staging / "index_files", files)
    except BaseException:
        if old.exists():
            os.replace(old, files)
        raise
    os.replace(staging / "index.html", out / "index.html")


def write_html_report(
    result: Any,
    out_dir: str | Path,
    *,
    worst: int = 24,
    title: str = "skinseg evaluation",
) -> Path:
    """Write the evaluation as ``out_dir/index.html`` with JPEG thumbnails in ``out_dir/index_files/``.

    Parameters
    ----------
    result : EvaluationResult
        From :func:`skinseg.metrics.evaluate_folders` (rows with ``truth_path`` and ``pred_path``
        are needed for the gallery; pass ``image_dir=`` there to draw on the photographs).
    out_dir : str or Path
        Created if missing. An existing ``index.html`` and ``index_files/`` in it are replaced;
        nothing else in it is touched.
    worst : int, default 24
        Number of worst images by Dice (ties by id) shown in the gallery; 0 shows none.
    title : str, default "skinseg evaluation"
        Page title.

    Returns
    -------
    Path
        The written ``index.html``.

    Raises
    ------
    ConfigError
        If ``result`` has no rows, or ``worst`` is negative.
    ImageFileError, InvalidMaskError
        If a mask or photograph of a gallery image cannot be read (naming the file).
    OSError
        If ``out_dir`` cannot be written; no temporary file is left behind.

    Notes
    -----
    The thumbnails (long side 256 px, JPEG quality 85) show the photograph, or a neutral grey
    background when a row has no ``image_path`` (the page says so), with the truth contour in
    :data:`TRUTH_COLOUR` (4 px) under the predicted contour in :data:`PREDICTION_COLOUR` (2 px),
    both outlined in black so they read on light and dark skin. The masks are read exactly as
    the evaluation read them (``read_mask_file(path, binarise="isic")``, resized predictions
    resized again). Each gallery image is labelled by :func:`segmentation_label`.

    The page and its thumbnails are built in a hidden temporary folder inside ``out_dir`` and
    moved into place, ``index.html`` last; on any error the temporary folder is removed.
    """
    rows_in = list(result.rows)
    if not rows_in:
        raise ConfigError("`result` must hold at least one scored image; got none.")
    worst = check_positive_int(worst, "worst", minimum=0)
    rows = []
    for r in rows_in:
        row = dict(r)
        row.update(precision=precision_of(r), area_ratio=area_ratio_of(r), label=segmentation_label(r))
        row["flags"] = _flags(r)
        rows.append(row)
    ranked = sorted(rows, key=lambda r: (r["dice"], str(r["id"])))[:worst]
    if ranked and not all(r.get("truth_path") for r in ranked):
        raise ConfigError(
            "`result` rows need 'truth_path' and 'pred_path' to draw the gallery. Use a result of "
            "skinseg.metrics.evaluate_folders, or pass worst=0."
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = temp_path(out / "index.html")  # a staging folder under the one temporary-name scheme
    staging.mkdir()
    try:
        (staging / "index_files").mkdir()
        gallery, n_photos = [], 0
        for k, row in enumerate(ranked):
            data, photo = _thumbnail(row, _THUMB_SIDE)
            n_photos += photo
            name = f"worst-{k + 1:03d}.jpg"
            (staging / "index_files" / name).write_bytes(data)
            gallery.append((row, f"index_files/{name}"))
        page = _page(rows, result.summary, gallery, n_photos, title)
        (staging / "index.html").write_text(page, encoding="utf-8")
        _install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"
