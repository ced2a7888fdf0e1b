"""Segment every image of a folder: streamed, resumable, one CSV row per image (``skinseg segment``).

Pipeline (memory stays flat in the number of images)::

    Predictor.predict_stream   reader threads: read_image -> preprocessing -> prepare
                               this thread: batches of equal padded shape -> backend (+ flip TTA)
    writer threads             probabilities at the image size -> threshold + clean-up
                               -> mask PNG -> overlay PNG -> journal line (last)

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

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .._checks import as_bool_mask, check_positive_int, check_rgb_image
from .._files import atomic_write
from .._types import BinaryMask, RGBImage
from ..errors import ConfigError, SkinsegError
from ..features import FEATURE_NAMES, check_pixel_size, lesion_features
from ..inference import Predictor, StreamResult
from ..io import DEFAULT_MAX_PIXELS, encode_image, encode_mask, image_size, read_image
from ..postprocess import postprocess_mask
from .inputs import Job, list_inputs, no_images_error
from .journal import FolderRunResult, ResultsFile, RunJournal
from .outdir import OutputLock, check_output_dir, prepare_output_folder

__all__ = [
    "segment_folder",
    "FolderRunResult",
    "OutputSpec",
    "draw_contour_overlay",
    "segment_outputs",
    "error_row",
    "RESULT_COLUMNS",
    "RESULTS_FILE",
    "OVERLAY_DIR",
    "FILE_ERRORS",
    "result_columns",
    "write_outputs",
    "segment_settings",
    "check_mask_suffix",
    "check_output_options",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "file", "width", "height", "lesion_area_px", "lesion_fraction", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
    "mean_prob", "status", "error_type", "error",
)
"""``results.csv`` columns. ``file`` is the path relative to ``in_dir`` (``/`` separators);
``lesion_fraction`` = area / (width * height); the bbox (pixels, x right, y down) and
``mean_prob`` (mean lesion probability inside the mask) are empty for an empty mask;
``status`` is ``ok`` or ``error``, with the exception class and message for errors."""

RESULTS_FILE, OVERLAY_DIR, OVERLAY_SUFFIX = "results.csv", "overlays", "_overlay"
FILE_ERRORS: tuple[type[BaseException], ...] = (SkinsegError, OSError, MemoryError, cv2.error, ValueError)
"""Errors that belong to one file: recorded in its row, and the run carries on."""


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
) -> RGBImage:
    """Draw the outer contour of ``mask`` on a copy of ``image``.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB
    mask : (H, W) bool, or integer {0, 1} / {0, 255}
    color : RGB triple, default green
    thickness : int, optional
        Line width in pixels; default 2, or 3 when the short side is >= 1000 px.

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
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out


def error_row(key: str, exc: BaseException, size: tuple[int, int] | None, columns: tuple[str, ...]) -> dict[str, str]:
    """The ``error`` row of an input: exception class and a one-line message that names the file."""
    message = " ".join(str(exc).split()) or type(exc).__name__  # one line
    if Path(key).name not in message:  # e.g. an OSError raised without a file name
        message = f"{key}: {message}"
    row = dict.fromkeys(columns, "")
    row.update(file=key, status="error", error_type=type(exc).__name__, error=message)
    if size is not None:
        row.update(height=str(size[0]), width=str(size[1]))
    return row


def _feature_cell(value: float) -> str:
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "" if not np.isfinite(value) else f"{value:.6g}"


@dataclass(frozen=True)
class OutputSpec:
    """How a probability map becomes a mask, an overlay and a result row (shared by every engine)."""

    threshold: float
    largest_component: bool = True
    fill_holes: bool = True
    overlay: bool = True
    measure: bool = False
    pixel_size_mm: float | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return result_columns(self.measure)

    def row(self, key: str, prob: np.ndarray, mask: np.ndarray, measured: np.ndarray | None) -> dict[str, str]:
        """The ``ok`` row; with :attr:`measure` also the ABCD measurements (none for an empty mask)."""
        h, w = mask.shape
        area = int(np.count_nonzero(mask))
        row = dict.fromkeys(self.columns, "")
        row.update(file=key, width=str(w), height=str(h), lesion_area_px=str(area),
                   lesion_fraction=f"{area / (h * w):.6f}", status="ok")
        if area:
            ys = np.flatnonzero(mask.any(axis=1))
            xs = np.flatnonzero(mask.any(axis=0))
            row.update(bbox_x=str(xs[0]), bbox_y=str(ys[0]), bbox_w=str(xs[-1] - xs[0] + 1),
                       bbox_h=str(ys[-1] - ys[0] + 1), mean_prob=f"{float(prob[mask].mean(dtype=np.float64)):.4f}")
            if self.measure and measured is not None:
                features = lesion_features(measured, mask, pixel_size_mm=self.pixel_size_mm)
                row.update({name: _feature_cell(value) for name, value in features.items()})
        return row

    def render(self, job: Job, prob: np.ndarray, image: np.ndarray | None,
               measured: np.ndarray | None) -> tuple[dict[str, str], dict[str, bytes]]:
        """(result row, {relative path: file bytes}) of one image's probability map, in write order."""
        mask = postprocess_mask(prob, threshold=self.threshold, largest_component=self.largest_component,
                                fill_holes=self.fill_holes)
        row = self.row(job.key, prob, mask, measured)
        files = {job.mask: encode_mask(mask)}
        if self.overlay:
            files[job.overlay] = encode_image(draw_contour_overlay(image, mask))  # type: ignore[arg-type]
        return row, files


