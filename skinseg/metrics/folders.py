"""Score a folder of predicted masks against a folder of truth masks (ISIC challenge conventions).

:func:`evaluate_folders` pairs the files by ISIC id or stem, reads every mask with the
evaluation reader (:func:`skinseg.io.read_mask_file` with ``binarise="isic"``), scores
each pair with :func:`skinseg.metrics.segmentation_metrics` and aggregates with
:func:`skinseg.metrics.summarize`. See :mod:`skinseg.metrics.segmentation` for the conventions.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._runfile import holds_run, read_run_file
from .._text import name_from_cell
from ..errors import ConfigError, MaskShapeError, MissingPredictionError
from .review import review_table
from .segmentation import ISIC_BINARY_LEVEL, segmentation_metrics, summarize

__all__ = ["EvaluationResult", "evaluate_folders", "quality_estimates"]

_ISIC_ID = re.compile(r"(?<![A-Za-z0-9])ISIC_\d{7}(?!\d)")  # a whole id: not ISIC_0006671 in ISIC_00066719
# the files and folders a skinseg run writes beside its masks: expected in a prediction folder, not reported
_RUN_ENTRIES = {"run.json", "journal.jsonl", "timings.csv", "results.csv", "classification.csv", "overlays",
                "gradcam"}


# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class EvaluationResult:
    """Result of :func:`evaluate_folders`.

    ``rows`` hold ``id``, the metrics and counts of :func:`segmentation_metrics`,
    ``pred_path`` (str, None for a missing prediction scored as empty), ``truth_path`` (str),
    ``pred_resized`` and ``pred_missing`` (bool), ``pred_levels`` and ``truth_levels`` (how each
    file stored the lesion, :data:`skinseg.io.MaskLevels`; ``"missing"`` for a missing
    prediction) and, when ``image_dir`` was given, ``image_path`` (str or None); sorted by id.
    ``unmatched_truths`` are the truth masks (among ``ids``) without a prediction.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    unmatched_predictions: list[Path] = field(default_factory=list)
    unmatched_truths: list[Path] = field(default_factory=list)


_MISSING = ("error", "skip", "empty")


def _index_folder(
    folder: str | Path, suffix: str, name: str, *, prefer_exact: bool = False,
    not_taken: dict[str, list[str]] | None = None,
) -> dict[str, Path]:
    """``{id: mask file}`` of a folder; the entries that are not mask files go to ``not_taken`` by reason."""
    from ..io import scan_images

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"`{name}` must be an existing folder; got '{folder}'. Check the path.")
    scan = scan_images(folder)
    if not_taken is not None:
        own = holds_run(folder)
        for reason, paths in scan.skipped.items():
            names = [p.name for p in paths if not (own and p.name in _RUN_ENTRIES) and reason != "hidden"]
            if names:
                not_taken.setdefault(reason, []).extend(f"{name}/{n}" for n in names)
    index: dict[str, Path] = {}
    for path in scan.images:
        match = _ISIC_ID.search(path.stem)
        if match:
            key = match.group(0)
        else:
            key = path.stem[: -len(suffix)] if suffix and path.stem.endswith(suffix) else path.stem
        if key in index:
            if prefer_exact and (index[key].stem == key) != (path.stem == key):
                # ISIC 2017 image folders hold ISIC_x.jpg beside ISIC_x_superpixels.png: keep ISIC_x.jpg
                index[key] = index[key] if index[key].stem == key else path
                continue
            raise ConfigError(
                f"`{name}` has two {'files' if prefer_exact else 'masks'} for '{key}': '{index[key].name}' "
                f"and '{path.name}'. "
                "Keep one of them."
            )
        index[key] = path
    return index


def _shown(items: list, limit: int = 10) -> str:
    names = [p.name if isinstance(p, Path) else str(p) for p in items[:limit]]
    return ", ".join(names) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _check_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise ConfigError(f"`ids` must be a list of ids, not a single string; got {ids!r}. Pass [{ids!r}].")
    wanted = list(dict.fromkeys(str(i).strip() for i in ids))
    wanted = [i for i in wanted if i]
    if not wanted:
        raise ConfigError("`ids` must hold at least one id; got none. Pass None to score every truth mask.")
    return wanted


