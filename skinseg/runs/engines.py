"""Where a folder job runs: the :class:`Engine` protocol, the local engine, and :func:`make_engine`.

An engine gets the job's inputs to process and hands every finished input to the run's
``record`` callback (:func:`skinseg.runs.run_folder` owns everything else). Both engines
read with :class:`~skinseg.runs.inputs.ImageReader` and render with
:func:`~skinseg.runs.jobs.render_result`, so they write the same bytes and rows.

:class:`LocalEngine` (``engine="local"``)::

    reader threads   one read per file -> decode -> the job's segmenter input (predict_stream)
    this thread      batches of equal padded shape -> backend (+ flip TTA)
    writer threads   the job's render (masks, overlays, classification, measurements) -> atomic
                     writes -> record (the journal line, last)

The Ray engine (``engine="ray"``) is :class:`skinseg.runs.ray_engine.RayEngine`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from .._checks import check_positive_int
from ..errors import ConfigError
from .inputs import ImageReader, InputFile
from .jobs import Finished, FolderJob, render_result, stream_results
from .outdir import check_output_dir
from .storage import LocalStore, is_uri

__all__ = ["Engine", "LocalEngine", "make_engine", "ENGINES"]

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Runs a job's pending inputs (see the module docstring)."""

    name: str
    worker_threads: int | None  # ONNX Runtime threads of the models it loads (None: the runtime's default)
    worker_device: str  # where its workers load a model given by name ("cpu" or "cuda")
    journal_upload_s: float  # seconds between uploads of a URI output's journal (engines that write URIs)

    def open_stores(self, in_dir: Any, out_dir: Any) -> tuple[Any, Any]:
        """(input store, output store) of the run, checked (the output is never the input or inside it)."""
        ...

    def model_settings(self, job: FolderJob) -> dict[str, Any]:
        """``job.model_settings()`` where the models load (here, or on a worker with the right device)."""
        ...

    def run(self, job: FolderJob, todo: list[InputFile], stores: tuple[Any, Any],
            record: Callable[[list[Finished]], None]) -> None:
        """Process ``todo`` (read from the input store, write to the output store); ``record`` each finished
        input after its files are in place."""
        ...

    def close(self) -> None:
        """Release what the engine started (a Ray instance)."""
        ...


class LocalEngine:
    """This process: reader threads, the job's backend calls, writer threads (see the module docstring).

    ``workers``: reader threads and, separately, writer threads (default 2).
    """

    name = "local"
    worker_threads = None
    worker_device = "cpu"
    journal_upload_s = 10.0  # no URI outputs here

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 2 if workers is None else check_positive_int(workers, "workers")

    def open_stores(self, in_dir: Any, out_dir: Any) -> tuple[LocalStore, LocalStore]:
        for name, value in (("in_dir", in_dir), ("out_dir", out_dir)):
            if is_uri(value):
                raise ConfigError(f"`{name}` is a URI; URIs are read and written by the Ray engine: pass "
                                  "engine='ray' (--engine ray), or a local folder.")
        src, dst = check_output_dir(in_dir, out_dir)
        return LocalStore(src), LocalStore(dst)

    def model_settings(self, job: FolderJob) -> dict[str, Any]:
        return job.model_settings()

    def run(self, job: FolderJob, todo: list[InputFile], stores: tuple[Any, Any],
            record: Callable[[list[Finished]], None]) -> None:
        src, dst = stores
        runner = job.start()
        columns = job.results.columns
        fatal: list[BaseException] = []
        pid = os.getpid()

        def finish(item: InputFile, res: Any) -> None:
            """Writer thread: render and write one image's files, then record it."""
            t0 = time.perf_counter()
            try:
                row, outputs = render_result(runner, item, res, columns, dst.write_bytes)
                res.drop_arrays()
                res.release()
                write_s = time.perf_counter() - t0
                record([Finished(item.key, row, outputs, (res.read_s, res.infer_s, write_s,
                                                          res.read_s + res.infer_s + write_s), pid)])
            except BaseException as exc:  # a bug or a failing journal: stop the run
                res.release()
                fatal.append(exc)

        batch = runner.predictor.batch_size if runner.predictor is not None else 1
        slots = threading.Semaphore(batch + 2 * self.workers)
        stream = stream_results(runner, todo, ImageReader(src, job.inputs), workers=self.workers, hold_pixels=True)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="skinseg-write") as writer:
            try:
                for res in stream:
                    if fatal:
                        raise fatal[0]
                    slots.acquire()
                    writer.submit(finish, res.item, res).add_done_callback(lambda _f: slots.release())
            finally:
                stream.close()
        if fatal:
            raise fatal[0]

    def close(self) -> None:
        pass


def make_engine(engine: str, workers: int | None, ray_options: Any = None) -> Engine:
    """The engine named ``engine`` ("local" or "ray") with its options, checked before any work."""
    if engine not in ENGINES:
        raise ConfigError(f"`engine` must be 'local' or 'ray'; got {engine!r}.")
    if engine == "local":
        if ray_options is not None:
            raise ConfigError("`ray_options` is used only with engine='ray'; pass engine='ray' or leave it out.")
        return LocalEngine(workers)
    from .ray_engine import RayEngine

    return RayEngine(ray_options, workers)
