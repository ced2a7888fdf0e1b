"""What a folder job is: the protocol that :func:`skinseg.runs.run_folder` runs, and the pieces every job shares.

A *job* says what is computed per image and what is written (``segment``, ``classify``);
an *engine* (:mod:`skinseg.runs.engines`, :mod:`skinseg.runs.ray_engine`) says where it
runs. :func:`~skinseg.runs.skeleton.run_folder` joins them and alone owns the rest of a run
(options check, listing, lock, journal, resume, progress, CSV, summary).

- :class:`FolderJob`: the job as the driver sees it (its results file, its output names,
  its settings), and :meth:`FolderJob.start` for the process that runs it.
- :class:`JobRunner`: the job started in one process (its models loaded): the segmenter
  streamed over the inputs, if any, and :meth:`JobRunner.render`, one image's row and files.
- :func:`render_result`: one streamed result to its row and written files, or to the one
  ``error`` row (:func:`error_row`) -- the same function in every engine, so every engine
  writes the same bytes and rows.
- :func:`number_cell`: the one number format of the result CSVs (six significant digits, an
  empty cell for a missing or non-finite value); :func:`feature_cells`: the ABCD columns.
- :class:`ModelSource`: a model for a job, loaded once per process, that a Ray worker can
  load too (an ONNX model travels as its bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import SkinsegError
from ..features import FEATURE_NAMES, lesion_features
from ..inference import StreamResult
from .inputs import ImageReader, InputFile, InputOptions
from .journal import ResultsFile

__all__ = ["FolderJob", "JobRunner", "Finished", "ModelSource", "FILE_ERRORS", "error_row", "number_cell",
           "feature_cells", "render_result", "stream_results"]

FILE_ERRORS: tuple[type[BaseException], ...] = (SkinsegError, OSError, MemoryError, cv2.error, ValueError)
"""Errors that belong to one file: recorded in its row, and the run carries on."""


class JobRunner(Protocol):
    """A job started in the process that runs it (see :meth:`FolderJob.start`)."""

    predictor: Any  # the skinseg.inference.Predictor streamed over the inputs, or None (the images only)
    keep_images: bool  # keep each image (and the image the model saw) for render

    def render(self, item: InputFile, res: StreamResult) -> tuple[dict[str, str], dict[str, bytes]]:
        """One image's ``ok`` row and its files (``{path relative to the output folder: bytes}``, in write
        order); raise one of :data:`FILE_ERRORS` for a problem of this file."""
        ...


class FolderJob(Protocol):
    """What is computed per image and what is written: a job of :func:`skinseg.runs.run_folder`.

    A job is picklable (a Ray engine sends it to its workers, see :meth:`portable`).
    """

    kind: str  # "segment" or "classify": run.json's kind and the progress bar's label
    inputs: InputOptions  # which files of the input folder it takes, and how they are read

    @property
    def results(self) -> ResultsFile:
        """The CSV it writes (name, columns, line ending)."""
        ...

    def outputs(self, rel: str) -> dict[str, str]:
        """The files an input (path relative to the input folder) writes: ``{name: path relative to the output}``."""
        ...

    def model_settings(self) -> dict[str, Any]:
        """What its models contribute to the settings, as JSON reads them back (loads the models here)."""
        ...

    def settings(self, in_location: str, model: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines its outputs (run.json's settings; a resume must match them)."""
        ...

    def start(self) -> JobRunner:
        """The job in this process, its models loaded (once per process)."""
        ...

    def portable(self) -> FolderJob:
        """The job as Ray workers get it: models sent by value where they can be (see :class:`ModelSource`)."""
        ...


@dataclass(frozen=True)
class Finished:
    """One finished input as a runner reports it: its row, the files written, and seconds (read, infer,
    write, total)."""

    key: str
    row: dict[str, str]
    outputs: list[str]
    timing: tuple[float, float, float, float]
    worker_pid: int = 0


# ----------------------------------------------------------------------------- rows