def evaluate_folders(
    pred_dir: str | Path,
    truth_dir: str | Path,
    *,
    pred_suffix: str = "_segmentation",
    truth_suffix: str = "_segmentation",
    resize_predictions: bool = False,
    missing: Literal["error", "skip", "empty"] = "error",
    ids: Iterable[str] | None = None,
    image_dir: str | Path | None = None,
    progress: bool = True,
) -> EvaluationResult:
    r"""Score a folder of predicted mask files against a folder of truth masks, as the ISIC scorer does.

    Parameters
    ----------
    pred_dir, truth_dir : str or Path
        Folders of mask images (files with an image extension; no recursion), two different
        folders. Prediction first. What is not taken (sub-folders, other files; hidden files
        and a skinseg run's own files are not reported) is counted and named in the summary.
    pred_suffix, truth_suffix : str
        Stripped from file stems before pairing files that carry no ISIC id.
    resize_predictions : bool, default False
        Resize a prediction whose size differs from its truth to the truth's size with
        nearest-neighbour interpolation (``cv2.INTER_NEAREST_EXACT``) instead of raising.
    missing : {"error", "skip", "empty"}, default "error"
        What to do with truth masks that have no prediction. ``"error"`` raises
        :class:`~skinseg.errors.MissingPredictionError` before anything is read, as the ISIC
        scorer refuses an incomplete submission; ``"skip"`` scores the matched images only
        (the summary says so); ``"empty"`` scores each as an empty prediction (Dice 0 unless
        its truth is empty).
    ids : iterable of str, optional
        Evaluate only these ids (ISIC ids, or file stems without ``truth_suffix``), e.g. the
        test split of a dataset whose truth folder holds every split. Truths outside ``ids``
        are neither scored nor missing; an id without a truth mask raises.
    image_dir : str or Path, optional
        Folder of the photographs, paired by the same ISIC-id/stem rule (no suffix); each row
        gets its ``image_path`` (None when there is none) for :mod:`skinseg.report_html`.
        When an id has several files, the one whose stem is exactly the id wins.
    progress : bool, default True
        Show a tqdm progress bar on stderr.

    Returns
    -------
    EvaluationResult
        Per-image rows sorted by id, :func:`summarize` of them (plus ``binarisation``,
        ``missing``, ``n_missing_predictions``, ``n_resized``, ``n_unmatched_predictions``,
        ``n_unmatched_truths``, ``n_outside_ids``, ``not_taken`` (``{reason: ["pred_dir/name",
        ...]}``: sub-folders and files that are not mask images) and ``n_not_taken``,
        ``n_zero_one_predictions``, ``n_zero_one_truths``, ``zero_one_files``, ``n_without_image``
        with ``image_dir``, and ``notes``: sentences on anything that makes the numbers differ from an
        ISIC-scorer run), and the files left unpaired on either side.

    Raises
    ------
    MissingPredictionError
        If a truth mask has no prediction and ``missing="error"`` (its ``paths`` lists them).
    MaskShapeError
        If a prediction's size differs from its truth's (naming both files and sizes) and
        ``resize_predictions`` is False.
    ImageFileError
        If a file cannot be read as an image (empty, not an image, truncated, corrupt).
    InvalidMaskError
        If a mask is not single-channel 8-bit, or is ambiguous (see Notes).
    ConfigError
        If a folder is missing, ``pred_dir`` and ``truth_dir`` are the same folder, a folder
        holds two masks for one id, no pair matched, or an id of ``ids`` has no truth mask.

    Notes
    -----
    Files pair by ISIC id (a whole ``ISIC_\d{7}`` in the stem, not followed by another digit:
    ``ISIC_00066719`` is not ``ISIC_0006671``) when they carry one, else by stem with the
    suffix removed. Every file is read with
    ``skinseg.io.read_mask_file(path, binarise="isic")`` (EXIF orientation applied), which
    binarises as the ISIC scorer does (``pixel > 128``, ``isic_challenge_scoring/segmentation.py``
    5.6.0, truth and prediction alike; 128 is background), with one deliberate difference: a
    file holding only {0, 1} is read as 1 = lesion (the scorer reads it as empty), counted in
    ``n_zero_one_*`` and named in ``notes``. A file with non-zero values none of which is above
    128 and that is not {0, 1} (e.g. {0, 100}) raises instead of being read as empty. Metrics
    are computed at the truth's size, as the ISIC scorer requires.
    """
    from tqdm.auto import tqdm

    from ..io import read_mask_file

    if missing not in _MISSING:
        raise ConfigError(f"`missing` must be one of {', '.join(_MISSING)}; got {missing!r}.")
    if Path(pred_dir).resolve() == Path(truth_dir).resolve():
        raise ConfigError(
            f"`pred_dir` and `truth_dir` are the same folder ('{Path(truth_dir).resolve()}'): every mask "
            "would be scored against itself. Pass the folder of predicted masks, then the folder of expert "
            "masks."
        )
    not_taken: dict[str, list[str]] = {}
    preds = _index_folder(pred_dir, pred_suffix, "pred_dir", not_taken=not_taken)
    truths = _index_folder(truth_dir, truth_suffix, "truth_dir", not_taken=not_taken)
    images = None if image_dir is None else _index_folder(image_dir, "", "image_dir", prefer_exact=True)
    n_outside = 0
    if ids is not None:
        wanted = _check_ids(ids)
        absent = [i for i in wanted if i not in truths]
        if absent:
            raise ConfigError(
                f"{len(absent)} of the {len(wanted)} ids in `ids` have no truth mask in '{truth_dir}': "
                f"{_shown(absent)}. Check the ids (ISIC ids, or file stems without the truth suffix) "
                "and the truth folder."
            )
        n_outside = len(truths) - len(wanted)
        unmatched_preds = [preds[k] for k in sorted(preds.keys() - truths.keys())]
        truths = {k: truths[k] for k in sorted(wanted)}
    else:
        unmatched_preds = [preds[k] for k in sorted(preds.keys() - truths.keys())]
    matched = sorted(preds.keys() & truths.keys())
    if not matched:
        raise ConfigError(
            f"No prediction in '{pred_dir}' matched a truth mask in '{truth_dir}' ({len(preds)} and "
            f"{len(truths)} mask files). Name files by ISIC id or the same stem, "
            "or set pred_suffix/truth_suffix."
        )
    unmatched_truths = [truths[k] for k in sorted(truths.keys() - preds.keys())]
    if unmatched_truths and missing == "error":
        raise MissingPredictionError(
            f"{len(unmatched_truths)} of {len(truths)} truth masks have no prediction in '{pred_dir}': "
            f"{_shown(unmatched_truths)}. The ISIC scorer refuses a submission with missing images. "
            f'Add the missing predictions, or pass missing="skip" to score only the {len(matched)} '
            'matched images, or missing="empty" to score them as empty predictions (Dice 0).',
            unmatched_truths,
        )
    keys = sorted(truths) if missing == "empty" else matched

    rows = []
    n_resized = 0
    zero_one: list[str] = []
    for key in tqdm(keys, desc="evaluate", unit="img", file=sys.stderr, disable=not progress):
        truth = read_mask_file(truths[key], binarise="isic")
        if truth.levels == "0/1":
            zero_one.append(str(truth.path))
        row: dict[str, Any] = {"id": key}
        if key in preds:
            pred = read_mask_file(preds[key], binarise="isic")
            if pred.levels == "0/1":
                zero_one.append(str(pred.path))
            pred_mask = pred.mask
            resized = pred_mask.shape != truth.mask.shape
            if resized:
                pred_mask = _resize_to(pred_mask, truth, pred.path, resize_predictions)
                n_resized += 1
            row.update(segmentation_metrics(pred_mask, truth.mask))
            row.update(pred_path=str(pred.path), pred_levels=pred.levels, pred_missing=False)
        else:
            resized = False
            row.update(segmentation_metrics(np.zeros_like(truth.mask), truth.mask))
            row.update(pred_path=None, pred_levels="missing", pred_missing=True)
        row.update(truth_path=str(truth.path), truth_levels=truth.levels, pred_resized=resized)
        if images is not None:
            row["image_path"] = str(images[key]) if key in images else None
        rows.append(row)

    summary = summarize(rows)
    n_zero_one_pred = sum(r["pred_levels"] == "0/1" for r in rows)
    n_zero_one_truth = sum(r["truth_levels"] == "0/1" for r in rows)
    summary.update(
        binarisation=f"pixel > {ISIC_BINARY_LEVEL} for truth and prediction (ISIC scorer); files holding "
        "only {0, 1} read as 1 = lesion (the ISIC scorer reads them as empty)",
        missing=missing,
        n_missing_predictions=len(unmatched_truths),
        n_resized=n_resized,
        n_unmatched_predictions=len(unmatched_preds),
        n_unmatched_truths=len(unmatched_truths),
        n_outside_ids=n_outside,
        n_zero_one_predictions=n_zero_one_pred,
        n_zero_one_truths=n_zero_one_truth,
        zero_one_files=zero_one,
        not_taken=not_taken,
        n_not_taken=sum(len(v) for v in not_taken.values()),
        notes=_notes(
            summary["n_images"], len(unmatched_truths), missing, n_zero_one_pred, n_zero_one_truth, n_resized
        ) + _not_taken_notes(not_taken),
    )
    if images is not None:
        summary["n_without_image"] = sum(r["image_path"] is None for r in rows)
    _add_quality(rows, summary, Path(pred_dir))
    return EvaluationResult(rows, summary, unmatched_preds, unmatched_truths)


