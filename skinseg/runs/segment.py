"""Segment every image of a folder: streamed, resumable, one CSV row per image (``skinseg segment``).

:class:`SegmentJob` is the job (what is computed and written per image) that
:func:`skinseg.runs.run_folder` runs on an engine (local threads or Ray Data); the
:func:`segment_folder` entry point builds both. Pipeline of the local engine (memory stays
flat in the number of images)::

    Predictor.predict_stream   reader threads: one read per file -> decode -> preprocessing -> prepare
                               this thread: batches of equal padded shape -> backend (+ flip TTA)
    writer threads             SegmentJob: probabilities at the image size -> threshold + clean-up
                               -> mask PNG -> overlay PNG; then the journal line (last)

Outputs in ``out_dir`` (``<rel>`` is the image's sub-folder inside ``in_dir``)::

    <rel>/<stem><mask_suffix>.png           mask, uint8 {0, 255}, the image's original size
    overlays/<rel>/<stem>_overlay.png       green lesion contour on the image (unless overlay=False)
    results.csv                             one row per image, in input order (see RESULT_COLUMNS;
                                            with measure=True also skinseg.features.FEATURE_NAMES)
    run.json, journal.jsonl, timings.csv    the run journal (skinseg.runs.journal)

Files are written atomically in the order mask, overlay, journal line, so a journal line
never refers to a missing or half-written file; a killed run resumes where it stopped
and ends with the same bytes as an uninterrupted one (see :mod:`skinseg.runs.journal`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import cv2
import numpy as np

from .._checks import as_bool_mask, check_fraction, check_positive_int, check_rgb_image
from .._types import BinaryMask, RGBImage
from ..errors import ConfigError
from ..features import FEATURE_NAMES, check_pixel_size
from ..inference import Predictor, StreamResult
from ..io import DEFAULT_MAX_PIXELS, encode_image, encode_mask
from ..postprocess import postprocess_mask
from .engines import make_engine
from .inputs import InputFile, InputOptions
from .jobs import FILE_ERRORS, ModelSource, error_row, feature_cells
from .journal import FolderRunResult, ResultsFile
from .models import as_json, predictor_source
from .skeleton import run_folder

__all__ = [
    "segment_folder",
    "SegmentJob",
    "FolderRunResult",
    "OutputSpec",
    "draw_contour_overlay",
    "segment_outputs",
    "error_row",
    "RESULT_COLUMNS",
    "RESULTS_FILE",
    "OVERLAY_DIR",
    "REVIEW_COLOR",
    "FILE_ERRORS",
    "result_columns",
    "check_mask_suffix",
    "check_output_options",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "file", "width", "height", "lesion_area_px", "lesion_fraction", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
    "mean_prob", "quality", "needs_review", "status", "error_type", "error",
)
"""``results.csv`` columns. ``file`` is the path relative to ``in_dir`` (``/`` separators);
``lesion_fraction`` = area / (width * height); the bbox (pixels, x right, y down) and
``mean_prob`` (mean lesion probability inside the mask) are empty for an empty mask;
``quality`` is the estimated IoU of the mask with an expert's mask (:mod:`skinseg.quality`; 0
for an empty mask) and ``needs_review`` is 1 when it is below the review threshold, else 0
(both empty for a model without a fitted estimate); ``status`` is ``ok`` or ``error``, with
the exception class and message for errors."""

RESULTS_FILE, OVERLAY_DIR, OVERLAY_SUFFIX = "results.csv", "overlays", "_overlay"
REVIEW_COLOR: tuple[int, int, int] = (255, 64, 0)
"""Overlay colour (RGB, orange-red) of the contour and frame of a mask that needs review."""


def result_columns(measure: bool = False) -> tuple[str, ...]:
    """``results.csv`` columns: :data:`RESULT_COLUMNS`, then with ``measure`` the ABCD
    measurements :data:`skinseg.features.FEATURE_NAMES` (empty for an empty mask or an error
    row; ``diameter_mm`` and ``area_mm2`` empty without a pixel size)."""
    return RESULT_COLUMNS + FEATURE_NAMES if measure else RESULT_COLUMNS


def draw_contour_overlay(
    image: RGBImage,
    mask: BinaryMask,
    *,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int | None = None,
    review: bool = False,
) -> RGBImage:
    """Draw the outer contour of ``mask`` on a copy of ``image``.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
    mask : (H, W) bool, or integer {0, 1} / {0, 255}
    color : RGB triple, default green
    thickness : int, optional
        Line width in pixels; default 2, or 3 when the short side is >= 1000 px.
    review : bool
        Mark the mask as one to check: contour and a frame around the image in
        :data:`REVIEW_COLOR` (instead of ``color``).

    Returns
    -------
    (H, W, 3) uint8 RGB; ``image`` is not modified. An empty mask gives an unchanged copy.
    """
    image = check_rgb_image(image)
    m = as_bool_mask(mask)
    if m.shape != image.shape[:2]:
        raise ConfigError(f"`mask` must have the image's (H, W) {image.shape[:2]}; got {m.shape}.")
    if thickness is None:
        thickness = 3 if min(m.shape) >= 1000 else 2
    thickness = check_positive_int(thickness, "thickness")
    out = image.copy()
    color = REVIEW_COLOR if review else color
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    if review:
        h, w = m.shape
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), tuple(int(c) for c in color), 2 * thickness)
    return out


@dataclass(frozen=True)
class OutputSpec:
    """How a probability map becomes a mask, an overlay and a result row (a segment job's output options).

    ``threshold`` None: the Predictor's (filled in where the job runs). ``review_below``: the quality
    estimate under which a mask needs review; None: the estimate's fitted threshold.
    """

    threshold: float | None = None
    largest_component: bool = True
    fill_holes: bool = True
    overlay: bool = True
    measure: bool = False
    pixel_size_mm: float | None = None
    mask_suffix: str = "_segmentation"
    review_below: float | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return result_columns(self.measure)

    def row(self, key: str, prob: np.ndarray, mask: np.ndarray, measured: np.ndarray | None,
            quality: float | None = None) -> dict[str, str]:
        """The ``ok`` row; with :attr:`measure` also the ABCD measurements (none for an empty mask)."""
        h, w = mask.shape
        area = int(np.count_nonzero(mask))
        row = dict.fromkeys(self.columns, "")
        row.update(file=key, width=str(w), height=str(h), lesion_area_px=str(area),
                   lesion_fraction=f"{area / (h * w):.6f}", status="ok")
        if quality is not None:
            row.update(quality=f"{quality:.4f}", needs_review="1" if self.needs_review(quality) else "0")
        if area:
            ys = np.flatnonzero(mask.any(axis=1))
            xs = np.flatnonzero(mask.any(axis=0))
            row.update(bbox_x=str(xs[0]), bbox_y=str(ys[0]), bbox_w=str(xs[-1] - xs[0] + 1),
                       bbox_h=str(ys[-1] - ys[0] + 1), mean_prob=f"{float(prob[mask].mean(dtype=np.float64)):.4f}")
            if self.measure and measured is not None:
                row.update(feature_cells(measured, mask, self.pixel_size_mm))
        return row

    def needs_review(self, quality: float) -> bool:
        return self.review_below is not None and quality < self.review_below

    def render(self, item: InputFile, prob: np.ndarray, image: np.ndarray | None, measured: np.ndarray | None,
               quality_of: Any = None) -> tuple[dict[str, str], dict[str, bytes]]:
        """(result row, {relative path: file bytes}) of one image's probability map, in write order.

        ``quality_of(prob, mask, image)``: the quality estimate (e.g. ``Predictor.estimate_quality``), or None.
        """
        mask = postprocess_mask(prob, threshold=self.threshold, largest_component=self.largest_component,
                                fill_holes=self.fill_holes)
        quality = quality_of(prob, mask, image) if quality_of is not None else None
        row = self.row(item.key, prob, mask, measured, quality)
        files = {item.outputs["mask"]: encode_mask(mask)}
        if self.overlay:
            review = quality is not None and self.needs_review(quality)
            files[item.outputs["overlay"]] = encode_image(
                draw_contour_overlay(image, mask, review=review))  # type: ignore[arg-type]
        return row, files


def segment_outputs(mask_suffix: str) -> Any:
    """``rel -> {"mask": <rel dir>/<stem><mask_suffix>.png, "overlay": overlays/<rel dir>/<stem>_overlay.png}``."""

    def outputs(rel: str) -> dict[str, str]:
        path = PurePosixPath(rel)
        return {"mask": (path.parent / f"{path.stem}{mask_suffix}.png").as_posix(),
                "overlay": (PurePosixPath(OVERLAY_DIR) / path.parent / f"{path.stem}{OVERLAY_SUFFIX}.png").as_posix()}

    return outputs


def check_mask_suffix(mask_suffix: Any) -> str:
    """``mask_suffix`` if it is a usable file-name suffix, else :class:`ConfigError`."""
    if not isinstance(mask_suffix, str) or not mask_suffix or "/" in mask_suffix or os.sep in mask_suffix:
        raise ConfigError(
            f"`mask_suffix` must be a non-empty file-name suffix such as '_segmentation'; got {mask_suffix!r}."
        )
    return mask_suffix


def check_output_options(max_pixels: Any, mask_suffix: Any, pixel_size_mm: Any, measure: bool,
                         ) -> tuple[int, str, float | None]:
    """Checked ``(max_pixels, mask_suffix, pixel_size_mm)`` of a segment run, in order."""
    max_pixels = check_positive_int(max_pixels, "max_pixels")
    mask_suffix = check_mask_suffix(mask_suffix)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    if pixel_size_mm is not None and not measure:
        raise ConfigError(
            "`pixel_size_mm` is used only by the measurements; pass measure=True (--measure) with it, or leave it out."
        )
    return max_pixels, mask_suffix, pixel_size_mm


class _SegmentRunner:
    """A segment job started in one process: its Predictor and the output spec with its threshold."""

    def __init__(self, predictor: Any, spec: OutputSpec) -> None:
        self.predictor = predictor
        quality = getattr(predictor, "quality", None)
        if spec.threshold is None:
            spec = dataclasses.replace(spec, threshold=predictor.threshold)
        if spec.review_below is None and quality is not None:
            spec = dataclasses.replace(spec, review_below=quality.review_below)
        self.spec = spec
        self.quality_of = predictor.estimate_quality if quality is not None else None
        self.keep_images = spec.overlay or spec.measure or quality is not None  # the image is a quality signal

    def render(self, item: InputFile, res: StreamResult) -> tuple[dict[str, str], dict[str, bytes]]:
        return self.spec.render(item, res.proba(), res.image, res.preprocessed if self.spec.measure else None,
                                self.quality_of)


@dataclass(frozen=True)
class SegmentJob:
    """``skinseg segment`` as a job of :func:`skinseg.runs.run_folder`: per image a mask, an overlay and a row.

    ``predictor`` (see :func:`skinseg.runs.models.predictor_source`) is streamed over the
    inputs; ``spec`` turns each probability map into the files and the ``results.csv`` row.
    """

    predictor: ModelSource
    spec: OutputSpec
    inputs: InputOptions
    kind = "segment"

    @property
    def results(self) -> ResultsFile:
        return ResultsFile(RESULTS_FILE, self.spec.columns, flag="needs_review")

    def outputs(self, rel: str) -> dict[str, str]:
        files = segment_outputs(self.spec.mask_suffix)(rel)
        return files if self.spec.overlay else {"mask": files["mask"]}

    def model_settings(self) -> dict[str, Any]:
        predictor = self.predictor.get()
        quality = getattr(predictor, "quality", None)
        if quality is None and self.spec.review_below is not None:
            raise ConfigError("review_below (--review-below) needs a segmenter with a fitted quality estimate "
                              "(the bundled ones have one); this model has none.")
        extra = {} if quality is None else {"review_below": (quality.review_below if self.spec.review_below is None
                                                             else self.spec.review_below)}
        return as_json({**predictor.settings(), "threshold": predictor.threshold, **extra})

    def settings(self, in_location: str, model: dict[str, Any]) -> dict[str, Any]:
        """run.json's settings. The engine is not among them: every engine writes the same bytes, so a run
        started with one can be resumed with the other."""
        spec, inputs = self.spec, self.inputs
        return {"in_dir": in_location, **model, "mask_suffix": spec.mask_suffix, "overlay": spec.overlay,
                "recursive": bool(inputs.recursive), "convert": bool(inputs.convert), "max_pixels": inputs.max_pixels,
                "largest_component": spec.largest_component, "fill_holes": spec.fill_holes, "measure": spec.measure,
                "pixel_size_mm": spec.pixel_size_mm}

    def start(self) -> _SegmentRunner:
        return _SegmentRunner(self.predictor.get(), self.spec)

    def portable(self) -> SegmentJob:
        return dataclasses.replace(self, predictor=self.predictor.portable())


def segment_folder(
    model: Any,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    tta: bool | None = None,
    preprocess: Any = "model",
    batch_size: int = 4,
    workers: int | None = None,
    overlay: bool = True,
    overwrite: bool = False,
    recursive: bool = False,
    mask_suffix: str = "_segmentation",
    convert: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    largest_component: bool = True,
    fill_holes: bool = True,
    measure: bool = False,
    pixel_size_mm: float | None = None,
    progress: bool = True,
    wait: bool = False,
    engine: str = "local",
    ray_options: Any = None,
    include_runs: bool = False,
    verify_inputs: bool = False,
    review_below: float | None = None,
) -> FolderRunResult:
    """Segment every image in ``in_dir`` into ``out_dir``, resuming an earlier run there.

    Parameters
    ----------
    model : checkpoint folder or bundled name, Segmenter, Backend, Predictor, or a function
        A :class:`~skinseg.inference.Predictor` carries its own TTA, batch size and
        preprocessing (then ``tta``, ``preprocess`` and ``batch_size`` must be left at
        their defaults); a name or folder is loaded with the loaders' defaults (ONNX Runtime,
        int8 where shipped), a segmenter or backend gets a Predictor built from those
        (:meth:`Predictor.of <skinseg.inference.Predictor.of>`); a zero-argument function
        returning a Predictor is called where the model is needed (see
        :func:`skinseg.runs.models.predictor_source`).
    in_dir, out_dir : path
        Input folder (never written to) and output folder (created; must not be
        ``in_dir`` or inside it). Files in ``in_dir`` whose stem ends with
        ``mask_suffix`` are taken for masks and skipped. With ``engine="ray"`` also URIs of
        any filesystem pyarrow supports (``s3://``, ``gs://``, ``abfs://``, ``local://``, ...).
    threshold : float in [0, 1], optional
        Decision threshold; default the model's stored threshold.
    tta : bool or None
        Average the probabilities over the 4 flips; None (default): the model's
        stored ``config.tta``.
    preprocess : "model", None, PreprocessConfig or dict
        "model": the preprocessing stored in the model's config; None: none; a
        config: that one instead. Runs in the reader threads.
    batch_size : int >= 1
        Model inputs per forward pass (an image's 4 flips count 4 with TTA; images are batched by
        padded input shape); see :class:`~skinseg.inference.Predictor`.
    workers : int >= 1, optional
        Local engine: reader threads and, separately, writer threads (default 2). Ray
        engine: the number of actors (default one per CPU of the cluster, or per
        ``worker_gpus`` GPUs).
    overlay : bool
        Also write ``overlays/<stem>_overlay.png`` (green contour on the image).
    overwrite : bool
        Start afresh: remove the outputs the journal of an earlier run lists (nothing
        else), then process every image. A file at an output path that no skinseg run wrote
        is refused, with or without ``overwrite`` (it is never replaced).
    recursive : bool
        Include sub-folders; outputs mirror the sub-folder layout.
    include_runs : bool
        Also search folders that hold an earlier skinseg run (its run.json); by default they
        are skipped and counted in ``not_taken["skinseg_run"]`` (their masks and overlays are
        outputs, not images).
    verify_inputs : bool
        Resume by content: record a hash of every input and redo an input whose content
        changed even when its size and modification time did not (see :mod:`skinseg.runs.journal`).
        Local input folders only (refused for URIs).
    mask_suffix : str
        Mask files are ``<stem><mask_suffix>.png`` (ISIC: ``_segmentation``).
    convert, max_pixels
        Passed to :func:`skinseg.io.read_image` (grey/16-bit conversion; size limit).
    largest_component, fill_holes : bool
        Mask clean-up, as in :func:`skinseg.postprocess.postprocess_mask`.
    measure : bool
        Add the ABCD measurements of :func:`skinseg.features.lesion_features` to every ``ok``
        row (columns :data:`skinseg.features.FEATURE_NAMES` after the usual ones; empty for
        an empty mask). Colours are read from the image the model saw, i.e. after the
        hair removal / denoising of ``preprocess``, at the original size.
    pixel_size_mm : float > 0, optional
        Millimetres per pixel, for ``diameter_mm`` and ``area_mm2`` (only with ``measure``).
    progress : bool
        tqdm progress bar (images/s) on stderr.
    wait : bool
        If another run holds ``out_dir``, wait for it instead of raising.
    engine : {"local", "ray"}
        ``"local"``: this process (threads). ``"ray"``: a Ray cluster or a local Ray instance,
        through Ray Data (needs ``pip install "skinseg-dermoscopy[ray]"``); the same outputs
        and run files, see :mod:`skinseg.runs.ray_engine`.
    ray_options : RayOptions, optional
        With ``engine="ray"``: the cluster address, CPUs and GPUs per worker, a pyarrow
        filesystem, a callback per result (:class:`skinseg.runs.RayOptions`).
    review_below : float in [0, 1], optional
        A mask whose quality estimate (``quality`` column, :mod:`skinseg.quality`) is below it
        gets ``needs_review`` = 1 and a marked overlay; default the estimate's own threshold,
        chosen on validation images to flag about 15 % of them. Needs a model with a fitted
        estimate (every bundled segmenter has one).

    Returns
    -------
    FolderRunResult

    Raises
    ------
    ConfigError
        Bad option; no images; two images writing the same mask; ``out_dir`` holds a
        run with other settings, ``measure`` and ``pixel_size_mm`` included (pass
        ``overwrite=True`` or use another folder); ``out_dir`` is in use by another run
        (:class:`~skinseg.runs.outdir.OutputLockedError`).
    OutputExistsError (a FileExistsError)
        ``out_dir`` holds a file at an output path that no skinseg run wrote (with or
        without ``overwrite``).
    PathNotFoundError, PathNotFolderError (FileNotFoundError, NotADirectoryError)
        ``in_dir`` is missing or not a folder.
    RayMissingError (a ConfigError)
        ``engine="ray"`` without Ray installed.

    Notes
    -----
    Per-file problems (unreadable, corrupt, truncated, grey, 16-bit or transparent
    images, images over ``max_pixels``, write failures) never stop the run: they
    become ``error`` rows. See the module docstring for the output layout and
    :mod:`skinseg.runs.journal` for what "complete" means and how a killed run resumes
    with identical output bytes. Memory is bounded by the look-ahead (about
    ``2 * batch_size + workers`` images) and by a budget of ~48 megapixels in flight;
    a larger image is processed alone.
    """
    if isinstance(model, Predictor) and (tta is not None or preprocess != "model" or batch_size != 4):
        raise ConfigError("Pass tta, preprocess and batch_size to the Predictor, not to segment_folder().")
    runner = make_engine(engine, workers, ray_options)
    max_pixels, mask_suffix, pixel_size_mm = check_output_options(max_pixels, mask_suffix, pixel_size_mm, measure)
    source = predictor_source(model, tta=tta, preprocess=preprocess, batch_size=batch_size, threshold=threshold,
                              threads=runner.worker_threads, device=runner.worker_device)
    if review_below is not None:
        review_below = check_fraction(review_below, "review_below")
    spec = OutputSpec(None, bool(largest_component), bool(fill_holes), bool(overlay), bool(measure), pixel_size_mm,
                      mask_suffix, review_below)
    inputs = InputOptions(bool(recursive), mask_suffix, bool(convert), max_pixels,
                          include_runs=bool(include_runs), verify_inputs=bool(verify_inputs))
    job = SegmentJob(source, spec, inputs)
    return run_folder(job, runner, in_dir, out_dir, overwrite=overwrite, wait=wait, progress=progress)
