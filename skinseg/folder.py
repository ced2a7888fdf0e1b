"""Segment every image of a folder: streamed, resumable, one CSV row per image.

Pipeline (threads; memory stays flat in the number of images)::

    reader pool   read_image -> preprocessing -> prepare_input        (bounded look-ahead)
    main thread   batches of equal padded shape -> model -> sigmoid (+ flip TTA)
    writer pool   probabilities at the image size -> threshold + clean-up
                  -> mask PNG -> overlay PNG -> CSV row (last)

Outputs in ``out_dir`` (``<rel>`` is the image's sub-folder inside ``in_dir``)::

    <rel>/<stem><mask_suffix>.png           mask, uint8 {0, 255}, the image's original size
    overlays/<rel>/<stem>_overlay.png       green lesion contour on the image (unless overlay=False)
    results.csv                             one row per image, deterministic (see RESULT_COLUMNS;
                                            with measure=True also skinseg.features.FEATURE_NAMES)
    timings.csv                             append-only log, one row each time an image is finished
    run.json                                the settings; a resume must use the same ones

**Complete and resume.** An image is *complete* when the last ``results.csv`` row
for its file has status ``ok`` and its mask (and overlay, when overlays are on)
exists. Files are written atomically in the order mask, overlay, CSV row, and a
row is appended (flush + fsync) only after its files are in place, so a row
never refers to a missing or half-written file. On a rerun a partial last CSV
line (a kill mid-write) is cut off, complete images are skipped, and every other
image -- no row, an ``error`` row (the file may have been replaced), or a missing
output -- is processed again and its outputs replaced. At the end ``results.csv``
is rewritten atomically in input order with one row per file, so an interrupted
and resumed run ends with the same bytes as an uninterrupted one. Timings would
break that, so they live in ``timings.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from . import __version__
from ._checks import as_bool_mask, check_fraction, check_positive_int, check_rgb_image
from ._types import BinaryMask, RGBImage
from .errors import ConfigError, SkinsegError
from .features import FEATURE_NAMES, _check_pixel_size, lesion_features
from .inference import (
    _device_of,
    _forward_proba,
    _model_config,
    prepare_input,
    probabilities_to_image_size,
    resolve_tta,
)
from .io import DEFAULT_MAX_PIXELS, image_size, list_images, read_image, write_image, write_mask
from .onnx_backend import model_fingerprint
from .postprocess import postprocess_mask

__all__ = [
    "segment_folder",
    "FolderRunResult",
    "draw_contour_overlay",
    "check_output_dir",
    "model_fingerprint",
    "RESULT_COLUMNS",
    "TIMING_COLUMNS",
    "result_columns",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "file",
    "width",
    "height",
    "lesion_area_px",
    "lesion_fraction",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "mean_prob",
    "status",
    "error_type",
    "error",
)
"""``results.csv`` columns. ``file`` is the path relative to ``in_dir`` (``/`` separators);
``lesion_fraction`` = area / (width * height); the bbox (pixels, x right, y down) and
``mean_prob`` (mean lesion probability inside the mask) are empty for an empty mask;
``status`` is ``ok`` or ``error``, with the exception class and message for errors."""


def result_columns(measure: bool = False) -> tuple[str, ...]:
    """``results.csv`` columns: :data:`RESULT_COLUMNS`, then with ``measure`` the ABCD
    measurements :data:`skinseg.features.FEATURE_NAMES` (empty for an empty mask or an error
    row; ``diameter_mm`` and ``area_mm2`` empty without a pixel size)."""
    return RESULT_COLUMNS + FEATURE_NAMES if measure else RESULT_COLUMNS


TIMING_COLUMNS: tuple[str, ...] = ("run", "file", "status", "read_s", "infer_s", "write_s", "seconds")
"""``timings.csv`` columns: run start time (UTC), file, status and seconds spent reading and
preprocessing, in the model (the batch time divided by its size) and writing."""

RESULTS_FILE, TIMINGS_FILE, RUN_FILE, OVERLAY_DIR = "results.csv", "timings.csv", "run.json", "overlays"
OVERLAY_SUFFIX = "_overlay"
_RUN_FORMAT = "skinseg-segment-run"
# Settings added after the first run.json format; a run.json without them ran with these values.
_SETTING_DEFAULTS: dict[str, Any] = {"measure": False, "pixel_size_mm": None}
# Errors that belong to one file: recorded in its row, and the run carries on.
_FILE_ERRORS = (SkinsegError, OSError, MemoryError, cv2.error, ValueError)
# Pixels (images read but not yet written) allowed in flight; one larger image runs alone.
_INFLIGHT_PIXELS = 48_000_000
_FLUSH_AFTER_S = 0.25  # a partial batch runs when the next image is not decoded within this time


@dataclass(frozen=True)
class FolderRunResult:
    """Summary of :func:`segment_folder`.

    ``n_images`` files were found; ``n_skipped`` were complete from an earlier run and
    ``n_processed`` were processed now. ``n_ok`` and ``n_failed`` count the final rows
    (all images), and ``failed`` lists ``(file, error_type, message)`` of the failed ones.
    """

    out_dir: Path
    results_csv: Path
    n_images: int
    n_processed: int
    n_skipped: int
    n_ok: int
    n_failed: int
    failed: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)


@dataclass
class _Job:
    index: int
    path: Path
    key: str
    mask_path: Path
    overlay_path: Path


@dataclass
class _Item:
    job: _Job
    pixels: int = 0
    image: np.ndarray | None = None  # original image, kept only for the overlay
    measured: np.ndarray | None = None  # image the model saw (after preprocessing), kept only to measure
    x: np.ndarray | None = None  # (3, H', W') model input
    hw: tuple[int, int] = (0, 0)  # model-scale size before padding
    size: tuple[int, int] | None = None  # original (H, W)
    prob: np.ndarray | None = None
    error: BaseException | None = None
    read_s: float = 0.0
    infer_s: float = 0.0


# ----------------------------------------------------------------------------- public helpers


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


def check_output_dir(in_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Return (in_dir, out_dir) as Paths; refuse an ``out_dir`` equal to or inside ``in_dir``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``in_dir`` is missing or not a folder.
    ConfigError
        ``out_dir`` is ``in_dir`` or lies inside it (inputs are never written to), or is a file.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not src.exists():
        raise FileNotFoundError(f"Input folder '{src}' does not exist. Check the path.")
    if not src.is_dir():
        raise NotADirectoryError(f"Input '{src}' is a file, not a folder. Pass the folder that holds it.")
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"`out_dir` '{dst}' is a file. Pass a folder for the outputs.")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise ConfigError(
            f"`out_dir` must not be the input folder or inside it (inputs are never modified); got "
            f"'{dst}' for input '{src}'. Choose another output folder, e.g. '{s.parent / (s.name + '_seg')}'."
        )
    return src, dst


# ----------------------------------------------------------------------------- CSV journal


def _csv_line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_rows(path: Path, columns: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Rows of a results CSV by file (last row wins); a partial last line is cut off the file."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # killed mid-line: drop the fragment so appends start on a fresh line
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        data = data[:end]
    if not data:  # killed while writing the header: start the file again
        return {}
    lines = list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline="")))
    if (
        lines
        and tuple(lines[0]) in (result_columns(False), result_columns(True))
        and tuple(lines[0]) != columns
    ):
        raise ConfigError(
            f"'{path}' was written {'without' if len(columns) > len(lines[0]) else 'with'} the measurement "
            "columns (measure / --measure), unlike this run. Rerun with the same setting, pass "
            "overwrite=True (--overwrite) to start afresh, or choose another output folder."
        )
    if not lines or tuple(lines[0]) != columns:
        raise ConfigError(
            f"'{path}' is not a skinseg results file (its header differs). Pass overwrite=True (--overwrite) "
            "to replace it, or choose another output folder."
        )
    return {r[0]: dict(zip(columns, r, strict=True)) for r in lines[1:] if len(r) == len(columns)}


class _Journal:
    """Append-only results.csv (flush + fsync per row) and timings.csv (flush per row)."""

    def __init__(
        self, out: Path, run_id: str, progress: Any, columns: tuple[str, ...] = RESULT_COLUMNS
    ) -> None:
        self.results_path, self.timings_path = out / RESULTS_FILE, out / TIMINGS_FILE
        self.columns = columns
        self.run_id, self.progress = run_id, progress
        self.lock = threading.Lock()
        self.rows: dict[str, dict[str, str]] = {}
        self._results: Any = None
        self._timings: Any = None

    def open(self) -> None:
        new = not self.results_path.exists() or self.results_path.stat().st_size == 0
        self._results = open(self.results_path, "a", encoding="utf-8", newline="")
        if new:
            self._results.write(_csv_line(list(self.columns)))
            self._results.flush()
            os.fsync(self._results.fileno())
            _fsync_dir(self.results_path.parent)
        new_timings = not self.timings_path.exists() or self.timings_path.stat().st_size == 0
        self._timings = open(self.timings_path, "a", encoding="utf-8", newline="")
        if new_timings:
            self._timings.write(_csv_line(list(TIMING_COLUMNS)))
            self._timings.flush()

    def append(self, row: dict[str, str], timing: list[Any]) -> None:
        with self.lock:
            self._timings.write(_csv_line([self.run_id, row["file"], row["status"], *timing]))
            self._timings.flush()
            self._results.write(_csv_line([row[c] for c in self.columns]))
            self._results.flush()
            os.fsync(self._results.fileno())
            self.rows[row["file"]] = row
            if self.progress is not None:
                self.progress.update(1)

    def close(self) -> None:
        for f in (self._results, self._timings):
            if f is not None:
                f.close()
        self._results = self._timings = None

    def rewrite(self, order: list[str]) -> None:
        """Rewrite results.csv atomically: listed files in input order, then rows of vanished files."""
        rank = {k: i for i, k in enumerate(order)}
        keys = sorted(self.rows, key=lambda k: (rank.get(k, len(rank)), Path(k).parts))
        text = _csv_line(list(self.columns)) + "".join(
            _csv_line([self.rows[k][c] for c in self.columns]) for k in keys
        )
        _atomic_text(self.results_path, text)


# ----------------------------------------------------------------------------- per-image work


class _PixelBudget:
    """Bounds the pixels of images in flight; an image larger than the cap runs alone.

    Images acquire in input order (``ticket``), so a large image waiting for the
    budget never lets a later image overtake it: the images holding the budget are
    then all ahead of it in the pipeline, which always drains (no deadlock).
    """

    def __init__(self, cap: int) -> None:
        self._cap, self._used, self._next, self._closed = cap, 0, 0, False
        self.starved = False  # the next image waits for pixels held by earlier ones
        self._cond = threading.Condition()

    def acquire(self, ticket: int, n: int) -> None:
        with self._cond:
            while not self._closed and (ticket != self._next or (self._used and self._used + n > self._cap)):
                self.starved = ticket == self._next  # next in line, waiting only for pixels
                self._cond.wait()
            self.starved = False
            self._next += 1
            self._used += n
            self._cond.notify_all()

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting reader (the run is being aborted)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _error_row(
    key: str, exc: BaseException, size: tuple[int, int] | None, columns: tuple[str, ...] = RESULT_COLUMNS
) -> dict[str, str]:
    message = " ".join(str(exc).split()) or type(exc).__name__  # one line, for line-based resume
    row = dict.fromkeys(columns, "")
    row.update(file=key, status="error", error_type=type(exc).__name__, error=message)
    if size is not None:
        row.update(height=str(size[0]), width=str(size[1]))
    return row


def _feature_cell(value: float) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "" if not np.isfinite(value) else f"{value:.6g}"


def _ok_row(
    key: str,
    prob: np.ndarray,
    mask: np.ndarray,
    columns: tuple[str, ...] = RESULT_COLUMNS,
    measure_image: np.ndarray | None = None,
    pixel_size_mm: float | None = None,
) -> dict[str, str]:
    """The ``ok`` row; with ``measure_image`` also the ABCD measurements (none for an empty mask)."""
    h, w = mask.shape
    area = int(np.count_nonzero(mask))
    row = dict.fromkeys(columns, "")
    row.update(
        file=key,
        width=str(w),
        height=str(h),
        lesion_area_px=str(area),
        lesion_fraction=f"{area / (h * w):.6f}",
        status="ok",
    )
    if area:
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        row.update(
            bbox_x=str(xs[0]),
            bbox_y=str(ys[0]),
            bbox_w=str(xs[-1] - xs[0] + 1),
            bbox_h=str(ys[-1] - ys[0] + 1),
            mean_prob=f"{float(prob[mask].mean(dtype=np.float64)):.4f}",
        )
        if measure_image is not None:
            features = lesion_features(measure_image, mask, pixel_size_mm=pixel_size_mm)
            row.update({name: _feature_cell(value) for name, value in features.items()})
    return row


def _jobs(in_dir: Path, out_dir: Path, *, recursive: bool, mask_suffix: str) -> list[_Job]:
    jobs: list[_Job] = []
    seen: dict[Path, Path] = {}
    for i, path in enumerate(list_images(in_dir, recursive=recursive, exclude_suffix=mask_suffix)):
        rel = path.relative_to(in_dir)
        mask_path = out_dir / rel.parent / f"{rel.stem}{mask_suffix}.png"
        if mask_path in seen:
            raise ConfigError(
                f"'{seen[mask_path]}' and '{path}' would both write '{mask_path.name}' (same stem). Rename "
                "one of them or move it to another folder."
            )
        seen[mask_path] = path
        overlay_path = out_dir / OVERLAY_DIR / rel.parent / f"{rel.stem}{OVERLAY_SUFFIX}.png"
        jobs.append(_Job(i, path, rel.as_posix(), mask_path, overlay_path))
    return jobs


def _preprocessor(preprocess: Any, config: Any) -> tuple[Callable[[RGBImage], RGBImage] | None, dict | None]:
    """(callable or None, its config dict or None) for the ``preprocess`` argument."""
    if preprocess is None:
        return None, None
    from .preprocess import Preprocess, PreprocessConfig

    if isinstance(preprocess, str) and preprocess == "model":
        cfg = PreprocessConfig.from_dict(config.preprocess) if config.preprocess else None
    elif isinstance(preprocess, PreprocessConfig):
        cfg = preprocess
    elif isinstance(preprocess, dict):
        cfg = PreprocessConfig.from_dict(preprocess)
    else:
        raise ConfigError(
            f"`preprocess` must be 'model', None, a PreprocessConfig or its dict; got {preprocess!r}."
        )
    if cfg is None or cfg == PreprocessConfig():
        return None, None
    return Preprocess(cfg), cfg.to_dict()


# ----------------------------------------------------------------------------- the run


def segment_folder(
    model: Any,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    tta: bool | None = None,
    preprocess: Any = "model",
    batch_size: int = 8,
    workers: int = 2,
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
) -> FolderRunResult:
    """Segment every image in ``in_dir`` into ``out_dir``, resuming an earlier run there.

    Parameters
    ----------
    model : Segmenter or OnnxSegmenter
        Runs on the device it is on.
    in_dir, out_dir : path
        Input folder (never written to) and output folder (created; must not be
        ``in_dir`` or inside it). Files in ``in_dir`` whose stem ends with
        ``mask_suffix`` are taken for masks and skipped.
    threshold : float in [0, 1], optional
        Decision threshold; default the model's stored threshold.
    tta : bool or None
        Average the probabilities over the 4 flips; None (default): the model's
        stored ``config.tta``.
    preprocess : "model", None, PreprocessConfig or dict
        "model": the preprocessing stored in the model's config; None: none; a
        config: that one instead. Runs in the reader threads.
    batch_size : int >= 1
        Images per forward pass (images are batched by padded input shape).
    workers : int >= 1
        Reader threads and, separately, writer threads.
    overlay : bool
        Also write ``overlays/<stem>_overlay.png`` (green contour on the image).
    overwrite : bool
        Start afresh: replace existing outputs and ``results.csv`` instead of resuming.
    recursive : bool
        Include sub-folders; outputs mirror the sub-folder layout.
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

    Returns
    -------
    FolderRunResult

    Raises
    ------
    ConfigError
        Bad option; no images; two images writing the same mask; ``out_dir`` holds a
        run with other settings, ``measure`` and ``pixel_size_mm`` included (pass
        ``overwrite=True`` or use another folder).
    FileExistsError
        ``out_dir`` holds output files but no ``results.csv`` and ``overwrite`` is False.
    FileNotFoundError, NotADirectoryError
        ``in_dir`` is missing or not a folder.

    Notes
    -----
    Per-file problems (unreadable, corrupt, truncated, grey, 16-bit or transparent
    images, images over ``max_pixels``, write failures) never stop the run: they
    become ``error`` rows. See the module docstring for the output layout, what
    "complete" means and how a killed run resumes with identical output bytes.
    Memory is bounded by the look-ahead (about ``2 * batch_size + workers`` images)
    and by a budget of ~48 megapixels in flight; a larger image is processed alone.
    """
    config = _model_config(model)
    thr = config.threshold if threshold is None else check_fraction(threshold, "threshold")
    tta = resolve_tta(model, tta)
    batch_size = check_positive_int(batch_size, "batch_size")
    workers = check_positive_int(workers, "workers")
    max_pixels = check_positive_int(max_pixels, "max_pixels")
    if not isinstance(mask_suffix, str) or not mask_suffix or "/" in mask_suffix or os.sep in mask_suffix:
        raise ConfigError(
            f"`mask_suffix` must be a non-empty file-name suffix such as '_segmentation'; got "
            f"{mask_suffix!r}."
        )
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    if pixel_size_mm is not None and not measure:
        raise ConfigError(
            "`pixel_size_mm` is used only by the measurements; pass measure=True (--measure) with it, "
            "or leave it out."
        )
    src, out = check_output_dir(in_dir, out_dir)
    pre, pre_dict = _preprocessor(preprocess, config)
    jobs = _jobs(src, out, recursive=recursive, mask_suffix=mask_suffix)
    if not jobs:
        raise ConfigError(
            f"No images found in '{src}' (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff"
            f"{'' if recursive else ', not in sub-folders; pass recursive=True (--recursive) for those'})."
        )
    settings = {
        "in_dir": str(src.resolve()),
        "model": model_fingerprint(model),
        "backend": str(getattr(model, "backend", "torch")),
        "threshold": thr,
        "tta": bool(tta),
        "preprocess": pre_dict,
        "mask_suffix": mask_suffix,
        "overlay": bool(overlay),
        "recursive": bool(recursive),
        "convert": bool(convert),
        "max_pixels": max_pixels,
        "largest_component": bool(largest_component),
        "fill_holes": bool(fill_holes),
        "measure": bool(measure),
        "pixel_size_mm": pixel_size_mm,
    }
    out.mkdir(parents=True, exist_ok=True)
    columns = result_columns(bool(measure))
    previous = _prepare_out_dir(out, jobs, settings, columns, overwrite=overwrite, overlay=overlay)
    done = {j.key for j in jobs if _complete(previous.get(j.key), j, overlay)}
    todo = [j for j in jobs if j.key not in done]

    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(jobs),
            initial=len(done),
            desc="segment",
            unit="img",
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
    journal = _Journal(out, run_id, bar, columns)
    journal.rows = previous
    journal.open()
    try:
        if todo:
            _run_pipeline(
                model,
                config,
                todo,
                journal,
                pre=pre,
                thr=thr,
                tta=tta,
                batch_size=batch_size,
                workers=workers,
                overlay=overlay,
                convert=convert,
                max_pixels=max_pixels,
                largest_component=largest_component,
                fill_holes=fill_holes,
                measure=bool(measure),
                pixel_size_mm=pixel_size_mm,
            )
    finally:
        journal.close()
        if bar is not None:
            bar.close()
    journal.rewrite([j.key for j in jobs])
    finals = [journal.rows[j.key] for j in jobs if j.key in journal.rows]
    failed = tuple((r["file"], r["error_type"], r["error"]) for r in finals if r["status"] != "ok")
    return FolderRunResult(
        out,
        journal.results_path,
        len(jobs),
        len(todo),
        len(done),
        len(finals) - len(failed),
        len(failed),
        failed,
    )


def _complete(row: dict[str, str] | None, job: _Job, overlay: bool) -> bool:
    return (
        row is not None
        and row["status"] == "ok"
        and job.mask_path.is_file()
        and (not overlay or job.overlay_path.is_file())
    )


def _remove_stale_temps(out: Path, jobs: list[_Job]) -> None:
    """Delete temporary files a killed run left behind (``.<output name>.<random>.tmp``)."""
    expected: dict[Path, set[str]] = {out: {RESULTS_FILE, RUN_FILE, TIMINGS_FILE}}
    for j in jobs:
        expected.setdefault(j.mask_path.parent, set()).add(j.mask_path.name)
        expected.setdefault(j.overlay_path.parent, set()).add(j.overlay_path.name)
    for folder, names in expected.items():
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            base = tmp.name[1:-4].rsplit(".", 1)[0]  # ".<name>.<token>.tmp" -> "<name>"
            if base in names and tmp.is_file():
                tmp.unlink(missing_ok=True)


def _prepare_out_dir(
    out: Path, jobs: list[_Job], settings: dict, columns: tuple[str, ...], *, overwrite: bool, overlay: bool
) -> dict[str, dict[str, str]]:
    """Check or start the run in ``out``; return the rows of an earlier run to resume from."""
    results, run_file = out / RESULTS_FILE, out / RUN_FILE
    payload = {"format": _RUN_FORMAT, "skinseg_version": __version__, "settings": settings}
    _remove_stale_temps(out, jobs)
    if overwrite:
        for name in (RESULTS_FILE, TIMINGS_FILE):
            (out / name).unlink(missing_ok=True)
    elif results.exists():
        try:
            old = json.loads(run_file.read_text(encoding="utf-8"))["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"'{out}' holds a results.csv but no readable {RUN_FILE}, so the run cannot be resumed "
                "safely. "
                "Pass --overwrite (overwrite=True) to start afresh, or choose another output folder."
            ) from None
        if isinstance(old, dict):
            old = {**_SETTING_DEFAULTS, **old}
        if old != settings:
            diff = ", ".join(
                f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in settings if old.get(k) != settings[k]
            )
            raise ConfigError(
                f"'{out}' holds a run made with other settings ({diff}); resuming would mix them. Rerun with "
                "the same settings, pass --overwrite (overwrite=True), or choose another output folder."
            )
        return _read_rows(results, columns)
    else:
        clash = next(
            (
                p
                for j in jobs
                for p in (j.mask_path, j.overlay_path)
                if p.exists() and (overlay or p == j.mask_path)
            ),
            None,
        )
        if clash is not None:
            raise FileExistsError(
                f"'{clash}' already exists and '{out}' holds no results.csv of a run to resume. Pass "
                "--overwrite (overwrite=True) to replace existing outputs, or choose another output folder."
            )
    _atomic_text(run_file, json.dumps(payload, indent=2) + "\n")
    return {}


def _run_pipeline(
    model: Any,
    config: Any,
    todo: list[_Job],
    journal: _Journal,
    *,
    pre: Any,
    thr: float,
    tta: bool,
    batch_size: int,
    workers: int,
    overlay: bool,
    convert: bool,
    max_pixels: int,
    largest_component: bool,
    fill_holes: bool,
    measure: bool = False,
    pixel_size_mm: float | None = None,
) -> None:
    budget = _PixelBudget(_INFLIGHT_PIXELS)
    columns = result_columns(measure)
    write_slots = threading.Semaphore(batch_size + 2 * workers)
    fatal: list[BaseException] = []
    device = _device_of(model)
    model.eval()

    def load(ticket: int, job: _Job) -> _Item:
        t0 = time.perf_counter()
        item = _Item(job)
        try:
            h, w = image_size(job.path)
            item.pixels = h * w if h * w <= max_pixels else 0
        except _FILE_ERRORS:
            item.pixels = 0  # read_image raises the precise error below
        budget.acquire(ticket, item.pixels)
        try:
            image = read_image(job.path, convert=convert, max_pixels=max_pixels)
            item.size = image.shape[:2]
            seen = pre(image) if pre is not None else image
            x, item.hw = prepare_input(seen, config, preprocess=False)
            item.x, item.image = x, (image if overlay else None)
            item.measured = seen if measure else None
        except _FILE_ERRORS as exc:
            item.error = exc
        item.read_s = time.perf_counter() - t0
        return item

    def finish(item: _Item) -> None:
        t0 = time.perf_counter()
        job = item.job
        try:
            if item.error is not None:
                row = _error_row(job.key, item.error, item.size, columns)
            else:
                try:
                    prob = probabilities_to_image_size(item.prob, item.hw, item.size)  # type: ignore[arg-type]
                    mask = postprocess_mask(
                        prob, threshold=thr, largest_component=largest_component, fill_holes=fill_holes
                    )
                    row = _ok_row(job.key, prob, mask, columns, item.measured, pixel_size_mm)
                    del prob
                    write_mask(job.mask_path, mask, overwrite=True)
                    if overlay:
                        write_image(job.overlay_path, draw_contour_overlay(item.image, mask), overwrite=True)
                except _FILE_ERRORS as exc:
                    row = _error_row(job.key, exc, item.size, columns)
            item.image = item.prob = item.measured = None
            budget.release(item.pixels)
            item.pixels = 0
            write_s = time.perf_counter() - t0
            journal.append(
                row,
                [
                    f"{item.read_s:.4f}",
                    f"{item.infer_s:.4f}",
                    f"{write_s:.4f}",
                    f"{item.read_s + item.infer_s + write_s:.4f}",
                ],
            )
        except BaseException as exc:  # a bug or a failing results.csv: stop the run
            budget.release(item.pixels)
            fatal.append(exc)

    def submit_write(item: _Item, writer: ThreadPoolExecutor) -> None:
        write_slots.acquire()
        writer.submit(finish, item).add_done_callback(lambda _f: write_slots.release())

    def run_batch(items: list[_Item], writer: ThreadPoolExecutor) -> None:
        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack([it.x for it in items])).to(device)  # type: ignore[misc]
        probs = _forward_proba(model, x, tta)[:, 0].float().cpu().numpy()
        dt = (time.perf_counter() - t0) / len(items)
        for it, p in zip(items, probs, strict=True):
            it.prob, it.x, it.infer_s = p, None, dt
            submit_write(it, writer)

    lookahead = 2 * batch_size + workers
    pending = iter(enumerate(todo))
    window: deque[Future[_Item]] = deque()
    buckets: dict[tuple[int, ...], list[_Item]] = {}
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="skinseg-write") as writer,
        ThreadPoolExecutor(workers, thread_name_prefix="skinseg-read") as reader,
    ):
        try:
            while True:
                while len(window) < lookahead and (nxt := next(pending, None)) is not None:
                    window.append(reader.submit(load, *nxt))
                if fatal:
                    raise fatal[0]
                if not window:
                    break
                head = window[0]
                if buckets and not head.done():
                    if not budget.starved:
                        wait_futures([head], timeout=_FLUSH_AFTER_S)
                    if not head.done():  # the readers are behind: run what we have
                        for shape in list(buckets):
                            run_batch(buckets.pop(shape), writer)
                        continue
                item = window.popleft().result()
                if item.error is not None:
                    submit_write(item, writer)
                    continue
                bucket = buckets.setdefault(item.x.shape, [])  # type: ignore[union-attr]
                bucket.append(item)
                if len(bucket) >= batch_size:
                    run_batch(buckets.pop(item.x.shape), writer)  # type: ignore[union-attr]
                elif sum(len(b) for b in buckets.values()) >= batch_size:
                    largest = max(buckets, key=lambda s: len(buckets[s]))
                    run_batch(buckets.pop(largest), writer)
            for shape in list(buckets):
                run_batch(buckets.pop(shape), writer)
        except BaseException:
            for f in window:
                f.cancel()
            budget.close()
            raise
    if fatal:
        raise fatal[0]