def number_cell(value: Any) -> str:
    """A number as the result CSVs write it: integers as they are, floats with six significant digits, an empty
    cell for None and non-finite values."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.6g}" if np.isfinite(value) else ""


def feature_cells(image: np.ndarray, mask: np.ndarray, pixel_size_mm: float | None) -> dict[str, str]:
    """The ABCD measurement columns (:data:`skinseg.features.FEATURE_NAMES`) of one lesion; empty for an
    empty mask."""
    if not mask.any():
        return dict.fromkeys(FEATURE_NAMES, "")
    return {name: number_cell(v) for name, v in lesion_features(image, mask, pixel_size_mm=pixel_size_mm).items()}


def error_row(key: str, exc: BaseException, size: tuple[int, int] | None, columns: tuple[str, ...]) -> dict[str, str]:
    """The ``error`` row of an input (every job's): exception class and a one-line message that names the file;
    its width and height where the columns have them and the image could be read."""
    message = " ".join(str(exc).split()) or type(exc).__name__  # one line
    if Path(key).name not in message:  # e.g. an OSError raised without a file name
        message = f"{key}: {message}"
    row = dict.fromkeys(columns, "")
    row.update(file=key, status="error", error_type=type(exc).__name__, error=message)
    if size is not None and "height" in row:
        row.update(height=str(size[0]), width=str(size[1]))
    return row


def render_result(runner: JobRunner, item: InputFile, res: StreamResult, columns: tuple[str, ...],
                  write: Callable[[str, bytes], None]) -> tuple[dict[str, str], list[str]]:
    """Render one streamed result with ``runner`` and write its files: (row, files written).

    ``write(relative path, bytes)`` must write atomically. A failed input, or a file error
    while rendering or writing (one of :data:`FILE_ERRORS`), gives the ``error`` row and no
    files. Every engine calls this, so they write the same bytes and rows.
    """
    if res.error is not None:
        return error_row(item.key, res.error, res.size, columns), []
    outputs: list[str] = []
    try:
        row, files = runner.render(item, res)
        for rel, data in files.items():
            write(rel, data)
            outputs.append(rel)
    except FILE_ERRORS as exc:
        return error_row(item.key, exc, res.size, columns), []
    return row, outputs


def stream_results(runner: JobRunner, items: list[InputFile], reader: ImageReader, *, workers: int,
                   hold_pixels: bool = False) -> Iterator[StreamResult]:
    """The inputs through the job's segmenter (:meth:`~skinseg.inference.Predictor.predict_stream`), or only
    read when it has none: reader threads, each file read once, bad files as results with an ``error``."""
    from ..inference import predict_stream

    return predict_stream(runner.predictor, items, load=reader.load, pixels=reader.pixels, errors=FILE_ERRORS,
                          workers=workers, keep_images=runner.keep_images, hold_pixels=hold_pixels)


# ----------------------------------------------------------------------------- models


class ModelSource:
    """A model of a job: loaded at most once per process (:meth:`get`), and loadable in another one.

    Parameters
    ----------
    load : callable
        Picklable; returns the model (a checkpoint loader, or one returning an object given here).
    loaded : optional
        The model, when it is already loaded here.
    ship : callable, optional
        ``ship(model) -> load`` for another process: a picklable loader that sends the model by
        value (e.g. an ONNX model's bytes), or None to let that process call ``load``.
    """

    def __init__(self, load: Callable[[], Any], *, loaded: Any = None,
                 ship: Callable[[Any], Callable[[], Any] | None] | None = None) -> None:
        self.load, self.loaded, self.ship = load, loaded, ship
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self.loaded is None:
                self.loaded = self.load()
            return self.loaded

    def portable(self) -> ModelSource:
        """This source for Ray workers: a model loaded here travels by value where ``ship`` can send it;
        otherwise each worker calls ``load`` (a checkpoint name, a loader function, a GPU model)."""
        if self.loaded is None or self.ship is None:
            return ModelSource(self.load)
        shipped = self.ship(self.loaded)
        return ModelSource(shipped if shipped is not None else self.load)

    def __getstate__(self) -> dict[str, Any]:
        return {"load": self.load, "ship": self.ship}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["load"], ship=state["ship"])  # type: ignore[misc]
