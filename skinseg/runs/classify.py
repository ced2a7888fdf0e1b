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
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import ConfigError, SkinsegError
from ..features import FEATURE_NAMES, check_pixel_size
from .._text import name_from_cell
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


def classification_columns(classes: Any, measure: bool, metadata: bool = False) -> tuple[str, ...]:
    """``classification.csv`` columns: file, status, error_type, error, mask_source, mask_empty,
    ``p_<code>`` per class (the model's order), ``p_melanoma`` when no class has that code (the
    melanoma class's probability), predicted_label (a code), confidence, ``metadata_used`` (1 where
    the image's patient metadata was fused in; only in a run given metadata), then (``measure``)
    the ABCD measurements.

    ``classes``: the model's :class:`~skinseg.models.config.ClassInfo` s, or plain class codes
    (described by :data:`~skinseg.models.config.KNOWN_CLASSES`).
    """
    infos = [c if isinstance(c, ClassInfo) else KNOWN_CLASSES.get(c, ClassInfo(c, c, None)) for c in classes]
    codes = [c.code for c in infos]
    named = MELANOMA_COLUMN in {f"p_{c}" for c in codes}
    alias = (MELANOMA_COLUMN,) if any(c.melanoma for c in infos) and not named else ()
    cols = ("file", "status", "error_type", "error", "mask_source", "mask_empty", *[f"p_{c}" for c in codes],
            *alias, "predicted_label", "confidence", *(("metadata_used",) if metadata else ()))
    return cols + FEATURE_NAMES if measure else cols


@dataclass(frozen=True)
class ClassifyOptions:
    """A classify job's options: expert masks (``{input key: (mask file as given, its absolute path)}``, or None
    to predict them), their suffix, Grad-CAM overlays, the ABCD measurements and the pixel size; patient metadata
    (``{file, name or stem: {"age", "sex", "site"}}`` and where it came from), or None."""

    masks: dict[str, tuple[str, str]] | None = None
    mask_suffix: str = "_segmentation"
    gradcam: bool = False
    measure: bool = True
    pixel_size_mm: float | None = None
    masks_dir: str | None = None
    metadata: dict[str, dict[str, str]] | None = None
    metadata_source: str | None = None

    def metadata_of(self, key: str) -> dict[str, str] | None:
        """The metadata of the input ``key`` (matched by relative path, then file name, then stem), or None."""
        if self.metadata is None:
            return None
        name = PurePosixPath(key)
        for k in (key, name.name, name.stem):
            if k in self.metadata:
                return self.metadata[k]
        return None


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
        meta = self.options.metadata_of(item.key)
        p = self.classifier.predict_proba(image, mask, meta)
        best = int(self.classifier.decide(p))  # the ensemble's decision rule (its decision weights, if any)
        row = {"file": item.key, "status": "ok", "error_type": "", "error": "", "mask_source": source,
               "mask_empty": number_cell(int(not mask.any()))}
        row.update({f"p_{c}": number_cell(v) for c, v in zip(self.codes, p, strict=True)})
        if self.melanoma is not None:
            row.setdefault(MELANOMA_COLUMN, number_cell(p[self.melanoma]))
        row.update(predicted_label=self.codes[best], confidence=number_cell(p[best]))
        if self.options.metadata is not None:
            row["metadata_used"] = number_cell(int(meta is not None))
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
        return ResultsFile(CSV_FILE, classification_columns(classes, self.options.measure,
                                                            self.options.metadata is not None),
                           lineterminator="\r\n")

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
                "measure": o.measure, "pixel_size_mm": o.pixel_size_mm, "convert": self.inputs.convert,
                **({"metadata": o.metadata_source} if o.metadata is not None else {})}

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
    metadata: str | os.PathLike | Mapping[str, Mapping[str, Any]] | None = None,
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
    metadata : CSV file or mapping, optional
        Patient metadata for a classifier with a metadata model (``classifier-ham10000-7class``):
        a CSV with a ``file`` column (the image's path relative to ``in_dir`` as in
        classification.csv, its file name, or its stem) and ``age``, ``sex`` and ``site`` columns
        (``localization``, HAM10000's name, is read as ``site``; an empty cell or ``unknown``: not
        known), or a mapping ``{file: {"age": ..., "sex": ..., "site": ...}}``. Every value is
        checked before the run starts. Images without a row get the image-only probabilities;
        the ``metadata_used`` column says which were fused.

    Returns
    -------
    FolderRunResult
        The rows are in ``classification.csv`` (:func:`classification_columns`).

    Raises
    ------
    ConfigError
        ``metadata`` for a classifier without a metadata model, or a bad value in it (naming the
        CSV line); neither ``masks_dir`` nor ``segmenter``; no images; two images with the same stem
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
    clf_source = classifier_source(classifier, tta=tta, threads=threads, device=device)
    meta, meta_source = (None, None) if metadata is None else _read_metadata(
        metadata, _metadata_model_of(classifier, clf_source))
    options = ClassifyOptions(masks, mask_suffix, bool(save_gradcam), bool(measure), pixel_size_mm,
                              str(Path(masks_dir).resolve()) if masks_dir is not None else None, meta, meta_source)
    job = ClassifyJob(predictor_source(segmenter, threads=threads, device=device) if masks_dir is None else None,
                      clf_source, options,
                      InputOptions(False, exclude, bool(convert), include_runs=bool(include_runs),
                                   verify_inputs=bool(verify_inputs)), _classes_of(classifier))
    return run_folder(job, runner, in_dir, out_dir, overwrite=overwrite, wait=wait, progress=progress)


