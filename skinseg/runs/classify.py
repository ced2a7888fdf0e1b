"""Classify a folder of dermoscopy images: segment (or read masks), crop, classify, measure (``skinseg classify``).

:class:`ClassifyJob` is the job that :func:`skinseg.runs.run_folder` runs on an engine,
exactly as the segment job: the same listing, journal, resume rules, output-folder rules,
error rows and number format, on the local engine or on Ray (``engine="ray"``). The masks
come from the same :class:`~skinseg.inference.Predictor` path as ``skinseg segment`` (the
same masks, byte for byte, with the same model and settings); the classifier runs through
:class:`~skinseg.classify.ClassifierPredictor` (ONNX Runtime by default). Its classes,
their codes and the melanoma class come from the model's metadata.

Outputs in ``out_dir``::

    classification.csv            one row per image (see classification_columns)
    masks/<stem>_mask.png         the predicted lesion masks (without ``masks_dir``)
    gradcam/<stem>_gradcam.png    Grad-CAM overlays (``save_gradcam``; torch)
    run.json, journal.jsonl, timings.csv
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import ConfigError, SkinsegError
from ..features import FEATURE_NAMES, check_pixel_size
from ..inference import StreamResult
from ..io import encode_image, encode_mask, pair_images_and_masks, read_mask
from ..models.config import KNOWN_CLASSES, ClassInfo
from ..postprocess import postprocess_mask
from .engines import make_engine
from .inputs import InputFile, InputOptions
from .jobs import ModelSource, feature_cells, number_cell
from .journal import FolderRunResult, ResultsFile
from .models import as_json, classifier_source, predictor_source
from .skeleton import run_folder
from .storage import LocalStore, is_uri

__all__ = ["classify_folder", "ClassifyJob", "ClassifyOptions", "classification_columns", "CSV_FILE", "MASK_DIR",
           "GRADCAM_DIR", "MELANOMA_COLUMN"]

CSV_FILE, MASK_DIR, GRADCAM_DIR = "classification.csv", "masks", "gradcam"
MELANOMA_COLUMN = "p_melanoma"
"""Every classification.csv has it: the melanoma class's probability, whatever the class's code (``p_mel``
in the HAM10000 vocabulary), so scripts written for the three-class model keep working."""


def classification_columns(classes: Any, measure: bool) -> tuple[str, ...]:
    """``classification.csv`` columns: file, status, error_type, error, mask_source, mask_empty,
    ``p_<code>`` per class (the model's order), ``p_melanoma`` when no class has that code (the
    melanoma class's probability), predicted_label (a code), confidence, then (``measure``) the ABCD
    measurements.

    ``classes``: the model's :class:`~skinseg.models.config.ClassInfo` s, or plain class codes
    (described by :data:`~skinseg.models.config.KNOWN_CLASSES`).
    """
    infos = [c if isinstance(c, ClassInfo) else KNOWN_CLASSES.get(c, ClassInfo(c, c, None)) for c in classes]
    codes = [c.code for c in infos]
    named = MELANOMA_COLUMN in {f"p_{c}" for c in codes}
    alias = (MELANOMA_COLUMN,) if any(c.melanoma for c in infos) and not named else ()
    cols = ("file", "status", "error_type", "error", "mask_source", "mask_empty", *[f"p_{c}" for c in codes],
            *alias, "predicted_label", "confidence")
    return cols + FEATURE_NAMES if measure else cols


@dataclass(frozen=True)
class ClassifyOptions:
    """A classify job's options: expert masks (``{input key: (mask file as given, its absolute path)}``, or None
    to predict them), their suffix, Grad-CAM overlays, the ABCD measurements and the pixel size."""

    masks: dict[str, tuple[str, str]] | None = None
    mask_suffix: str = "_segmentation"
    gradcam: bool = False
    measure: bool = True
    pixel_size_mm: float | None = None
    masks_dir: str | None = None


class _ClassifyRunner:
    """A classify job started in one process: the segmenter (streamed) and the classifier."""

    def __init__(self, segmenter: Any, classifier: Any, options: ClassifyOptions) -> None:
        self.predictor, self.classifier, self.options = segmenter, classifier, options
        self.keep_images = True
        self.codes = list(classifier.class_names)
        self.melanoma = self.codes.index(classifier.config.melanoma_class) if classifier.config.melanoma_class else None
        self.torch_model = classifier.torch_model() if options.gradcam else None

    def _mask(self, item: InputFile, res: StreamResult) -> tuple[np.ndarray, str, dict[str, bytes]]:
        if self.predictor is not None:  # Predictor.segment's steps on the streamed probabilities
            mask = postprocess_mask(res.proba(), threshold=self.predictor.threshold)
            return mask, "predicted", {item.outputs["mask"]: encode_mask(mask)}
        paths = (self.options.masks or {}).get(item.key)
        if paths is None:
            name = PurePosixPath(item.key)
            raise SkinsegError(f"No mask for '{name.name}' in '{self.options.masks_dir}' (expected "
                               f"'{name.stem}{self.options.mask_suffix}.png').")
        shown, path = paths  # read by its absolute path: a Ray worker may have another working directory
        return read_mask(path, shape=res.image.shape[:2]), shown, {}  # type: ignore[union-attr]

    def render(self, item: InputFile, res: StreamResult) -> tuple[dict[str, str], dict[str, bytes]]:
        image = res.image
        mask, source, files = self._mask(item, res)
        p = self.classifier.predict_proba(image, mask)
        best = int(self.classifier.decide(p))  # the ensemble's decision rule (its decision weights, if any)
        row = {"file": item.key, "status": "ok", "error_type": "", "error": "", "mask_source": source,
               "mask_empty": number_cell(int(not mask.any()))}
        row.update({f"p_{c}": number_cell(v) for c, v in zip(self.codes, p, strict=True)})
        if self.melanoma is not None:
            row.setdefault(MELANOMA_COLUMN, number_cell(p[self.melanoma]))
        row.update(predicted_label=self.codes[best], confidence=number_cell(p[best]))
        if self.options.measure:  # on the image the segmenter saw, as skinseg segment --measure does
            measured = res.preprocessed if res.preprocessed is not None else image
            row.update(feature_cells(measured, mask, self.options.pixel_size_mm))  # type: ignore[arg-type]
        if self.torch_model is not None:
            from ..classify.gradcam import gradcam, gradcam_overlay

            cam = gradcam(self.torch_model, image, mask, target=best)  # type: ignore[arg-type]
            files[item.outputs["gradcam"]] = encode_image(gradcam_overlay(image, cam))  # type: ignore[arg-type]
        return row, files


@dataclass(frozen=True)
class ClassifyJob:
    """``skinseg classify`` as a job of :func:`skinseg.runs.run_folder`: per image a mask (predicted by the
    segmenter, or an expert one), the class probabilities, measurements and a Grad-CAM overlay."""

    segmenter: ModelSource | None
    classifier: ModelSource
    options: ClassifyOptions
    inputs: InputOptions
    classes: tuple[ClassInfo, ...] | None = None  # known without loading the classifier (else loaded here)
    kind = "classify"

    @property
    def results(self) -> ResultsFile:
        classes = self.classes if self.classes is not None else self.classifier.get().classes
        return ResultsFile(CSV_FILE, classification_columns(classes, self.options.measure), lineterminator="\r\n")

    def outputs(self, rel: str) -> dict[str, str]:
        stem, files = PurePosixPath(rel).stem, {}
        if self.segmenter is not None:
            files["mask"] = f"{MASK_DIR}/{stem}_mask.png"
        if self.options.gradcam:
            files["gradcam"] = f"{GRADCAM_DIR}/{stem}_gradcam.png"
        return files

    def model_settings(self) -> dict[str, Any]:
        clf = self.classifier.get().settings()
        seg = self.segmenter.get() if self.segmenter is not None else None
        return as_json({"classifier": clf["model"], "classifier_backend": clf["backend"],
                        "classifier_precision": clf["precision"], "classifier_tta": clf["tta"],
                        "segmenter": seg.settings() if seg is not None else None,
                        "threshold": seg.threshold if seg is not None else None})

    def settings(self, in_location: str, model: dict[str, Any]) -> dict[str, Any]:
        o = self.options
        return {"in_dir": in_location, **model, "masks_dir": o.masks_dir,
                "mask_suffix": o.mask_suffix if o.masks is not None else None, "gradcam": o.gradcam,
                "measure": o.measure, "pixel_size_mm": o.pixel_size_mm, "convert": self.inputs.convert}

    def start(self) -> _ClassifyRunner:
        segmenter = self.segmenter.get() if self.segmenter is not None else None
        return _ClassifyRunner(segmenter, self.classifier.get(), self.options)

    def portable(self) -> ClassifyJob:
        segmenter = self.segmenter.portable() if self.segmenter is not None else None
        return dataclasses.replace(self, segmenter=segmenter, classifier=self.classifier.portable())


def classify_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    classifier: Any = "default",
    segmenter: Any | None = None,
    masks_dir: str | os.PathLike | None = None,
    mask_suffix: str = "_segmentation",
    save_gradcam: bool = False,
    measure: bool = True,
    pixel_size_mm: float | None = None,
    tta: bool | None = None,
    progress: bool = True,
    convert: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    workers: int | None = None,
    engine: str = "local",
    ray_options: Any = None,
    include_runs: bool = False,
    verify_inputs: bool = False,
) -> FolderRunResult:
    """Classify every image of ``in_dir`` into ``out_dir``, resuming an earlier run there.

    Parameters
    ----------
    classifier : checkpoint folder or bundled name, ClassifierPredictor, torch classifier, or a function
        Default ``"default"``: the bundled classifier through ONNX Runtime (exported on first
        use, in memory; ``skinseg classify`` keeps the export in its cache folder). A torch
        classifier runs with torch. A function returning a ClassifierPredictor is called where
        the model is needed (see :func:`skinseg.runs.models.classifier_source`).
    segmenter : checkpoint folder or bundled name, Segmenter, Backend, Predictor, or a function, optional
        Predicts the masks, as :func:`skinseg.runs.segment_folder` does with the same model
        (``"default"``: the bundled int8 ONNX model, the masks of ``skinseg segment``); they
        are saved to ``out_dir/masks``.
    masks_dir : path, optional
        Read the masks from here instead (paired by stem + ``mask_suffix``; a local folder).
    save_gradcam, measure, pixel_size_mm
        Grad-CAM overlays of the predicted class (needs torch); the ABCD measurements and
        millimetres per pixel for them.
    tta : bool or None
        The classifier's flip TTA; None (default): the classifier's own default (its ensemble.json's
        ``tta``; False for a single checkpoint). The segmenter uses its own default.
    progress, convert, overwrite, wait, include_runs, verify_inputs
        As for :func:`~skinseg.runs.segment_folder` (``overwrite`` never replaces files that no
        skinseg run wrote; folders holding an earlier skinseg run are skipped unless
        ``include_runs``; ``verify_inputs`` resumes by a hash of each input's content).
    workers, engine, ray_options
        As for :func:`~skinseg.runs.segment_folder`: ``engine="ray"`` runs the same job on Ray
        Data, with the same outputs.

    Returns
    -------
    FolderRunResult
        The rows are in ``classification.csv`` (:func:`classification_columns`).

    Raises
    ------
    ConfigError
        Neither ``masks_dir`` nor ``segmenter``; no images; two images with the same stem
        (they would share a mask file); a run with other settings in ``out_dir`` (unless it
        finished no image); the folder is in use by another run; ``verify_inputs`` with a URI input.
    OutputExistsError (a FileExistsError)
        A file at an output path that no skinseg run wrote (with or without ``overwrite``).
    PathNotFoundError, PathNotFolderError (FileNotFoundError, NotADirectoryError)
        ``in_dir`` is missing or not a folder.
    """
    if masks_dir is None and segmenter is None:
        raise ConfigError("Pass either masks_dir (expert masks) or a segmenter to predict masks.")
    runner = make_engine(engine, workers, ray_options)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    threads, device = runner.worker_threads, runner.worker_device
    masks, exclude = None, None
    if masks_dir is not None:
        if is_uri(in_dir) or is_uri(masks_dir):
            raise ConfigError("`masks_dir` (--masks) pairs masks with the images of a local folder; copy the "
                              "images and masks to local folders, or let the segmenter predict the masks.")
        src = Path(in_dir)
        LocalStore(src).check_folder("Input folder")
        pairs, _, _ = pair_images_and_masks(src, masks_dir, mask_suffix=mask_suffix)
        masks = {image.relative_to(src).as_posix(): (str(mask), str(mask.resolve())) for image, mask in pairs}
        exclude = mask_suffix if Path(masks_dir).resolve() == src.resolve() else None
    options = ClassifyOptions(masks, mask_suffix, bool(save_gradcam), bool(measure), pixel_size_mm,
                              str(Path(masks_dir).resolve()) if masks_dir is not None else None)
    job = ClassifyJob(predictor_source(segmenter, threads=threads, device=device) if masks_dir is None else None,
                      classifier_source(classifier, tta=tta, threads=threads, device=device), options,
                      InputOptions(False, exclude, bool(convert), include_runs=bool(include_runs),
                                   verify_inputs=bool(verify_inputs)), _classes_of(classifier))
    return run_folder(job, runner, in_dir, out_dir, overwrite=overwrite, wait=wait, progress=progress)


def _classes_of(classifier: Any) -> tuple[ClassInfo, ...] | None:
    """The classes of a classifier without loading it where that is cheap (a checkpoint's config)."""
    if isinstance(classifier, str | os.PathLike):
        from ..models.checkpoint import read_ensemble, read_model_config

        _, members, _ = read_ensemble(classifier, "classifier")
        return read_model_config(members[0], "classifier").classes
    classes = getattr(classifier, "classes", None)
    return tuple(classes) if classes is not None else None