def write_outputs(spec: OutputSpec, res: StreamResult, write: Callable[[str, bytes], None]) -> tuple[
        dict[str, str], list[str]]:
    """Render one streamed result (its ``item`` is a :class:`Job`) and write its files: (row, files written).

    ``write(relative path, bytes)`` must write atomically. A failed input, or a file error while
    rendering or writing (one of :data:`FILE_ERRORS`), gives the ``error`` row and no files.
    Shared by every engine, so they write the same bytes and rows.
    """
    job: Job = res.item
    if res.error is not None:
        return error_row(job.key, res.error, res.size, spec.columns), []
    outputs: list[str] = []
    try:
        row, files = spec.render(job, res.proba(), res.image, res.preprocessed if spec.measure else None)
        for rel, data in files.items():
            write(rel, data)
            outputs.append(rel)
    except FILE_ERRORS as exc:
        return error_row(job.key, exc, res.size, spec.columns), []
    return row, outputs


def segment_settings(in_location: str, predictor_settings: dict[str, Any], spec: OutputSpec, *, mask_suffix: str,
                     recursive: bool, convert: bool, max_pixels: int) -> dict[str, Any]:
    """What determines a segment run's outputs (run.json's settings; a resume must match them).

    The engine is not among them: every engine writes the same bytes, so a run started with one
    can be resumed with the other.
    """
    return {
        "in_dir": in_location,
        **predictor_settings,
        "threshold": spec.threshold,
        "mask_suffix": mask_suffix,
        "overlay": spec.overlay,
        "recursive": bool(recursive),
        "convert": bool(convert),
        "max_pixels": max_pixels,
        "largest_component": spec.largest_component,
        "fill_holes": spec.fill_holes,
        "measure": spec.measure,
        "pixel_size_mm": spec.pixel_size_mm,
    }


def check_mask_suffix(mask_suffix: Any) -> str:
    """``mask_suffix`` if it is a usable file-name suffix, else :class:`ConfigError`."""
    if not isinstance(mask_suffix, str) or not mask_suffix or "/" in mask_suffix or os.sep in mask_suffix:
        raise ConfigError(
            f"`mask_suffix` must be a non-empty file-name suffix such as '_segmentation'; got {mask_suffix!r}."
        )
    return mask_suffix


def check_output_options(max_pixels: Any, mask_suffix: Any, pixel_size_mm: Any, measure: bool,
                         ) -> tuple[int, str, float | None]:
    """Checked ``(max_pixels, mask_suffix, pixel_size_mm)`` of a segment run (both engines), in order."""
    max_pixels = check_positive_int(max_pixels, "max_pixels")
    mask_suffix = check_mask_suffix(mask_suffix)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    if pixel_size_mm is not None and not measure:
        raise ConfigError(
            "`pixel_size_mm` is used only by the measurements; pass measure=True (--measure) with it, or leave it out."
        )
    return max_pixels, mask_suffix, pixel_size_mm


def segment_outputs(mask_suffix: str) -> Any:
    """``rel -> {"mask": <rel dir>/<stem><mask_suffix>.png, "overlay": overlays/<rel dir>/<stem>_overlay.png}``."""

    def outputs(rel: Path) -> dict[str, str]:
        return {"mask": (rel.parent / f"{rel.stem}{mask_suffix}.png").as_posix(),
                "overlay": (Path(OVERLAY_DIR) / rel.parent / f"{rel.stem}{OVERLAY_SUFFIX}.png").as_posix()}

    return outputs


