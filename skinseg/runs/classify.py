"""Classify a folder of dermoscopy images: segment (or read masks), crop, classify, measure (``skinseg classify``).

Shares the run journal, the resume rules and the output-folder rules of
:mod:`skinseg.runs.segment` (see :mod:`skinseg.runs.journal`): one journal line per image
as it finishes, ``classification.csv`` rewritten in input order at the end, the settings
in ``run.json`` (a rerun with other settings is refused), a lock on the output folder.
A bad file gets an ``error`` row and the run goes on. Inputs are never written to.

Outputs in ``out_dir``::

    classification.csv            one row per image (see classification_columns)
    masks/<stem>_mask.png         the predicted lesion masks (without ``masks_dir``)
    gradcam/<stem>_gradcam.png    Grad-CAM overlays (``save_gradcam``)
    run.json, journal.jsonl, timings.csv
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..classify import gradcam, gradcam_overlay, predict_proba
from ..errors import ConfigError, SkinsegError
from ..features import FEATURE_NAMES, check_pixel_size, lesion_features
from ..inference import Predictor
from ..io import encode_image, encode_mask, pair_images_and_masks, read_image, read_mask
from ..models.checkpoint import model_fingerprint
from .inputs import Job, list_inputs, no_images_error
from .journal import FolderRunResult, ResultsFile, RunJournal
from .outdir import OutputLock, check_output_dir, prepare_output_folder

__all__ = ["classify_folder", "classification_columns", "CSV_FILE", "MASK_DIR", "GRADCAM_DIR"]

CSV_FILE, MASK_DIR, GRADCAM_DIR = "classification.csv", "masks", "gradcam"
_ERRORS = (SkinsegError, OSError, ValueError)


def classification_columns(class_names: list[str] | tuple[str, ...], measure: bool) -> tuple[str, ...]:
    """``classification.csv`` columns: file, status, error_type, error, mask_source, mask_empty,
    ``p_<class>`` per class, predicted_label, confidence, then (``measure``) the ABCD measurements."""
    cols = ("file", "status", "error_type", "error", "mask_source", "mask_empty",
            *[f"p_{n}" for n in class_names], "predicted_label", "confidence")
    return cols + FEATURE_NAMES if measure else cols


def _features(image: np.ndarray, mask: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
    if not mask.any():
        return {k: "" for k in FEATURE_NAMES}
    return lesion_features(image, mask, pixel_size_mm=pixel_size_mm)


def classify_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    classifier: Any,
    segmenter: Any | None = None,
    masks_dir: str | os.PathLike | None = None,
    mask_suffix: str = "_segmentation",
    save_gradcam: bool = False,
    measure: bool = True,
    pixel_size_mm: float | None = None,
    tta: bool = False,
    progress: bool = True,
    convert: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    include_runs: bool = False,
    verify_inputs: bool = False,
) -> FolderRunResult:
    """Classify every image of ``in_dir`` into ``out_dir``, resuming an earlier run there.

    With ``masks_dir`` the lesion masks are read from there (paired by stem +
    ``mask_suffix``); otherwise ``segmenter`` (a segmenter, backend or
    :class:`~skinseg.inference.Predictor`) predicts them and they are saved to
    ``out_dir/masks``. ``tta`` is the classifier's flip TTA (the segmenter uses its own
    default). Returns the run summary; the rows are in ``classification.csv``. ``include_runs``,
    ``verify_inputs`` and ``overwrite`` as in :func:`skinseg.runs.segment_folder`.

    Raises
    ------
    ConfigError
        Neither ``masks_dir`` nor ``segmenter``; no images; two images with the same stem
        (they would share a mask file); a run with other settings in ``out_dir``; the
        folder is in use by another run.
    """
    if masks_dir is None and segmenter is None:
        raise ConfigError("Pass either masks_dir (expert masks) or a segmenter to predict masks.")
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    src, out = check_output_dir(in_dir, out_dir)
    same_folder = masks_dir is not None and Path(masks_dir).resolve() == src.resolve()
    jobs, not_taken = list_inputs(src, recursive=False, exclude_suffix=mask_suffix if same_folder else None,
                                  outputs=_outputs(masks_dir is None, save_gradcam),
                                  include_runs=include_runs)
    if not jobs:
        raise no_images_error(src, False, not_taken, mask_suffix)
    mask_of: dict[str, Path] = {}
    if masks_dir is not None:
        pairs, _, _ = pair_images_and_masks(src, masks_dir, mask_suffix=mask_suffix)
        mask_of = {str(p.resolve()): m for p, m in pairs}
    predictor = None
    if masks_dir is None:
        predictor = segmenter if isinstance(segmenter, Predictor) else Predictor(segmenter)
    names = list(classifier.class_names)
    settings = {
        "in_dir": str(src.resolve()),
        "classifier": model_fingerprint(classifier),
        "classifier_tta": bool(tta),
        "masks_dir": str(Path(masks_dir).resolve()) if masks_dir is not None else None,
        "mask_suffix": mask_suffix if masks_dir is not None else None,
        "segmenter": predictor.settings() if predictor is not None else None,
        "threshold": predictor.threshold if predictor is not None else None,
        "gradcam": bool(save_gradcam),
        "measure": bool(measure),
        "pixel_size_mm": pixel_size_mm,
        "convert": bool(convert),
    }
    results = ResultsFile(CSV_FILE, classification_columns(names, measure), lineterminator="\r\n")
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, wait=wait):
        journal = RunJournal(out, kind="classify", settings=settings, results=results,
                             verify_inputs=verify_inputs)
        prepare_output_folder(journal, out, [j.outputs.values() for j in jobs], overwrite=overwrite)
        todo, gone = journal.pending(jobs)
        keys = [j.key for j in jobs]
        with journal.running(keys, len(todo), desc="classify", progress=progress):
            for job in todo:
                t0 = time.perf_counter()
                row, files = _classify_one(job, classifier, predictor, mask_of, masks_dir, mask_suffix, names,
                                           tta=tta, measure=measure, pixel_size_mm=pixel_size_mm,
                                           save_gradcam=save_gradcam, convert=convert)
                written = []
                for rel, data in files.items():
                    atomic_write(out / rel, data)
                    written.append(rel)
                dt = time.perf_counter() - t0
                journal.append(job.key, row, journal.stat(job.path), written, (0.0, dt, 0.0, dt))
        return journal.summarise(keys, len(todo), gone, not_taken)


def _outputs(predicted_masks: bool, save_gradcam: bool) -> Any:
    def outputs(rel: Path) -> dict[str, str]:
        files = {}
        if predicted_masks:
            files["mask"] = f"{MASK_DIR}/{rel.stem}_mask.png"
        if save_gradcam:
            files["gradcam"] = f"{GRADCAM_DIR}/{rel.stem}_gradcam.png"
        return files

    return outputs


def _classify_one(job: Job, classifier: Any, predictor: Predictor | None, mask_of: dict[str, Path],
                  masks_dir: Any, mask_suffix: str, names: list[str], *, tta: bool,
                  measure: bool, pixel_size_mm: float | None, save_gradcam: bool,
                  convert: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
    path = Path(job.path)
    row: dict[str, Any] = {"file": job.key, "status": "ok", "error_type": "", "error": ""}
    files: dict[str, bytes] = {}
    try:
        image = read_image(path, convert=convert)
        if predictor is None:
            mpath = mask_of.get(str(path.resolve()))
            if mpath is None:
                raise SkinsegError(
                    f"No mask for '{path.name}' in '{masks_dir}' (expected '{path.stem}{mask_suffix}.png')."
                )
            mask = read_mask(mpath, shape=image.shape[:2])
            row["mask_source"] = str(mpath)
        else:
            mask = predictor.segment(image)
            files[job.outputs["mask"]] = encode_mask(mask)
            row["mask_source"] = "predicted"
        row["mask_empty"] = int(not mask.any())
        p = predict_proba(classifier, image, mask, tta=tta)
        row.update({f"p_{n}": round(float(v), 6) for n, v in zip(names, p, strict=True)})
        row["predicted_label"] = names[int(np.argmax(p))]
        row["confidence"] = round(float(np.max(p)), 6)
        if measure:
            row.update(_features(image, mask, pixel_size_mm))
        if save_gradcam:
            cam = gradcam(classifier, image, mask, target=int(np.argmax(p)))
            files[job.outputs["gradcam"]] = encode_image(gradcam_overlay(image, cam))
    except (SkinsegError, OSError, ValueError) as exc:
        return {"file": job.key, "status": "error", "error_type": type(exc).__name__, "error": str(exc)}, {}
    return row, files
