"""The Ray engine's workers: the Ray Data callable class that runs a folder job (see :mod:`.ray_engine`).

:class:`JobWorker` starts the job once per actor (:meth:`FolderJob.start
<skinseg.runs.jobs.FolderJob.start>`: its models loaded, or received by value from the
driver), checks that they are the driver's, and per call reads its images (one read per
file, the local engine's decoder), streams them through the job, writes the files straight
to the output (:func:`skinseg.runs.jobs.render_result`, as the local engine does) and
returns one small row per image.

Nothing here imports Ray: the class runs inside Ray's worker processes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ..errors import ConfigError, SkinsegError
from .inputs import ImageReader, InputFile
from .jobs import FolderJob, render_result, stream_results

__all__ = ["JobWorker"]

_COLUMNS = ("key", "row", "outputs", "read_s", "infer_s", "write_s", "pid", "fatal")


def _settings_diff(expected: dict[str, Any], got: dict[str, Any]) -> str:
    keys = list(dict.fromkeys([*expected, *got]))
    return ", ".join(f"{k}: {expected.get(k)!r} here, {got.get(k)!r} on the worker" for k in keys
                     if expected.get(k) != got.get(k))


class JobWorker:
    """The Ray Data callable class: starts the job once, then runs batches of paths through it.

    Input batch columns: ``key`` (path relative to the input folder) and ``path`` (as messages
    name it). Output columns per image: ``key``, ``row`` and ``outputs`` (JSON), ``read_s``,
    ``infer_s``, ``write_s``, ``pid``, and ``fatal`` (empty, or a skinseg error that stops the
    run: the models could not be loaded, or load with other settings than the driver's).
    """

    def __init__(self, job: FolderJob, settings: dict[str, Any], stores: tuple[Any, Any], *,
                 readers: int = 1) -> None:
        self.job, (self.src, self.dst), self.readers = job, stores, readers
        self.columns: tuple[str, ...] = ()
        self.pid = os.getpid()
        self.fatal = ""
        self.runner: Any = None
        try:
            runner = job.start()
            got = job.model_settings()
            if got != settings:
                raise ConfigError(
                    f"The model on a Ray worker differs from the driver's ({_settings_diff(settings, got)}). Install "
                    "the same skinseg, onnxruntime and model on every node (or pass --backend/--precision explicitly)."
                )
            self.runner, self.columns = runner, job.results.columns
        except (SkinsegError, ImportError, OSError) as exc:  # reported once per batch; the driver stops
            self.fatal = f"{type(exc).__name__}: {' '.join(str(exc).split())}"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        keys, paths = [str(k) for k in batch["key"]], [str(p) for p in batch["path"]]
        cols: dict[str, list[Any]] = {c: [] for c in _COLUMNS}

        def add(*values: Any) -> None:
            for c, v in zip(_COLUMNS, values, strict=True):
                cols[c].append(v)

        if self.runner is None:
            for key in keys:
                add(key, "{}", "[]", 0.0, 0.0, 0.0, self.pid, self.fatal)
            return cols
        items = [InputFile(i, p, k, self.job.outputs(k)) for i, (k, p) in enumerate(zip(keys, paths, strict=True))]
        stream = stream_results(self.runner, items, ImageReader(self.src, self.job.inputs), workers=self.readers)
        try:
            for res in stream:
                t0 = time.perf_counter()
                row, outputs = render_result(self.runner, res.item, res, self.columns, self.dst.write_bytes)
                res.drop_arrays()
                add(res.item.key, json.dumps(row), json.dumps(outputs), res.read_s, res.infer_s,
                    time.perf_counter() - t0, self.pid, "")
        finally:
            stream.close()
        return cols