_METADATA_COLUMNS = {"file": ("file", "image", "image_id", "isic_id", "id"), "age": ("age", "age_approx"),
                     "sex": ("sex",), "site": ("site", "localization", "anatom_site_general")}


def _metadata_model_of(classifier: Any, source: ModelSource) -> Any:
    """The classifier's metadata model (None if it has none): read from its ensemble.json where it is a name or
    folder, else from the classifier itself (a loader function is called here, as the job does anyway to learn
    the classes of its result columns)."""
    if isinstance(classifier, str | os.PathLike):
        from ..models.checkpoint import ENSEMBLE_FILE, ensemble_metadata_model, read_ensemble

        folder, _, payload = read_ensemble(classifier, "classifier")
        return ensemble_metadata_model(payload, folder / ENSEMBLE_FILE)
    return source.get().metadata_model


def _read_metadata(metadata: Any, model: Any) -> tuple[dict[str, dict[str, str]], str]:
    """``{file: {"age", "sex", "site"}}`` from a CSV or mapping, every value checked by the classifier's metadata
    ``model``; and a description of the source for the run's settings (the CSV's path and content hash)."""
    import csv
    import hashlib
    import io
    import json

    if model is None:
        raise ConfigError("This classifier has no metadata model: it cannot use age, sex or body site. Leave "
                          "--metadata out, or choose a classifier that takes metadata (`skinseg models`).")
    if isinstance(metadata, Mapping):
        rows = [(f"entry '{k}'", str(k), dict(v) if isinstance(v, Mapping) else v) for k, v in metadata.items()]
        text = json.dumps({k: v for _, k, v in rows}, sort_keys=True, default=str)
        source = "mapping sha256:" + hashlib.sha256(text.encode()).hexdigest()
    else:
        path = Path(metadata)
        if not path.is_file():
            raise ConfigError(f"Metadata file '{path}' does not exist (pass a CSV with columns file, age, sex, site).")
        data = path.read_bytes()
        rows = []
        try:
            reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
            header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
            found = {field: next((header[n] for n in names if n in header), None)
                     for field, names in _METADATA_COLUMNS.items()}
            if found["file"] is None or all(found[f] is None for f in ("age", "sex", "site")):
                raise ConfigError(f"Metadata file '{path}' needs a 'file' column and at least one of 'age', 'sex', "
                                  f"'site' (or 'localization'); its columns are {reader.fieldnames}.")
            for r in reader:
                entry = {f: (r.get(c) or "").strip() for f, c in found.items() if f != "file" and c is not None}
                # a file cell copied from classification.csv reads back as the name it stands for
                name = name_from_cell((r.get(found["file"]) or "").strip())
                rows.append((f"'{path}' line {reader.line_num}", name, entry))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"Cannot read metadata file '{path}' as UTF-8 CSV: {exc}.") from exc
        source = f"{path.resolve()} sha256:{hashlib.sha256(data).hexdigest()}"
    out: dict[str, dict[str, str]] = {}
    for where, key, entry in rows:
        if not key:
            raise ConfigError(f"Metadata {where}: the file name is empty.")
        key = key.replace("\\", "/")
        if key in out:
            raise ConfigError(f"Metadata {where}: '{key}' appears twice.")
        if not isinstance(entry, dict):
            raise ConfigError(f"Metadata {where}: expected a mapping with 'age', 'sex', 'site'; got "
                              f"{type(entry).__name__}.")
        try:
            model.features(entry)
        except ConfigError as exc:
            raise ConfigError(f"Metadata {where}: {str(exc).removeprefix('Metadata ')}") from None
        out[key] = entry
    return out, source


def _classes_of(classifier: Any) -> tuple[ClassInfo, ...] | None:
    """The classes of a classifier without loading it where that is cheap (a checkpoint's config)."""
    if isinstance(classifier, str | os.PathLike):
        from ..models.checkpoint import read_ensemble, read_model_config

        _, members, _ = read_ensemble(classifier, "classifier")
        return read_model_config(members[0], "classifier").classes
    classes = getattr(classifier, "classes", None)
    return tuple(classes) if classes is not None else None