def quality_estimates(pred_dir: str | Path) -> dict[Path, float]:
    """``{mask path: quality estimate}`` of a ``skinseg segment`` output folder (its results.csv and run.json);
    empty for any other folder or a run without estimates."""
    import csv

    folder = Path(pred_dir)
    run = read_run_file(folder / "run.json")
    if not run or not (folder / "results.csv").is_file():
        return {}
    suffix = (run.get("settings") or {}).get("mask_suffix") or "_segmentation"
    out: dict[Path, float] = {}
    with open(folder / "results.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("status") == "ok" and row.get("quality"):
                rel = Path(name_from_cell(row["file"]))
                out[(folder / rel.parent / f"{rel.stem}{suffix}.png").resolve()] = float(row["quality"])
    return out


def _add_quality(rows: list[dict[str, Any]], summary: dict[str, Any], pred_dir: Path) -> None:
    """Each row's ``quality`` (the segment run's estimate for its mask, when PRED_DIR is one), and the
    summary's ``quality_review`` (:func:`skinseg.metrics.review_table`) over the rows that have one."""
    estimates = quality_estimates(pred_dir)
    if not estimates:
        return
    for row in rows:
        row["quality"] = estimates.get(Path(row["pred_path"]).resolve()) if row.get("pred_path") else None
    scored = [r for r in rows if r["quality"] is not None]
    if scored:
        summary["quality_review"] = review_table([r["quality"] for r in scored], [r["iou"] for r in scored])
        summary["quality_review"]["n_without_estimate"] = len(rows) - len(scored)


def _not_taken_notes(not_taken: dict[str, list[str]]) -> list[str]:
    what = {"subfolder": "sub-folder(s) not searched (no recursion: masks must be directly in the folder)",
            "not_an_image_name": "file(s) without an image extension"}
    return [f"{len(names)} {what.get(reason, reason.replace('_', ' '))} not taken: {_shown(names, 5)}."
            for reason, names in sorted(not_taken.items())]


def _resize_to(pred: np.ndarray, truth: Any, pred_path: Path, allowed: bool) -> np.ndarray:
    if not allowed:
        raise MaskShapeError(
            f"Prediction '{pred_path}' has size {pred.shape} but truth '{truth.path}' has "
            f"{truth.mask.shape} (H, W); masks are compared at the truth's size. Resize the "
            "prediction with nearest-neighbour interpolation or pass resize_predictions=True."
        )
    import cv2

    h, w = truth.mask.shape
    return cv2.resize(pred.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST_EXACT) > 0


def _notes(
    n: int, n_missing: int, missing: str, zero_one_pred: int, zero_one_truth: int, n_resized: int
) -> list:
    notes = []
    if zero_one_pred or zero_one_truth:
        notes.append(
            f"{zero_one_pred + zero_one_truth} mask file(s) ({zero_one_pred} predictions, {zero_one_truth} "
            "truths) hold only the values {0, 1} and were read with 1 = lesion; the official ISIC scorer "
            "(pixel > 128) reads such files as empty, so its numbers would differ. Save masks with values "
            "{0, 255} to match it (see zero_one_files)."
        )
    if n_missing and missing == "skip":
        notes.append(
            f"{n_missing} truth mask(s) had no prediction and were not scored (--allow-missing, "
            f'missing="skip"): the means are over the {n} matched images only. The ISIC scorer refuses '
            "such a submission."
        )
    if n_missing and missing == "empty":
        notes.append(
            f"{n_missing} truth mask(s) had no prediction and were scored as an empty prediction "
            '(--missing-as-empty, missing="empty"): Dice 0 for each unless its truth is empty.'
        )
    if n_resized:
        notes.append(f"{n_resized} prediction(s) were resized to their truth's size (nearest neighbour).")
    return notes