class _LocalRun:
    """The local engine: one predict_stream, writer threads, the journal."""

    def __init__(self, predictor: Predictor, journal: RunJournal, spec: OutputSpec, *, out: Path, workers: int,
                 convert: bool, max_pixels: int) -> None:
        self.predictor, self.journal, self.spec, self.out = predictor, journal, spec, out
        self.workers, self.convert, self.max_pixels = workers, convert, max_pixels
        self.fatal: list[BaseException] = []

    def _pixels(self, job: Job) -> int:
        h, w = image_size(job.path)
        return h * w if h * w <= self.max_pixels else 0

    def _load(self, job: Job) -> np.ndarray:
        return read_image(job.path, convert=self.convert, max_pixels=self.max_pixels)

    def _finish(self, res: StreamResult) -> None:
        """Writer thread: render and write one image's files, then its journal line."""
        t0 = time.perf_counter()
        job: Job = res.item
        try:
            row, outputs = write_outputs(self.spec, res, lambda rel, data: atomic_write(self.out / rel, data))
            res.drop_arrays()
            res.release()
            write_s = time.perf_counter() - t0
            self.journal.append(job.key, row, self.journal.stat(job.path), outputs,
                                (res.read_s, res.infer_s, write_s, res.read_s + res.infer_s + write_s))
        except BaseException as exc:  # a bug or a failing journal: stop the run
            res.release()
            self.fatal.append(exc)

    def run(self, todo: list[Job]) -> None:
        slots = threading.Semaphore(self.predictor.batch_size + 2 * self.workers)
        keep = self.spec.overlay or self.spec.measure
        stream = self.predictor.predict_stream(todo, load=self._load, pixels=self._pixels, errors=FILE_ERRORS,
                                               workers=self.workers, keep_images=keep, hold_pixels=True)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="skinseg-write") as writer:
            try:
                for res in stream:
                    if self.fatal:
                        raise self.fatal[0]
                    slots.acquire()
                    writer.submit(self._finish, res).add_done_callback(lambda _f: slots.release())
            finally:
                stream.close()
        if self.fatal:
            raise self.fatal[0]


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
) -> FolderRunResult:
    """Segment every image in ``in_dir`` into ``out_dir``, resuming an earlier run there.

    Parameters
    ----------
    model : Segmenter, Backend or Predictor
        A :class:`~skinseg.inference.Predictor` carries its own TTA, batch size and
        preprocessing (then ``tta``, ``preprocess`` and ``batch_size`` must be left at
        their defaults); a segmenter or backend gets a Predictor built from those. With
        ``engine="ray"`` also a checkpoint folder or bundled name (each worker loads it), or a
        function returning a Predictor (see :func:`skinseg.runs.ray_worker.predictor_loader`).
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
        filesystem (:class:`skinseg.runs.RayOptions`).

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
    FileExistsError
        ``out_dir`` holds output files but no run journal and ``overwrite`` is False.
    FileNotFoundError, NotADirectoryError
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
    if engine not in ("local", "ray"):
        raise ConfigError(f"`engine` must be 'local' or 'ray'; got {engine!r}.")
    if engine == "ray":
        from .ray_engine import segment_folder_ray

        return segment_folder_ray(
            model, in_dir, out_dir, threshold=threshold, tta=tta, preprocess=preprocess, batch_size=batch_size,
            workers=workers, overlay=overlay, overwrite=overwrite, recursive=recursive, mask_suffix=mask_suffix,
            convert=convert, max_pixels=max_pixels, largest_component=largest_component, fill_holes=fill_holes,
            measure=measure, pixel_size_mm=pixel_size_mm, progress=progress, wait=wait, options=ray_options,
            include_runs=include_runs, verify_inputs=verify_inputs)
    if ray_options is not None:
        raise ConfigError("`ray_options` is used only with engine='ray'; pass engine='ray' or leave it out.")
    from .storage import is_uri

    for name, value in (("in_dir", in_dir), ("out_dir", out_dir)):
        if is_uri(value):
            raise ConfigError(f"`{name}` is a URI; URIs are read and written by the Ray engine: pass engine='ray' "
                              "(--engine ray), or a local folder.")
    predictor = Predictor.of(model, tta=tta, batch_size=batch_size, preprocess=preprocess, threshold=threshold)
    workers = 2 if workers is None else check_positive_int(workers, "workers")
    max_pixels, mask_suffix, pixel_size_mm = check_output_options(max_pixels, mask_suffix, pixel_size_mm, measure)
    src, out = check_output_dir(in_dir, out_dir)
    jobs, not_taken = list_inputs(src, recursive=recursive, exclude_suffix=mask_suffix,
                                  outputs=segment_outputs(mask_suffix), include_runs=include_runs)
    if not jobs:
        raise no_images_error(src, recursive, not_taken, mask_suffix)
    spec = OutputSpec(predictor.threshold, bool(largest_component), bool(fill_holes), bool(overlay), bool(measure),
                      pixel_size_mm)
    settings = segment_settings(str(src.resolve()), predictor.settings(), spec, mask_suffix=mask_suffix,
                                recursive=recursive, convert=convert, max_pixels=max_pixels)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out, wait=wait):
        journal = RunJournal(out, kind="segment", settings=settings,
                             results=ResultsFile(RESULTS_FILE, spec.columns), verify_inputs=verify_inputs)
        written = [(j.mask, j.overlay) if spec.overlay else (j.mask,) for j in jobs]
        prepare_output_folder(journal, out, written, overwrite=overwrite)
        todo, gone = journal.pending(jobs)
        keys = [j.key for j in jobs]
        with journal.running(keys, len(todo), desc="segment", progress=progress):
            if todo:
                _LocalRun(predictor, journal, spec, out=out, workers=workers, convert=bool(convert),
                          max_pixels=max_pixels).run(todo)
        return journal.summarise(keys, len(todo), gone, not_taken)
